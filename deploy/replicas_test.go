package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"
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

// Rollback of an app running several replicas is refused before anything
// changes.
func TestReplicasRollbackRefused(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	o := testOptions("v0")
	o.Reuse = "id-web-a"
	_, err := e.Rollout(context.Background(), o)
	de := assertKind(t, err, KindUsage)
	if !strings.Contains(de.Error(), "--replicas 3") {
		t.Errorf("error %q", de.Error())
	}
	for _, op := range w.ops {
		if op != "traefik list" {
			t.Errorf("changed the world: %q", op)
		}
	}
}
