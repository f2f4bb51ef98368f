// Package e2e runs the deployctl binary against a real Docker engine and a
// real Traefik (built from Go modules, run as a host process), with HTTP
// load flowing through Traefik while containers are replaced.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/dockerutil"
	"github.com/deployctl/deployctl/internal/harness"
	"github.com/deployctl/deployctl/internal/testenv"
	"github.com/deployctl/deployctl/traefikapi"
)

var deployctlBin string

func TestMain(m *testing.M) {
	if spec := os.Getenv(lockHolderEnv); spec != "" {
		os.Exit(holdLock(spec))
	}
	dir, err := os.MkdirTemp("", "deployctl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	deployctlBin = filepath.Join(dir, "deployctl")
	if err := initSecrets(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Static and stripped, as released (TestCgoBuildDrainsWithoutLoss
	// builds its own with cgo, as go install does with a C compiler).
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", deployctlBin, "github.com/deployctl/deployctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building deployctl: %v\n%s", err, out)
		os.Exit(1)
	}
	prebuildTraefik()
	before, beforeErr := machineEngine()
	code := m.Run()
	os.RemoveAll(dir)
	if beforeErr == nil {
		// No test may change the machine's engine in ways other tests or
		// its users see (the disk-full test's second dockerd once deleted
		// docker0): compare what it was before the tests with after.
		after, err := machineEngine()
		if diff := before.diff(after); err == nil && diff != "" {
			fmt.Fprintf(os.Stderr, "FAIL: the tests changed the machine's Docker engine: %s\n", diff)
			code = 1
		}
	}
	os.Exit(code)
}

// engineState is what the tests must leave on the machine's Docker engine
// as they found it: its networks other than the test harness's, whether
// its default bridge docker0 exists, and its Swarm state.
type engineState struct {
	networks []string // name (driver)
	docker0  bool
	swarm    string
}

// machineEngine reads the engine state of the Docker engine the tests use.
func machineEngine() (engineState, error) {
	cli, err := harness.Docker()
	if err != nil {
		return engineState{}, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return engineState{}, err
	}
	info, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return engineState{}, err
	}
	var s engineState
	for _, n := range nets.Items {
		if _, ours := n.Labels[harness.LabelKey]; !ours {
			s.networks = append(s.networks, n.Name+" ("+n.Driver+")")
		}
	}
	slices.Sort(s.networks)
	_, err = net.InterfaceByName("docker0")
	s.docker0 = err == nil
	s.swarm = string(info.Info.Swarm.LocalNodeState)
	return s, nil
}

// diff says how after differs from s ("" when not at all).
func (s engineState) diff(after engineState) string {
	var d []string
	if !slices.Equal(s.networks, after.networks) {
		d = append(d, fmt.Sprintf("networks %v before, %v after", s.networks, after.networks))
	}
	if s.docker0 != after.docker0 {
		d = append(d, fmt.Sprintf("default bridge docker0 present before: %v, after: %v", s.docker0, after.docker0))
	}
	if s.swarm != after.swarm {
		d = append(d, fmt.Sprintf("Swarm state %q before, %q after", s.swarm, after.swarm))
	}
	return strings.Join(d, "; ")
}

// deployctlCommand is exec.Command of the deployctl binary under test, which
// gets SIGTERM if the test process dies (go test's -timeout, a kill): it
// then undoes its rollout and exits, as for a Ctrl-C, rather than carry on
// alone against an engine and a Traefik whose test is gone.
func deployctlCommand(args ...string) *exec.Cmd {
	return buildCommand(deployctlBin, args...)
}

// buildCommand is deployctlCommand for the deployctl binary bin (another
// build of it).
func buildCommand(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return cmd
}

// The Traefik versions the end-to-end tests run against.
const (
	// traefikCurrent is the one the whole suite runs against: the newest
	// release that builds here of the v3.6 line users run today, the first
	// (with v2.11.31) whose docker provider talks to Docker 29.
	traefikCurrent = "v3.6.15"
	// traefikFirstV3 is the first v3 release: the core tests run against
	// it too (TestCoreOnTraefikV3_0_0), for users who have not upgraded.
	traefikFirstV3 = "v3.0.0"
	// traefikV2 is the last v2 minor: the v2 API shape (TestRolloutV1ToV2TraefikV2).
	traefikV2 = "v2.11.0"
)

// traefikFor is the Traefik version test t runs against: traefikFirstV3
// under TestCoreOnTraefikV3_0_0, else traefikCurrent.
func traefikFor(t *testing.T) string {
	if strings.HasPrefix(t.Name(), coreOnFirstV3+"/") {
		return traefikFirstV3
	}
	return traefikCurrent
}

// env is one Docker network with a Traefik watching it.
type env struct {
	t       *testing.T
	cli     *client.Client
	network string
	traefik *testenv.Traefik
	api     *traefikapi.Client
	rt      deploy.Runtime // on the same engine as cli
	// extraEnv is added to deployctl's environment (withEnv).
	extraEnv []string
}

// withEnv returns a copy of e whose deployctl runs get env too.
func (e *env) withEnv(env ...string) *env {
	c := *e
	c.extraEnv = append(slices.Clone(e.extraEnv), env...)
	return &c
}

func newEnv(t *testing.T, traefikVersion string) *env {
	t.Helper()
	cli := testenv.Docker(t)
	network := testenv.Network(t, cli)
	tr := testenv.StartTraefik(t, traefikVersion, network)
	api, err := traefikapi.New(traefikapi.Config{URL: tr.APIURL})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := dockerutil.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return &env{t: t, cli: cli, network: network, traefik: tr, api: api, rt: rt}
}

// with returns a copy of e whose helpers fail and clean up through t. Every
// subtest must use one: a helper that called FailNow on the parent's t from
// a subtest would end the parent test and skip its remaining subtests.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// appName makes an app name unique to this test run, and removes the app's
// deploy history and lock from the Docker host when the test ends.
func (e *env) appName(base string) string {
	app := base + "-" + testenv.RunID()
	e.cleanupApp(app)
	return app
}

// cleanupApp removes app's deploy history and lock from the Docker host
// when the test ends.
func (e *env) cleanupApp(app string) {
	e.t.Cleanup(func() {
		ctx := context.Background()
		vols, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("label", "deployctl.history="+app)})
		if err == nil {
			for _, v := range vols.Items {
				e.cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{})
			}
		}
		e.cli.ContainerRemove(ctx, "deployctl-lock-"+app, client.ContainerRemoveOptions{Force: true})
	})
}

// result is one deployctl run.
type result struct {
	code           int
	stdout, stderr string
	json           struct {
		OK     bool           `json:"ok"`
		Result *deploy.Result `json:"result"`
	}
}

// deployctl runs the binary with the Traefik API of e, and --json.
func (e *env) deployctl(args ...string) result {
	e.t.Helper()
	return e.deployctlBuild(deployctlBin, args...)
}

// deployctlBuild runs the deployctl binary bin like deployctl does.
func (e *env) deployctlBuild(bin string, args ...string) result {
	e.t.Helper()
	cmd := buildCommand(bin, append(args, "--json")...)
	cmd.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+e.traefik.APIURL, "DEPLOYCTL_POLL_INTERVAL=50ms")
	cmd.Env = append(cmd.Env, secretEnv()...)
	cmd.Env = append(cmd.Env, e.extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	expectNoSecrets(e.t, "deployctl "+strings.Join(args, " "), r.stdout, r.stderr)
	r.code = exitCode(e.t, err)
	if jerr := json.Unmarshal(stdout.Bytes(), &r.json); jerr != nil {
		e.t.Errorf("--json output is not JSON: %v\n%s", jerr, r.stdout)
	}
	e.t.Logf("deployctl %s -> exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	return r
}

// exitCode is the exit code of a deployctl run that has ended; an error
// other than a non-zero exit fails the test.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		t.Fatalf("running deployctl: %v", err)
	}
	return 0
}

// appLabels are the Traefik labels of an app routed by Host.
func appLabels(app string) []string {
	return []string{
		"--label", "traefik.enable=true",
		"--label", fmt.Sprintf("traefik.http.routers.%s.rule=Host(`%s.test`)", app, app),
		"--label", fmt.Sprintf("traefik.http.services.%s.loadbalancer.server.port=8080", app),
	}
}

// firstDeploy deploys app at version from image with its Traefik labels and
// checks it serves.
func (e *env) firstDeploy(app, image, version string, extra ...string) {
	e.t.Helper()
	args := append([]string{"rollout", "--app", app, "--image", image, "--version", version, "--network", e.network}, appLabels(app)...)
	r := e.deployctl(append(args, extra...)...)
	if r.code != 0 {
		e.t.Fatalf("first deploy of %s %s: exit %d", app, version, r.code)
	}
	e.expectServing(app, version)
}

// expectServing checks that Traefik routes app's requests to version.
func (e *env) expectServing(app, version string) {
	e.t.Helper()
	status, body, err := testenv.Get(e.traefik.EntryURL+"/", app+".test")
	if err != nil || status != 200 || !strings.Contains(body, version) {
		e.t.Fatalf("GET %s.test through Traefik: %d %q %v; want 200 from %s", app, status, body, err, version)
	}
}

// containers lists the app's containers by deployctl's label.
func (e *env) containers(app string) []deploy.Container {
	e.t.Helper()
	cs, err := e.rt.List(context.Background(), map[string]string{deploy.LabelApp: app})
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}

// load sends requests for app through Traefik at a constant rate, on
// schedule even when earlier ones are slow, until stopped.
type load struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	failures     []string
	stop         chan struct{}
	done         sync.WaitGroup
	// hosts counts the answers of each replica by the host= of the test
	// app's body (its container's hostname).
	hosts sync.Map // string -> *atomic.Int64
}

// answered is how many requests the replica with hostname host answered.
func (l *load) answered(host string) int64 {
	if n, ok := l.hosts.Load(host); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func startLoad(t *testing.T, entryURL, host string, rate int, keepAlive bool) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableKeepAlives: !keepAlive}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.done.Add(1)
			go func() {
				defer l.done.Done()
				l.sent.Add(1)
				req, _ := http.NewRequest("GET", entryURL+"/", nil)
				req.Host = host
				resp, err := c.Do(req)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
					resp.Body.Close()
					if err == nil && resp.StatusCode == 200 {
						for _, f := range strings.Fields(string(body)) {
							if h, ok := strings.CutPrefix(f, "host="); ok {
								n, _ := l.hosts.LoadOrStore(h, new(atomic.Int64))
								n.(*atomic.Int64).Add(1)
							}
						}
						return
					}
					if err == nil {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				l.failed.Add(1)
				l.mu.Lock()
				l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
				l.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(l.finish)
	return l
}

func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// expectNoFailures stops the load and fails the test on any failed request.
func (l *load) expectNoFailures(t *testing.T) {
	t.Helper()
	l.finish()
	t.Logf("load: %d requests, %d failed", l.sent.Load(), l.failed.Load())
	if l.sent.Load() == 0 {
		t.Fatal("load sent no requests")
	}
	if n := l.failed.Load(); n > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Errorf("%d of %d requests through Traefik failed: %s", n, l.sent.Load(), strings.Join(first(l.failures, 10), "; "))
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

var (
	rtOnce sync.Once
	rt     deploy.Runtime
)

func runtime(t *testing.T) deploy.Runtime {
	t.Helper()
	rtOnce.Do(func() {
		r, err := newRuntime()
		if err != nil {
			t.Fatal(err)
		}
		rt = r
	})
	return rt
}

// secrets are handed to every deployctl run of these tests (Traefik's API
// here needs no credentials and ignores them; the env file's value goes
// into the app's containers), and no output may show them: not the
// progress lines, errors, --json documents, status or history.
var secrets struct{ password, token, envValue, envFile string }

func initSecrets(dir string) error {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id := hex.EncodeToString(b[:])
	secrets.password, secrets.token, secrets.envValue = "pw-"+id, "tok-"+id, "val-"+id
	secrets.envFile = filepath.Join(dir, "secret.env")
	return os.WriteFile(secrets.envFile, []byte("DEPLOYCTL_E2E_SECRET="+secrets.envValue+"\n"), 0o600)
}

// secretEnv sets the secrets through deployctl's environment variables.
func secretEnv() []string {
	return []string{
		"DEPLOYCTL_TRAEFIK_USER=e2e",
		"DEPLOYCTL_TRAEFIK_PASSWORD=" + secrets.password,
		"DEPLOYCTL_TRAEFIK_HEADER=X-Token: " + secrets.token,
		"DEPLOYCTL_ENV_FILE=" + secrets.envFile,
	}
}

// expectNoSecrets fails the test if any output shows a secret.
func expectNoSecrets(t *testing.T, what string, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		for name, v := range map[string]string{"Traefik password": secrets.password, "header token": secrets.token, "--env-file value": secrets.envValue} {
			if strings.Contains(out, v) {
				t.Errorf("%s: its output shows the %s", what, name)
			}
		}
	}
}
