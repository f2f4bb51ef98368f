package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/internal/testenv"
)

// A host too busy to run the drain-aware probe on time must not take a
// serving container out of Traefik. The serving container's CPU is
// throttled until one probe run takes longer than the app check's own
// timeout plus a second (Docker's timeout on the probe before this test
// existed: on a loaded CI machine, Docker gave up on a probe run and
// Traefik dropped the only server for 4.4 s). Docker must keep reporting
// it healthy, Traefik keep routing to it, and no request through Traefik
// fail.
func TestBusyHostSlowProbeKeepsServing(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	const checkTimeout = 500 * time.Millisecond
	ref := testenv.AppImage(t, e.cli, testenv.AppImageOptions{
		Tag: "v1", Version: "v1",
		Healthcheck: &testenv.Healthcheck{Interval: 30 * time.Second, Timeout: checkTimeout, Retries: 3},
	})
	repo, _, _ := strings.Cut(ref, ":")
	app := e.appName("busy")
	e.firstDeploy(app, repo, "v1")
	cs := e.containers(app)
	if len(cs) != 1 {
		t.Fatalf("%d containers after the first deploy, want 1", len(cs))
	}
	id, url := cs[0].ID, serverURL(cs[0], e.network)
	ctx := context.Background()

	// 1% of a CPU, in 1 ms per 100 ms (the least Docker allows): a probe
	// run (a Go binary started by Docker's exec) then takes seconds, while
	// the app still answers. The app's own check runs once per 30 s
	// interval, so it is mostly the probe's own start that is slow, as when
	// Docker is slow to exec it. (At 2% the 11 MB deployctl that earlier
	// versions copied took 4 s per run, the 2.5 MB probe at most 1.5 s.)
	throttle := func(quota int64) {
		t.Helper()
		_, err := e.cli.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{Resources: &container.Resources{CPUPeriod: 100_000, CPUQuota: quota}})
		if err != nil {
			t.Fatalf("throttling %s: %v", id[:12], err)
		}
	}
	l := startLoad(t, e.traefik.EntryURL, app+".test", 5, true)
	throttle(1_000)
	var slowest time.Duration
	runs := 0
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) && (slowest <= checkTimeout+time.Second || runs < 3) {
		ins, err := e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := ins.Container.State.Health
		if h == nil {
			t.Fatal("the container has no health state")
		}
		if h.Status != "healthy" {
			t.Errorf("Docker health %q while the host was busy; last probe runs:%s", h.Status, probeRuns(h.Log))
			break
		}
		runs = 0
		for _, r := range h.Log {
			if !r.End.IsZero() && r.End.After(r.Start) {
				slowest = max(slowest, r.End.Sub(r.Start))
				runs++
			}
		}
		svc, err := e.routedService(ctx, app) // app-v1@docker: the first deploy split the routing
		if err != nil {
			t.Fatalf("Traefik's API: %v", err)
		}
		if srv, ok := svc.Server(url); !ok || !srv.Registered() {
			t.Errorf("Traefik dropped the serving container %s while the host was busy (servers %+v)", url, svc.Servers)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	throttle(-1)
	t.Logf("slowest probe run under throttling: %s (the app's check is bounded at %s)", slowest, checkTimeout)
	if !t.Failed() && slowest <= checkTimeout+time.Second {
		t.Errorf("throttling never made a probe run take longer than %s (slowest %s): the test did not test anything", checkTimeout+time.Second, slowest)
	}
	l.expectNoFailures(t)
	e.expectServing(app, "v1")
}

func probeRuns(log []*container.HealthcheckResult) string {
	var b strings.Builder
	for _, r := range log {
		fmt.Fprintf(&b, "\n  %s +%s exit %d: %s", r.Start.Format("15:04:05.000"), r.End.Sub(r.Start).Round(time.Millisecond), r.ExitCode, strings.TrimSpace(r.Output))
	}
	return b.String()
}
