package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// A signal in each phase: before the cutover the new container is removed
// and the old one keeps serving (exit 130/143); once the old one is out of
// rotation and being stopped, deployctl finishes. No request fails, and the
// lock is released.
func TestSignalsInEachPhase(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	cases := []struct {
		name    string
		trigger string // the progress line at which the signal is sent
		sig     syscall.Signal
		args    []string
		code    int
		serving string
	}{
		{"SIGTERM while creating", "create     start", syscall.SIGTERM, nil, 143, "v1"},
		{"SIGINT while waiting for health", "healthy    start", syscall.SIGINT, []string{"--env", "STARTUP_DELAY=8s"}, 130, "v1"},
		{"SIGTERM while waiting for Traefik", "register   start", syscall.SIGTERM, []string{"--label", "traefik.enable=false"}, 143, "v1"},
		// The gradual switch drains by the probe's marker; the atomic
		// one (the default) switches, then counts the connections in
		// flight on the old version as it stops it. Interrupted before
		// the switch is confirmed, it switches back; after, the old
		// version is out of rotation and the run finishes. With one new
		// container the lifted route starts beside it, so the switch is
		// confirmed with the register: the window is the new container's
		// health.
		{"SIGINT while draining (gradual)", "drain marker written", syscall.SIGINT, []string{"--switch", "gradual"}, 130, "v1"},
		{"SIGTERM once the lifted route has started, before the switch", "Traefik switches every new request", syscall.SIGTERM, []string{"--env", "STARTUP_DELAY=8s"}, 143, "v1"},
		{"SIGINT while counting connections after the switch", "drain      start", syscall.SIGINT, nil, 0, "v2"},
		{"SIGTERM while stopping the old one", "stop       start", syscall.SIGTERM, nil, 0, "v2"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			app := e.appName("sig" + string(rune('a'+i)))
			e.firstDeploy(app, repo, "v1")
			l := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
			code, stderr := e.signalAt(tc.trigger, tc.sig, append([]string{"rollout", "--image", repo, "--version", "v2", "--app", app}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			if strings.Contains(stderr, "DOCKER_HOST") {
				t.Errorf("an interrupted run blamed on Docker:\n%s", stderr)
			}
			time.Sleep(300 * time.Millisecond)
			l.expectNoFailures(t)
			e.expectServing(app, tc.serving)
			for _, c := range e.containers(app) {
				if c.Running() && c.Labels[deploy.LabelVersion] != tc.serving {
					t.Errorf("still running: %s (%s)", c.Name, c.Labels[deploy.LabelVersion])
				}
				if tc.serving == "v1" && c.Labels[deploy.LabelVersion] == "v2" {
					t.Errorf("new container left behind: %s (%s)", c.Name, c.State)
				}
			}
			// The serving version's user-level route container is the only
			// one left (the first deploy split the routing: switched back,
			// v1's routes it); none is left lifted.
			routes, err := e.rt.List(context.Background(), map[string]string{deploy.LabelRouteOf: app})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range routes {
				if c.Labels[deploy.LabelVersion] != tc.serving || c.Labels[deploy.LabelRouteLevel] != deploy.RouteUser || !c.Running() {
					t.Errorf("route container left: %s (%s, %s)", c.Name, c.Labels[deploy.LabelRouteLevel], c.State)
				}
			}
			if st := e.status(app); st.Lock != nil {
				t.Errorf("lock not released: %+v", st.Lock)
			}
		})
	}

	// A second signal exits at once; the next rollout repairs what was
	// left: it breaks the dead run's lock and stops the half-made container.
	t.Run("second signal, then the next rollout repairs", func(t *testing.T) {
		e := e.with(t)
		app := e.appName("sig2")
		e.firstDeploy(app, repo, "v1")
		start := time.Now()
		code, _ := e.signalAt("healthy    start", syscall.SIGINT, "rollout", "--image", repo, "--version", "v2", "--app", app, "--env", "STARTUP_DELAY=20s", "--double-signal-for-test")
		if code != 130 || time.Since(start) > 15*time.Second {
			t.Errorf("exit %d after %s, want 130 at once", code, time.Since(start))
		}
		l := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
		r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app, "--env", "STARTUP_DELAY=0s", "--force")
		if r.code != 0 || !strings.Contains(r.stderr, "breaking a stale deploy lock") {
			t.Errorf("repairing rollout: exit %d", r.code)
		}
		l.expectNoFailures(t)
		e.expectServing(app, "v2")
		running := 0
		for _, c := range e.containers(app) {
			if c.Running() {
				running++
			}
		}
		if running != 1 {
			t.Errorf("%d containers running after the repair, want 1", running)
		}
	})
}

// signalAt runs deployctl, sends sig when a progress line contains trigger
// (twice, 50ms apart, when the args end with --double-signal-for-test),
// and returns the exit code and stderr.
func (e *env) signalAt(trigger string, sig syscall.Signal, args ...string) (int, string) {
	e.t.Helper()
	double := false
	if n := len(args); n > 0 && args[n-1] == "--double-signal-for-test" {
		double, args = true, args[:n-1]
	}
	cmd := deployctlCommand(args...)
	cmd.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+e.traefik.APIURL, "DEPLOYCTL_POLL_INTERVAL=50ms", "DEPLOYCTL_PROGRESS=plain")
	cmd.Env = append(cmd.Env, secretEnv()...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var all strings.Builder
	sent := false
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		if !sent && strings.Contains(line, trigger) {
			sent = true
			cmd.Process.Signal(sig)
			if double {
				time.Sleep(50 * time.Millisecond)
				cmd.Process.Signal(sig)
			}
		}
	}
	err = cmd.Wait()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	}
	if !sent {
		e.t.Errorf("never saw %q; output:\n%s", trigger, all.String())
	}
	e.t.Logf("deployctl %s (signal %s at %q) -> exit %d\n%s", strings.Join(args, " "), sig, trigger, code, all.String())
	expectNoSecrets(e.t, "deployctl "+strings.Join(args, " "), all.String())
	return code, all.String()
}
