package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// The version already serving, deployed again: refused (exit 2, nothing
// changed) unless --force, which replaces the serving container with a
// new one of the same version the same zero-downtime way, under load.
func TestRedeployServingVersion(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1")
	app := e.appName("again")
	e.firstDeploy(app, repo, "v1")
	before := e.containers(app)
	if len(before) != 1 {
		t.Fatalf("after the first deploy: %d containers", len(before))
	}

	l := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	r := e.deployctl("rollout", "--image", repo, "--version", "v1", "--app", app)
	if r.code != 2 || !strings.Contains(r.stderr, "already serving") || !strings.Contains(r.stderr, "--force") {
		t.Errorf("redeploy without --force: exit %d, want 2 saying it is already serving and naming --force", r.code)
	}
	if after := e.containers(app); len(after) != 1 || after[0].ID != before[0].ID || !after[0].Running() {
		t.Errorf("the refused redeploy changed the containers: %d now", len(after))
	}

	r = e.deployctl("rollout", "--image", repo, "--version", "v1", "--app", app, "--force")
	if r.code != 0 {
		t.Fatalf("redeploy with --force: exit %d", r.code)
	}
	time.Sleep(300 * time.Millisecond)
	l.expectNoFailures(t)
	e.expectServing(app, "v1")
	running, stopped := 0, 0
	for _, c := range e.containers(app) {
		switch {
		case c.ID == before[0].ID && !c.Running():
			stopped++ // kept for rollback, as after any rollout
		case c.ID != before[0].ID && c.Running() && c.Labels[deploy.LabelVersion] == "v1":
			running++
		default:
			t.Errorf("unexpected container %s (%s, %s)", c.Name, c.Labels[deploy.LabelVersion], c.State)
		}
	}
	if running != 1 || stopped != 1 {
		t.Errorf("after --force: %d new v1 running, %d old v1 stopped; want 1 and 1", running, stopped)
	}
	if st := e.status(app); st.Lock != nil {
		t.Errorf("lock not released: %+v", st.Lock)
	}
}

// A rollout killed with SIGKILL (no cleanup at all) leaves its lock and a
// half-made state: a new container still starting, or an old one drained
// (out of Traefik, still running) beside a new one that serves. The next
// run, under load, breaks the dead run's lock, says what it found, and
// ends with only its own version running: no request fails.
func TestSIGKILLedRunLeftoversRepaired(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3", "v4")
	cases := []struct {
		name    string
		trigger string   // the progress line at which the run is killed
		args    []string // of the killed run
		drained bool     // the killed run drained v1: wait until Traefik dropped it
		warn    []string // what the next run says
		steady  bool     // v1, then v2 rolled out atomically (a user-level route container routes it); the killed run is to v3, the next to v4
		first   []string // of the first deploy
	}{
		{"killed while the new container starts", "healthy    start", []string{"--env", "STARTUP_DELAY=30s"}, false,
			[]string{"breaking a stale deploy lock"}, false, nil},
		{"killed after the old one was drained (gradual)", "drain marker written", []string{"--switch", "gradual"}, true,
			[]string{"breaking a stale deploy lock", "probably left by an interrupted run"}, false, nil},
		// Atomic (the default): the lifted route serves v2 while v1,
		// with its own routers (a first deploy --switch gradual makes
		// them so, as docker run and compose do), still runs under it.
		// The next run switches back to v1, then to v3.
		{"killed after the switch", "switch     done", nil, false,
			[]string{"breaking a stale deploy lock", "switching back from route container"}, false, []string{"--switch", "gradual"}},
		// The settle begins at the switch, beside the drain: the kill
		// lands among its Docker calls (the route under the lifted one
		// removed, its own started), which may complete after it. The
		// next run switches back to routing it makes again.
		{"killed as its settle began, after an atomic rollout", "switch     done", nil, false,
			[]string{"breaking a stale deploy lock", "switching back from route container"}, true, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			app := e.appName("kill" + string(rune('a'+i)))
			e.firstDeploy(app, repo, "v1", tc.first...)
			killedV, nextV := "v2", "v3"
			if tc.steady {
				if r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app); r.code != 0 {
					t.Fatalf("rollout to v2: exit %d", r.code)
				}
				killedV, nextV = "v3", "v4"
			}
			l := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
			e.signalAt(tc.trigger, syscall.SIGKILL, append([]string{"rollout", "--image", repo, "--version", killedV, "--app", app}, tc.args...)...)
			if st := e.status(app); st.Lock == nil {
				t.Errorf("the killed run left no lock: the test did not kill it while it held one")
			}
			if len(e.containers(app)) < 2 {
				t.Errorf("the killed run left no container: the test did not kill it mid-rollout")
			}
			if tc.drained {
				// The marker stays: Docker turns v1 unhealthy within about
				// a second and Traefik drops it, with no run left to care.
				waitFor(t, 20*time.Second, "the drained v1 to leave Traefik", func() bool {
					for _, c := range e.status(app).Containers {
						if c.Version == "v1" {
							return c.Health == "unhealthy" && c.Traefik == "absent"
						}
					}
					return false
				})
			}

			r := e.deployctl("rollout", "--image", repo, "--version", nextV, "--app", app)
			if r.code != 0 {
				t.Fatalf("the next rollout: exit %d", r.code)
			}
			for _, w := range tc.warn {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("the next rollout does not say %q", w)
				}
			}
			time.Sleep(300 * time.Millisecond)
			l.expectNoFailures(t)
			e.expectServing(app, nextV)
			for _, c := range e.containers(app) {
				if c.Running() && c.Labels[deploy.LabelVersion] != nextV {
					t.Errorf("still running after the repair: %s (%s)", c.Name, c.Labels[deploy.LabelVersion])
				}
			}
			routes, err := e.rt.List(context.Background(), map[string]string{deploy.LabelRouteOf: app})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range routes {
				if c.Labels[deploy.LabelVersion] != nextV || c.Labels[deploy.LabelRouteLevel] != deploy.RouteUser {
					t.Errorf("route container left after the repair: %s (%s, %s, %s)", c.Name, c.Labels[deploy.LabelVersion], c.Labels[deploy.LabelRouteLevel], c.State)
				}
			}
			if st := e.status(app); st.Lock != nil {
				t.Errorf("lock not released: %+v", st.Lock)
			}
		})
	}
}
