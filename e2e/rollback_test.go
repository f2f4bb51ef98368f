package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
)

// run runs the deployctl binary with e's Traefik and returns exit code,
// stdout and stderr (without adding --json).
func (e *env) run(args ...string) (int, string, string) {
	e.t.Helper()
	return e.runBuild(deployctlBin, args...)
}

// runBuild is run with the deployctl binary bin.
func (e *env) runBuild(bin string, args ...string) (int, string, string) {
	e.t.Helper()
	cmd := buildCommand(bin, args...)
	cmd.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+e.traefik.APIURL, "DEPLOYCTL_POLL_INTERVAL=50ms", "DEPLOYCTL_PROGRESS=plain")
	cmd.Env = append(cmd.Env, secretEnv()...)
	cmd.Env = append(cmd.Env, e.extraEnv...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("deployctl %s -> exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	expectNoSecrets(e.t, "deployctl "+strings.Join(args, " "), stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

func (e *env) status(app string) deploy.AppStatus {
	e.t.Helper()
	code, out, _ := e.run("status", "--app", app, "--json")
	var apps []deploy.AppStatus
	if code != 0 || json.Unmarshal([]byte(out), &apps) != nil || len(apps) != 1 {
		e.t.Fatalf("status --json: exit %d %q", code, out)
	}
	return apps[0]
}

func (e *env) history(app string) []deploy.Record {
	e.t.Helper()
	code, out, _ := e.run("history", "--app", app, "--json")
	var recs []deploy.Record
	if code != 0 || json.Unmarshal([]byte(out), &recs) != nil {
		e.t.Fatalf("history --json: exit %d %q", code, out)
	}
	return recs
}

// versions maps each container's version to "state/traefik".
func versions(st deploy.AppStatus) map[string]string {
	m := map[string]string{}
	for _, c := range st.Containers {
		m[c.Version] = c.State + "/" + c.Traefik
	}
	return m
}

func TestRollbackStatusHistoryRetention(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3")
	app := e.appName("shop")
	e.firstDeploy(app, repo, "v1")
	// Atomically (the default): v1 carries no router of its own (the
	// first deploy split the routing), so the rollback below restarts
	// its retained container (a container with routers of its own would
	// be recreated from its image: deploy:
	// TestRollbackRecreatesWhenItsRoutersWouldConflict).
	if r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app); r.code != 0 {
		t.Fatalf("rollout v2: exit %d", r.code)
	}
	st := e.status(app)
	if got := versions(st); got["v2"] != "running/UP" || got["v1"] != "exited/" || len(st.Problems) != 0 {
		t.Errorf("status after v2: %v problems %q", got, st.Problems)
	}

	// rollback: back to v1 under load, by restarting the retained container.
	v1ID := ""
	for _, c := range st.Containers {
		if c.Version == "v1" {
			v1ID = c.ID
		}
	}
	l := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	code, out, stderr := e.run("rollback", "--app", app)
	if code != 0 || !strings.Contains(out, "rolled back from v2 to v1") || !strings.Contains(stderr, "restarting its retained container") {
		t.Fatalf("rollback: exit %d", code)
	}
	l.expectNoFailures(t)
	e.expectServing(app, "v1")
	st = e.status(app)
	if got := versions(st); got["v1"] != "running/UP" || got["v2"] != "exited/" {
		t.Errorf("status after rollback: %v", got)
	}
	for _, c := range st.Containers {
		if c.Version == "v1" && c.ID != v1ID {
			t.Errorf("rollback created a new v1 container instead of restarting the retained one")
		}
	}

	// Twice in a row: the second undoes the first.
	if code, out, _ := e.run("rollback", "--app", app); code != 0 || !strings.Contains(out, "rolled back from v1 to v2") {
		t.Errorf("second rollback: exit %d %q", code, out)
	}
	e.expectServing(app, "v2")

	// --to an explicit version.
	if code, out, _ := e.run("rollback", "--app", app, "--to", "v1"); code != 0 || !strings.Contains(out, "to v1 (--to)") {
		t.Errorf("rollback --to v1: exit %d %q", code, out)
	}
	e.expectServing(app, "v1")

	// A failed rollout, then rollback: nothing to undo.
	if r := e.deployctl("rollout", "--image", repo, "--version", "v3", "--app", app, "--env", "CRASH_AFTER=0"); r.code != 1 {
		t.Errorf("crashing rollout: exit %d", r.code)
	}
	if code, out, _ := e.run("rollback", "--app", app); code != 0 || !strings.Contains(out, "nothing to roll back") {
		t.Errorf("rollback after failed rollout: exit %d %q", code, out)
	}
	e.expectServing(app, "v1")

	// History: every operation, newest first, with results and who.
	recs := e.history(app)
	var got []string
	for _, r := range recs {
		got = append(got, r.Operation+" "+r.From+"->"+r.To+" "+r.Result)
	}
	want := []string{"rollout v1->v3 failed", "rollback v2->v1 ok", "rollback v1->v2 ok", "rollback v2->v1 ok", "rollout v1->v2 ok", "rollout ->v1 ok"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("history:\n got %q\nwant %q", got, want)
	}
	if len(recs) > 0 && (recs[0].By.User == "" || recs[0].By.Host == "" || recs[0].Phase != deploy.PhaseHealthy) {
		t.Errorf("record %+v", recs[0])
	}

	// Retention: --keep 1 keeps only the newest stopped version.
	if r := e.deployctl("rollout", "--image", repo, "--version", "v3", "--app", app, "--keep", "1"); r.code != 0 {
		t.Fatalf("rollout v3 --keep 1: exit %d", r.code)
	} else if len(r.json.Result.Pruned) != 1 {
		t.Errorf("pruned %v, want one container", r.json.Result.Pruned)
	}
	if got := versions(e.status(app)); len(got) != 2 || got["v3"] != "running/UP" || got["v1"] != "exited/" {
		t.Errorf("after --keep 1: %v", got)
	}
}

func TestDeployLock(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3")
	app := e.appName("locked")
	e.firstDeploy(app, repo, "v1")

	// A rollout in progress holds the lock: a second one fails at once,
	// naming the holder, and changes nothing.
	first := deployctlCommand("rollout", "--image", repo, "--version", "v2", "--app", app)
	first.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+e.traefik.APIURL, "GITHUB_RUN_ID=4242", "GITHUB_REPOSITORY=shop/web", "GITHUB_SERVER_URL=https://github.example")
	var firstErr strings.Builder
	first.Stderr = &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the first rollout to take the lock", func() bool {
		return e.status(app).Lock != nil
	})
	code, _, stderr := e.run("rollout", "--image", repo, "--version", "v3", "--app", app)
	if code != 5 || !strings.Contains(stderr, "is being deployed by") || !strings.Contains(stderr, "https://github.example/shop/web/actions/runs/4242") {
		t.Errorf("second rollout: exit %d, want 5 naming the holder", code)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first rollout: %v\n%s", err, firstErr.String())
	}
	e.expectServing(app, "v2")
	if st := e.status(app); st.Lock != nil {
		t.Errorf("lock not released: %+v", st.Lock)
	}

	// --lock-wait: waits for the holder, then proceeds.
	second := deployctlCommand("rollout", "--image", repo, "--version", "v3", "--app", app)
	second.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+e.traefik.APIURL)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the rollout to v3 to take the lock", func() bool { return e.status(app).Lock != nil })
	if code, _, stderr := e.run("rollback", "--app", app, "--lock-wait", "2m"); code != 0 || !strings.Contains(stderr, "waiting for the deploy lock") {
		t.Errorf("rollback --lock-wait: exit %d", code)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("rollout v3: %v", err)
	}
	e.expectServing(app, "v2") // the rollback ran after the rollout to v3

	// A run killed with SIGKILL leaves its lock; on this host the dead
	// holder is detected and the lock broken by the next run.
	killed := deployctlCommand("rollout", "--image", repo, "--version", "v1", "--app", app)
	killed.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+e.traefik.APIURL)
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the doomed rollout to take the lock", func() bool { return e.status(app).Lock != nil })
	killed.Process.Signal(syscall.SIGKILL)
	killed.Wait()
	if st := e.status(app); st.Lock == nil {
		t.Fatalf("no lock left behind by the killed run")
	}
	code, _, stderr = e.run("rollout", "--image", repo, "--version", "v3", "--app", app, "--force")
	if code != 0 || !strings.Contains(stderr, "breaking a stale deploy lock") {
		t.Errorf("rollout after a killed run: exit %d", code)
	}
	// deployctl unlock removes a lock by hand.
	if code, out, _ := e.run("unlock", "--app", app); code != 0 || !strings.Contains(out, "not locked") {
		t.Errorf("unlock: exit %d %q", code, out)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --watch: a v2 that fails after it became healthy is rolled back
// automatically. A v2 whose health check starts failing (while it still
// serves) is caught at its first failed check, before Docker declares it
// unhealthy, so v1 is back in rotation before v2 leaves: zero failed
// requests. A v2 that crashes outright fails the requests Traefik sends it
// until Traefik notices the exit: the test reports them, and checks that v1
// serves again and nothing of v2 is left.
func TestWatchWindowRollsBack(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	cases := []struct {
		name       string
		env        string
		zeroFailed bool
		reason     string
	}{
		{"degrades", "UNHEALTHY_AFTER=8s", true, "health check started failing"},
		{"crashes", "CRASH_AFTER=8s", false, "exit"}, // "exited with code 1" or "probably exiting"
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			app := e.appName("watch-" + tc.name)
			e.firstDeploy(app, repo, "v1", "--restart", "no")
			l := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
			r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app, "--env", tc.env, "--watch", "30s")
			if r.code != 1 || !strings.Contains(r.stderr, "failed within the watch window") || !strings.Contains(r.stderr, tc.reason) || !strings.Contains(r.stderr, "serving again") {
				t.Errorf("rollout --watch: exit %d, want 1 saying it rolled back because %q", r.code, tc.reason)
			}
			time.Sleep(500 * time.Millisecond)
			l.finish()
			if tc.zeroFailed {
				l.expectNoFailures(t)
			} else {
				t.Logf("crash in the watch window: %d of %d requests failed", l.failed.Load(), l.sent.Load())
			}
			e.expectServing(app, "v1")
			for _, c := range e.containers(app) {
				if c.Labels[deploy.LabelVersion] != "v1" || c.State != "running" {
					t.Errorf("left behind: %s (%s, %s)", c.Name, c.Labels[deploy.LabelVersion], c.State)
				}
			}
			if recs := e.history(app); len(recs) == 0 || recs[0].Result != "failed" || recs[0].Phase != deploy.PhaseWatch {
				t.Errorf("history %+v", recs)
			}
		})
	}
}

func TestDryRunAndCheck(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	app := e.appName("plan")
	e.firstDeploy(app, repo, "v1")
	before := e.containers(app)
	code, out, _ := e.run("rollout", "--image", repo, "--version", "v2", "--app", app, "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run: nothing was changed") || !strings.Contains(out, "switch: atomic, through router "+app+"-v2@docker") ||
		!strings.Contains(out, "then drain (switch) and stop "+before[0].Name) {
		t.Errorf("dry run: exit %d %q", code, out)
	}
	code, out, _ = e.run("rollout", "--image", repo, "--version", "v2", "--app", app, "--dry-run", "--switch", "gradual")
	if code != 0 || !strings.Contains(out, "switch: gradual") || !strings.Contains(out, "then drain (health) and stop "+before[0].Name) {
		t.Errorf("dry run --switch gradual: exit %d %q", code, out)
	}
	if after := e.containers(app); len(after) != len(before) {
		t.Errorf("dry run created containers: %d -> %d", len(before), len(after))
	}
	if code, out, _ := e.run("check", "--app", app); code != 0 || !strings.Contains(out, "nothing found") {
		t.Errorf("check of a healthy app: exit %d %q", code, out)
	}
	// A held lock is a finding (exit 1).
	if _, err := e.cli.ContainerCreate(context.Background(), client.ContainerCreateOptions{Name: "deployctl-lock-" + app,
		Config: &container.Config{Image: repo + ":v1", Labels: map[string]string{"deployctl.lock": app, "deployctl.lock.holder": `{"user":"ci","host":"runner-7"}`}}}); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := e.run("check", "--app", app); code != 1 || !strings.Contains(out, "held by ci@runner-7") {
		t.Errorf("check with a held lock: exit %d %q", code, out)
	}
}

// A gradual rollout from a version a route container routes puts the new
// containers into that version's service (the route container's router
// names it), so the version rolled back to and the one rolled back from
// share one Traefik service: no router can tell them apart. The rollback
// must then switch gradually (drain by the probe), under load, with no
// failed request, and say so.
func TestRollbackAfterAGradualRolloutFromARouteContainer(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3")
	app := e.appName("shared")
	e.firstDeploy(app, repo, "v1")
	if r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app); r.code != 0 || r.json.Result.Switch != deploy.SwitchAtomic {
		t.Fatalf("rollout v2: exit %d", r.code)
	}
	if r := e.deployctl("rollout", "--image", repo, "--version", "v3", "--app", app, "--switch", "gradual"); r.code != 0 {
		t.Fatalf("rollout v3 --switch gradual: exit %d", r.code)
	}
	l := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	code, out, stderr := e.run("rollback", "--app", app)
	if code != 0 || !strings.Contains(out, "rolled back from v3 to v2") {
		t.Fatalf("rollback: exit %d %q", code, out)
	}
	if !strings.Contains(stderr, "share") {
		t.Errorf("the rollback does not say why it switches gradually")
	}
	time.Sleep(300 * time.Millisecond)
	l.expectNoFailures(t)
	e.expectServing(app, "v2")
	for _, c := range e.containers(app) {
		if c.Running() && c.Labels[deploy.LabelVersion] != "v2" {
			t.Errorf("still running after the rollback: %s (%s)", c.Name, c.Labels[deploy.LabelVersion])
		}
	}
	routes, err := e.rt.List(context.Background(), map[string]string{deploy.LabelRouteOf: app})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range routes {
		if c.Labels[deploy.LabelRouteLevel] != deploy.RouteUser || !c.Running() {
			t.Errorf("route container %s (%s, %s, %s) left", c.Name, c.Labels[deploy.LabelVersion], c.Labels[deploy.LabelRouteLevel], c.State)
		}
	}
}
