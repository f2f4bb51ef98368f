package dockerutil_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/dockerutil"
	"github.com/deployctl/deployctl/internal/probe"
	"github.com/deployctl/deployctl/internal/probe/embedded"
	"github.com/deployctl/deployctl/internal/testenv"
)

// TestHelperCountsAnotherContainersConnections makes, on a real engine, the
// helper of the connection-aware drain (docs/design.md, "Routing
// cutover"): a container of the app's image whose entrypoint is the probe's
// hold mode, in the app container's network namespace; Exec runs the
// probe's conns mode in it. It also checks that RemoveLabels drops copied
// labels.
func TestHelperCountsAnotherContainersConnections(t *testing.T) {
	cli := testenv.Docker(t)
	netName := testenv.Network(t, cli)
	image := testenv.AppImage(t, cli, testenv.AppImageOptions{Tag: "helper"})
	app := testenv.StartContainer(t, cli, testenv.ContainerOptions{Image: image, Network: netName,
		Labels: map[string]string{"traefik.http.routers.web.rule": "Host(`a.test`)", "team": "x"}})
	ip := testenv.ContainerIP(t, cli, app, netName)
	rt, err := dockerutil.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	bin, err := embedded.Binary("linux", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	helper, _, err := rt.Create(ctx, deploy.CreateSpec{
		Name: "deployctl-helper-" + testenv.RunID(), Image: image, From: app,
		RemoveLabels: []string{"traefik.http.routers.web.rule"},
		Labels:       map[string]string{testenv.LabelKey: testenv.RunID()},
		NetworkMode:  "container:" + app, Entrypoint: []string{deploy.ProbePath, "hold"},
		Healthcheck: &deploy.Healthcheck{Test: []string{"NONE"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Remove(context.Background(), helper.ID)
	if _, ok := helper.Labels["traefik.http.routers.web.rule"]; ok || helper.Labels["team"] != "x" {
		t.Errorf("helper labels %v: want the router label removed, the rest copied", helper.Labels)
	}
	if err := rt.CopyFiles(ctx, helper.ID, []deploy.File{{Path: deploy.ProbeDir + "/", Mode: 0o755}, {Path: deploy.ProbePath, Mode: 0o755, Data: bin}}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, helper.ID); err != nil {
		t.Fatal(err)
	}
	count := func() probe.ConnCount {
		t.Helper()
		res, err := rt.Exec(ctx, helper.ID, []string{deploy.ProbePath, "conns", "--port", "8080"})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec conns: %+v %v", res, err)
		}
		var n probe.ConnCount
		if err := json.Unmarshal([]byte(res.Stdout), &n); err != nil {
			t.Fatalf("conns printed %q: %v", res.Stdout, err)
		}
		return n
	}
	if n := count(); n.Established != 0 {
		t.Errorf("before any connection: %+v", n)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: a.test\r\n")) // a request not finished yet
	time.Sleep(100 * time.Millisecond)
	if n := count(); n.Established != 1 || n.InFlight != 1 {
		t.Errorf("with a request half sent to the app: %+v, want 1 established and in flight", n)
	}

	res, err := rt.Exec(ctx, helper.ID, []string{deploy.ProbePath, "conns"})
	if err != nil || res.ExitCode != 2 || !strings.Contains(res.Stderr, "--port") {
		t.Errorf("exec with a bad command line: %+v %v, want exit 2 and the reason on stderr", res, err)
	}
	if _, err := rt.Exec(ctx, "deployctl-no-such-container", []string{"true"}); !errorsIsNotFound(err) {
		t.Errorf("exec in a missing container: %v, want ErrContainerNotFound", err)
	}
}

func errorsIsNotFound(err error) bool { return errors.Is(err, deploy.ErrContainerNotFound) }
