package deploy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// threeV1 is a world with three v1 replicas of web serving, and web:v2.
func threeV1() (*world, []*fakeContainer) {
	w := newWorld()
	w.addImage("web:v2", nil)
	var olds []*fakeContainer
	for _, n := range []string{"web-a", "web-b", "web-c"} {
		olds = append(olds, w.addRunning(n, "v1", true))
	}
	return w, olds
}

// checkBudget fails when, at any recorded moment after the first
// change, more than maxRunning containers ran or fewer than minRouted
// servers were routed.
func checkBudget(t *testing.T, w *world, maxRunning, minRouted int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.running) == 0 {
		t.Fatal("nothing sampled")
	}
	for i := range w.running {
		if w.running[i] > maxRunning || w.routed[i] < minRouted {
			t.Errorf("sample %d (after %q): %d running (max %d), %d routed (min %d)", i, w.ops[min(i, len(w.ops)-1)], w.running[i], maxRunning, w.routed[i], minRouted)
		}
	}
}

func versionsRunning(w *world) map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, c := range w.containers {
		if c.State == "running" {
			out[c.Labels[LabelVersion]]++
		}
	}
	return out
}

func TestReplicasRolloutKeepsTheBudget(t *testing.T) {
	for _, tc := range []struct {
		name       string
		surge      Amount
		maxRunning int
		creates    int // before the first stop
	}{
		{"surge 1", Amount{N: 1}, 4, 1},
		{"surge 100%", Amount{N: 100, Percent: true}, 6, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, olds := threeV1()
			e, _ := engine(w)
			o := testOptions("v2")
			o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &tc.surge, &Amount{N: 0}
			res, err := e.Rollout(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			checkBudget(t, w, tc.maxRunning, 3)
			if got := versionsRunning(w); got["v2"] != 3 || got["v1"] != 0 {
				t.Errorf("running versions %v, want 3 v2", got)
			}
			for _, c := range olds {
				if c.State != "exited" {
					t.Errorf("old %s is %s, want exited (kept)", c.Name, c.State)
				}
				if _, ok := w.containers[c.ID]; !ok {
					t.Errorf("old %s removed, want kept", c.Name)
				}
			}
			if len(res.NewContainers) != 3 || res.New.ID != res.NewContainers[0].ID || len(res.Old) != 3 {
				t.Errorf("result new %+v, new_containers %+v, old %d", res.New, res.NewContainers, len(res.Old))
			}
			creates := 0
			for _, op := range w.ops {
				if strings.HasPrefix(op, "stop ") {
					break
				}
				if strings.HasPrefix(op, "create ") {
					creates++
				}
			}
			if creates != tc.creates {
				t.Errorf("%d containers created before the first stop, want %d: %q", creates, tc.creates, w.ops)
			}
		})
	}
}

// assertRestored: three v1 serving, no v2 container left.
func assertRestored(t *testing.T, w *world) {
	t.Helper()
	if got := versionsRunning(w); got["v1"] != 3 || got["v2"] != 0 {
		t.Errorf("running versions %v, want 3 v1", got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.containers {
		if c.Labels[LabelVersion] == "v2" {
			t.Errorf("v2 container %s left (%s)", c.Name, c.State)
		}
		if c.Labels[LabelVersion] == "v1" && c.marker != MarkerServe {
			t.Errorf("v1 container %s has marker %q", c.Name, c.marker)
		}
	}
}

func TestReplicasNewContainerFailingInStep2RestoresV1(t *testing.T) {
	w, _ := threeV1()
	starts := 0
	w.behave = func(c *fakeContainer) {
		if c.Labels[LabelVersion] == "v2" {
			starts++
			c.crash = starts == 2
		}
	}
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge = 3, &Amount{N: 1}
	_, err := e.Rollout(context.Background(), o)
	de := assertKind(t, err, KindFailed)
	if !strings.Contains(de.Error(), "step 2/3") || !strings.Contains(de.Error(), "exited with code 3") || !strings.Contains(de.Error(), "container web-v2") {
		t.Errorf("error %q does not name the step, the container and the cause", de.Error())
	}
	if !strings.Contains(de.State, "serving again") {
		t.Errorf("state %q", de.State)
	}
	assertRestored(t, w)
	checkBudget(t, w, 4, 3)
	if !hasOp(w.ops, "start web-a") {
		t.Errorf("the v1 container stopped in step 1 was not started again: %q", w.ops)
	}
}

func TestReplicasSignalInStep2RestoresV1(t *testing.T) {
	w, _ := threeV1()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	creates := 0
	w.createHook = func(CreateSpec) {
		if creates++; creates == 2 {
			cancel(ErrInterrupted)
		}
	}
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge = 3, &Amount{N: 1}
	_, err := e.Rollout(ctx, o)
	de := assertKind(t, err, KindInterrupted)
	if !errors.Is(de, ErrInterrupted) || !strings.Contains(de.Error(), "step 2/3") {
		t.Errorf("error %q", de.Error())
	}
	assertRestored(t, w)
	checkBudget(t, w, 4, 3)
}

// A signal right after an old replica's drain marker is written: a check
// that read "drain" ends after the restore, so Docker reports that replica
// unhealthy once more while Traefik, behind, still lists it. The new
// replica may go only once a check that began after the restore passed and
// Traefik had time to apply it; before, the floor of 3 fell to 2.
func TestReplicasSignalWhileDrainingWaitsForACheckAfterTheRestore(t *testing.T) {
	w, olds := threeV1()
	for _, c := range olds {
		c.drainLag = 1000 // Traefik keeps them while the drain runs
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	e, ev := engine(w)
	e.CleanupTimeout = 10 * time.Second
	e.Reporter = ReporterFunc(func(e Event) {
		ev.Event(e)
		if e.Phase == PhaseDrain && e.Status == StatusInfo && ctx.Err() == nil {
			w.mu.Lock()
			for _, c := range olds {
				if c.marker == MarkerDrain {
					c.staleRestore, c.staleListed = 1, 1 // a check reads "drain"
				}
			}
			w.mu.Unlock()
			cancel(ErrInterrupted)
		}
	})
	o := testOptions("v2")
	o.Replicas, o.MaxSurge = 3, &Amount{N: 1}
	_, err := e.Rollout(ctx, o)
	assertKind(t, err, KindInterrupted)
	assertRestored(t, w)
	checkBudget(t, w, 4, 3)
	stale := 0
	for _, c := range olds {
		if c.staleListed > 0 || c.staleRestore > 0 {
			t.Errorf("%s: the stale check never ran or Traefik was never asked", c.Name)
		}
		if strings.Contains(strings.Join(w.ops, "\n"), "marker "+c.Name+" serve") {
			stale++
		}
	}
	if stale == 0 {
		t.Fatalf("no old replica was drained and restored; ops %q", w.ops)
	}
}

// rollbackThree is a world after a rollout of three replicas v1 -> v2:
// three v2 serving, and retained (stopped, drained) v1 containers, the
// first of names the newest. The history says v2 replaced v1.
func rollbackThree(retained ...string) (*world, *Engine, *events) {
	w := newWorld()
	for i, n := range retained {
		c := w.addRunning(n, "v1", true)
		c.State, c.Health, c.marker = "exited", "", MarkerDrain
		c.Finished = w.clock.Add(time.Duration(500-i) * time.Minute) // the first is the newest
	}
	for _, n := range []string{"web-v2-a", "web-v2-b", "web-v2-c"} {
		w.addRunning(n, "v2", true)
	}
	j := newMemJournal()
	j.records = []Record{{App: "web", Operation: "rollout", From: "v1", To: "v2", Result: "ok", Started: w.clock}}
	e, ev := engine(w)
	e.Journal = j
	return w, e, ev
}

func rollbackThreeOptions() Options {
	o := testOptions("")
	o.Image, o.App, o.MaxSurge = "", "web", &Amount{N: 1}
	return o
}

// checkRolledBack: three v1 serving (marker serve), the v2 containers
// stopped and kept for rollback.
func checkRolledBack(t *testing.T, w *world) {
	t.Helper()
	if got := versionsRunning(w); got["v1"] != 3 || got["v2"] != 0 {
		t.Errorf("running versions %v, want 3 v1", got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range []string{"web-v2-a", "web-v2-b", "web-v2-c"} {
		c := w.containers["id-"+n]
		if c == nil || c.State != "exited" {
			t.Errorf("v2 container %s: %+v, want stopped and kept", n, c)
		}
	}
	for _, c := range w.containers {
		if c.State == "running" && c.marker != MarkerServe {
			t.Errorf("v1 container %s serves with marker %q", c.Name, c.marker)
		}
	}
}

// A rollback of three replicas restarts the three newest retained v1
// containers (the probe copied in again, marker serve), one per step within
// surge 1, creates none, and leaves the fourth, older one stopped.
func TestReplicasRollbackRestartsRetained(t *testing.T) {
	w, e, _ := rollbackThree("web-v1-a", "web-v1-b", "web-v1-c", "web-v1-old")
	p, res, err := e.Rollback(context.Background(), rollbackThreeOptions())
	if err != nil {
		t.Fatal(err)
	}
	if p.To != "v1" || len(p.ReuseAll) != 4 {
		t.Errorf("plan %+v", p)
	}
	checkBudget(t, w, 4, 3)
	checkRolledBack(t, w)
	if hasOp(w.ops, "create ") {
		t.Errorf("created a container though 3 were retained: %q", w.ops)
	}
	for _, n := range []string{"web-v1-a", "web-v1-b", "web-v1-c"} {
		if !hasOp(w.ops, "start "+n) {
			t.Errorf("%s not restarted: %q", n, w.ops)
		}
		if got := string(w.copied[n][ProbePath]); got != "probe for linux/amd64" {
			t.Errorf("%s: probe %q, want it copied in again", n, got)
		}
	}
	if hasOp(w.ops, "start web-v1-old") {
		t.Errorf("the oldest retained v1 container was restarted too: %q", w.ops)
	}
	// One restart per step: each before the first v2 stop of its step.
	if a, b := indexOf(t, w.ops, "start web-v1-b"), indexOf(t, w.ops, "stop web-v2"); a < b {
		t.Errorf("web-v1-b restarted before the first v2 stop (surge 1): %q", w.ops)
	}
	if len(res.NewContainers) != 3 || len(res.Old) != 3 {
		t.Errorf("result new %+v, old %+v", res.NewContainers, res.Old)
	}
}

// With one retained v1 container, the rollback restarts it and creates the
// other two from its configuration and image.
func TestReplicasRollbackCreatesTheRest(t *testing.T) {
	w, e, _ := rollbackThree("web-v1-a")
	if _, _, err := e.Rollback(context.Background(), rollbackThreeOptions()); err != nil {
		t.Fatal(err)
	}
	checkBudget(t, w, 4, 3)
	checkRolledBack(t, w)
	if i, j := indexOf(t, w.ops, "start web-v1-a"), indexOf(t, w.ops, "create "); i > j {
		t.Errorf("created before restarting the retained one: %q", w.ops)
	}
	created := 0
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.containers {
		if c.spec.Name == "" {
			continue
		}
		created++
		if c.spec.Image != "web:v1" || c.spec.From != "id-web-v1-a" || c.Labels[LabelVersion] != "v1" || c.State != "running" {
			t.Errorf("created %s: image %s from %s, version %s, %s; want web:v1 from id-web-v1-a, v1, running", c.Name, c.spec.Image, c.spec.From, c.Labels[LabelVersion], c.State)
		}
	}
	if created != 2 {
		t.Errorf("%d created, want 2: %q", created, w.ops)
	}
}

// A v1 container failing in step 2 of a rollback restores v2: the retained
// v1 container restarted in step 1 is stopped again and kept, the created
// one removed, the budget held throughout.
func TestReplicasRollbackFailingInStep2RestoresCurrent(t *testing.T) {
	w, e, _ := rollbackThree("web-v1-a")
	starts := 0
	w.behave = func(c *fakeContainer) {
		if c.Labels[LabelVersion] == "v1" {
			starts++
			c.crash = starts == 2
		}
	}
	_, _, err := e.Rollback(context.Background(), rollbackThreeOptions())
	de := assertKind(t, err, KindFailed)
	if !strings.Contains(de.Error(), "step 2/3") || !strings.Contains(de.Error(), "exited with code 3") || !strings.Contains(de.Error(), "container web-v1") {
		t.Errorf("error %q does not name the step, the container and the cause", de.Error())
	}
	if !strings.Contains(de.State, "stopped again (kept)") {
		t.Errorf("state %q", de.State)
	}
	checkBudget(t, w, 4, 3)
	if got := versionsRunning(w); got["v2"] != 3 || got["v1"] != 0 {
		t.Errorf("running versions %v, want 3 v2", got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.containers["id-web-v1-a"]; c == nil || c.State != "exited" {
		t.Errorf("retained web-v1-a: %+v, want stopped again and kept", c)
	}
	for _, c := range w.containers {
		if c.spec.Name != "" {
			t.Errorf("created v1 container %s left (%s)", c.Name, c.State)
		}
		if c.State == "running" && c.marker != MarkerServe {
			t.Errorf("v2 container %s serves with marker %q", c.Name, c.marker)
		}
	}
}

// failAtWatch makes the new containers that fail(name) start failing
// their health check once the watch window begins: the probe says "check
// failed" while Docker still calls them healthy, and they turn unhealthy
// (Traefik drops them) after leaveAfter more Router calls.
func failAtWatch(w *world, e *Engine, leaveAfter int, fail func(name string) bool) {
	rep := e.Reporter
	e.Reporter = ReporterFunc(func(ev Event) {
		rep.Event(ev)
		if ev.Phase != PhaseWatch || ev.Status != StatusStart {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, c := range w.containers {
			if c.Labels[LabelVersion] == "v2" && fail(c.Name) {
				c.HealthLog = append(c.HealthLog, HealthRun{Output: "deployctl: check failed (1 of 3 allowed): GET /health: 503"})
				c.failsIn = leaveAfter
			}
		}
	})
}

func watchThreeOptions() Options {
	o := testOptions("v2")
	o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 1}, &Amount{N: 0}
	o.Watch = time.Minute
	return o
}

// The watch reacts at the first failed health check of any new replica,
// while Docker still calls it healthy, and the restore brings the drained
// v1 back before any v2 leaves, then replaces the failing v2 ones one by
// one (surge 1): as long as they keep serving until replaced, Traefik
// never routes to fewer than 3 servers and Docker never runs more than 4.
func TestReplicasWatchFailingCheckRestoresV1WithinTheBudget(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	failAtWatch(w, e, 1000, func(string) bool { return true })
	_, err := e.Rollout(context.Background(), watchThreeOptions())
	de := assertKind(t, err, KindFailed)
	if de.Phase != PhaseWatch || !strings.Contains(de.Error(), "health check started failing") || !strings.Contains(de.State, "serving again") {
		t.Errorf("error %q, state %q", de.Error(), de.State)
	}
	assertRestored(t, w)
	checkBudget(t, w, 4, 3)
	// The drained v1 container is back before any v2 one is drained.
	if i, j := indexOf(t, w.ops, "marker web-c serve"), firstV2Drain(w.ops); i > j {
		t.Errorf("a v2 container was drained before the drained v1 one was back: %q", w.ops)
	}
}

// Only one v2 replica fails: it is the first to go, and the ones that pass
// their checks are drained only as v1 ones come back.
func TestReplicasWatchOneFailingReplicaGoesFirst(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	var failing string
	failAtWatch(w, e, 1000, func(name string) bool {
		if failing == "" {
			failing = name
		}
		return name == failing
	})
	_, err := e.Rollout(context.Background(), watchThreeOptions())
	de := assertKind(t, err, KindFailed)
	if !strings.Contains(de.Error(), "container "+failing) {
		t.Errorf("error %q does not name the failing container %s", de.Error(), failing)
	}
	assertRestored(t, w)
	checkBudget(t, w, 4, 3)
	if first := strings.Fields(w.ops[firstV2Drain(w.ops)])[1]; first != failing {
		t.Errorf("the first v2 container drained is %s, want the failing %s: %q", first, failing, w.ops)
	}
}

// When the failing replicas leave Traefik by themselves before they can be
// replaced (here: all three at once, right away), the floor cannot hold:
// the restore still ends with three v1 serving and no v2, and never runs
// more than 4 containers.
func TestReplicasWatchReplicasLeavingAtOnceStillRestore(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	failAtWatch(w, e, 1, func(string) bool { return true })
	_, err := e.Rollout(context.Background(), watchThreeOptions())
	de := assertKind(t, err, KindFailed)
	if de.Phase != PhaseWatch || !strings.Contains(de.State, "serving again") {
		t.Errorf("error %q, state %q", de.Error(), de.State)
	}
	assertRestored(t, w)
	checkBudget(t, w, 4, 0)
}

// firstV2Drain is the index of the first drain marker written into a v2
// container (len(ops) if none).
func firstV2Drain(ops []string) int {
	for i, op := range ops {
		if strings.HasPrefix(op, "marker web-v2") && strings.HasSuffix(op, " drain") {
			return i
		}
	}
	return len(ops)
}

// Traefik's API stops answering in step 2 of a rollout of three replicas,
// while deployctl waits for the new container to be listed or for the old
// one to be dropped. Listing cannot be confirmed: that step fails (Traefik
// unreachable, exit 4). A drop can, on Docker's health (deploy/blind.go):
// the drain of step 2 finishes that way and step 3 fails at its listing.
// The restore goes on Docker's health instead of timing out: the drained
// v1 container back, the stopped ones started again, every v2 one drained
// and removed, within the budget, with a warning saying so.
func TestReplicasTraefikDownInStep2RestoresV1Blind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		phase   Phase
		message string
		fails   string
	}{
		{"while registering", PhaseRegister, "step 2/3: waiting until", "step 2/3"},
		{"while draining", PhaseDrain, "step 2/3: drain marker written", "step 3/3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := threeV1()
			e, ev := engine(w)
			e.CleanupTimeout = 10 * time.Second // each blind wait is Traefik's throttle + 0.5 s
			e.Reporter = traefikDownAt(w, ev, tc.phase, tc.message, nil)
			o := blindOptions(w, "v2")
			o.DeregisterTimeout = time.Second
			o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 1}, &Amount{N: 0}
			_, err := e.Rollout(context.Background(), o)
			de := assertKind(t, err, KindUnreachable)
			if !strings.Contains(de.Error(), tc.fails) || !strings.Contains(de.Error(), "Traefik's API") || !strings.Contains(de.State, "serving again") {
				t.Errorf("error %q, state %q", de.Error(), de.State)
			}
			assertRestored(t, w)
			checkBudget(t, w, 4, 3)
			if !hasOp(w.ops, "start web-a") {
				t.Errorf("the v1 container stopped in step 1 was not started again: %q", w.ops)
			}
			if ws := strings.Join(ev.warnings(), "\n"); !strings.Contains(ws, "the restore went on Docker's health") {
				t.Errorf("warnings %q, want one saying the restore went on Docker's health", ws)
			}
		})
	}
}

// The v1 container step 1 stopped is removed by someone else, then the new
// container of step 2 crashes: the restore creates a v1 container in its
// place (image web:v1, the configuration of a v1 container still there,
// its deployctl labels, the drain probe with marker serve), waits until it
// is routed, and only then drains the v2 ones, within the budget.
func TestReplicasRestoreRecreatesAGoneOldContainer(t *testing.T) {
	w := goneOldInStep2()
	e, ev := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 1}, &Amount{N: 0}
	_, err := e.Rollout(context.Background(), o)
	de := assertKind(t, err, KindFailed)
	if !strings.Contains(de.Error(), "step 2/3") || !strings.Contains(de.State, "serving again") {
		t.Errorf("error %q, state %q", de.Error(), de.State)
	}
	assertRestored(t, w)
	checkBudget(t, w, 4, 3)
	w.mu.Lock()
	var made *fakeContainer
	for _, c := range w.containers {
		if c.spec.Name != "" && c.Labels[LabelVersion] == "v1" {
			made = c
		}
	}
	w.mu.Unlock()
	if made == nil {
		t.Fatalf("no v1 container created in place of web-a: %q", w.ops)
	}
	if made.spec.Image != "web:v1" || (made.spec.From != "id-web-b" && made.spec.From != "id-web-c") || made.Labels[LabelApp] != "web" || made.Labels[LabelDrain] != "probe" {
		t.Errorf("created %s: image %s from %s, labels %v", made.Name, made.spec.Image, made.spec.From, made.Labels)
	}
	if got := string(w.copied[made.Name][ProbePath]); got == "" {
		t.Errorf("%s got no drain probe", made.Name)
	}
	if i, j := indexOf(t, w.ops, "start "+made.Name), firstV2Drain(w.ops); i > j {
		t.Errorf("a v2 container was drained before the replacement was started: %q", w.ops)
	}
	if ws := strings.Join(ev.warnings(), "\n"); !strings.Contains(ws, "web-a was removed by someone else") || !strings.Contains(ws, made.Name) {
		t.Errorf("warnings %q, want one naming web-a and its replacement", ws)
	}
}

// goneOldInStep2 is three v1 replicas of web rolled to v2 with surge 1, where
// step 2's new container crashes as it starts and web-a, the v1 container
// step 1 stopped, has been removed by someone else by then.
func goneOldInStep2() *world {
	w, _ := threeV1()
	starts := 0
	w.behave = func(c *fakeContainer) {
		if c.Labels[LabelVersion] == "v2" {
			if starts++; starts == 2 {
				c.crash = true
				delete(w.containers, "id-web-a") // w.mu is held in Start
			}
		}
	}
	return w
}

// When the replacement of a gone old container cannot be started, the
// restore fails (exit 3: needs a human) and removes the replacement again:
// no half-made container is left behind.
func TestReplicasRestoreRemovesAReplacementThatCannotStart(t *testing.T) {
	w := goneOldInStep2()
	w.startErr = func(c *fakeContainer) error {
		if c.spec.Name != "" && c.Labels[LabelVersion] == "v1" {
			return errors.New("OCI runtime create failed: no space left on device")
		}
		return nil
	}
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 1}, &Amount{N: 0}
	_, err := e.Rollout(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("err = %v, want the replacement's start failure", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var failed string
	for _, op := range w.ops {
		if strings.HasPrefix(op, "start ") && strings.HasSuffix(op, " failed") {
			failed = strings.TrimSuffix(strings.TrimPrefix(op, "start "), " failed")
		}
	}
	if failed == "" {
		t.Fatalf("no replacement was started: %q", w.ops)
	}
	for _, c := range w.containers {
		if c.Name == failed {
			t.Errorf("replacement %s is left behind (state %s): %q", failed, c.State, w.ops)
		}
	}
	if !slices.Contains(w.ops, "remove "+failed) {
		t.Errorf("replacement %s was not removed: %q", failed, w.ops)
	}
}

// With surge 100% every v1 container is drained but running during the
// watch: when all three v2 replicas start failing and leave Traefik by
// themselves soon after (here: 3 Router calls), the v1 ones are back in
// Traefik first (their marker flipped at once), so 3 servers stay routed.
func TestReplicasWatchSurge100KeepsTheFloorWhenAllFail(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	failAtWatch(w, e, 3, func(string) bool { return true })
	o := watchThreeOptions()
	o.MaxSurge = &Amount{N: 100, Percent: true}
	_, err := e.Rollout(context.Background(), o)
	de := assertKind(t, err, KindFailed)
	if de.Phase != PhaseWatch || !strings.Contains(de.State, "serving again") {
		t.Errorf("error %q, state %q", de.Error(), de.State)
	}
	assertRestored(t, w)
	checkBudget(t, w, 6, 3)
}

// StepDelay (compose's update_config.delay) pauses between steps, not
// before the first or after the last, and says so.
func TestStepDelayPausesBetweenSteps(t *testing.T) {
	w, _ := threeV1()
	e, ev := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge, o.MaxUnavailable, o.StepDelay = 3, &Amount{N: 1}, &Amount{N: 0}, 40*time.Millisecond
	start := time.Now()
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Errorf("3 steps took %s: want 2 pauses of 40ms at least", took)
	}
	waits := 0
	for _, e := range ev.all {
		if strings.Contains(e.Message, "(the delay between steps)") {
			waits++
		}
	}
	if waits != 2 || len(res.Steps) != 3 {
		t.Errorf("%d waits in %d steps, want 2 in 3", waits, len(res.Steps))
	}
}
