package deploy

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// stepPhases are the phases whose events a run of several steps emits
// only within a step.
var stepPhases = map[Phase]bool{PhaseCreate: true, PhaseHealthy: true, PhaseRegister: true, PhaseDrain: true, PhaseStop: true}

// checkStepEvents: every event of a step's phases names its step (1..steps,
// never going back) and, as an info event, its container; an event whose
// message names a step names the same one; the events before the first
// step and after the last (prune, done) name none.
func checkStepEvents(t *testing.T, evs []Event, steps int) {
	t.Helper()
	last := 0
	for i, ev := range evs {
		if stepPhases[ev.Phase] || ev.Phase == PhaseRevert {
			if ev.Step < 1 || ev.Step > steps || ev.Steps != steps {
				t.Errorf("event %d %s %s %q: step %d/%d, want one of %d", i, ev.Phase, ev.Status, ev.Message, ev.Step, ev.Steps, steps)
			}
			if ev.Status == StatusInfo && ev.Container == "" {
				t.Errorf("event %d %s info %q names no container", i, ev.Phase, ev.Message)
			}
		}
		if ev.Phase == PhasePrune || ev.Phase == PhaseDone || (ev.Phase == PhasePlan && last == 0) {
			if ev.Step != 0 || ev.Steps != 0 {
				t.Errorf("event %d %s %s %q: step %d/%d, want none", i, ev.Phase, ev.Status, ev.Message, ev.Step, ev.Steps)
			}
		}
		if ev.Step > 0 && strings.HasPrefix(ev.Message, "step ") && !strings.HasPrefix(ev.Message, fmt.Sprintf("step %d/%d", ev.Step, ev.Steps)) {
			t.Errorf("event %d: message %q, step field %d/%d", i, ev.Message, ev.Step, ev.Steps)
		}
		if ev.Step != 0 && ev.Step < last {
			t.Errorf("event %d: step %d after step %d", i, ev.Step, last)
		}
		last = max(last, ev.Step)
	}
	if last != steps {
		t.Errorf("the last step named is %d, want %d", last, steps)
	}
}

func TestReplicasEventsAndResultNameTheSteps(t *testing.T) {
	w, _ := threeV1()
	e, ev := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 1}, &Amount{N: 0}
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkStepEvents(t, ev.all, 3)
	if len(res.Steps) != 3 || len(res.NewContainers) != 3 {
		t.Fatalf("steps %+v, new %+v", res.Steps, res.NewContainers)
	}
	for i, st := range res.Steps {
		old := []string{"web-a", "web-b", "web-c"}[i : i+1]
		want := StepReport{Step: i + 1, Started: []string{res.NewContainers[i].Name}, Drained: old, Stopped: old, Elapsed: st.Elapsed}
		if !reflect.DeepEqual(st, want) {
			t.Errorf("step %d: %+v, want %+v", i+1, st, want)
		}
	}
	// A single-container rollout has no steps, in its events or result.
	w1 := newWorld()
	w1.addImage("web:v2", nil)
	w1.addRunning("web-a", "v1", true)
	e1, ev1 := engine(w1)
	res1, err := e1.Rollout(context.Background(), testOptions("v2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ev1.all {
		if x.Step != 0 || x.Steps != 0 {
			t.Errorf("single-container rollout event %s %s %q: step %d/%d", x.Phase, x.Status, x.Message, x.Step, x.Steps)
		}
	}
	if res1.Steps != nil {
		t.Errorf("single-container result steps %+v", res1.Steps)
	}
}

// A failure in step 2 is reported on step 2, and so is the restore that
// follows it, each container it starts or removes named.
func TestReplicasRestoreEventsNameTheFailedStep(t *testing.T) {
	w, _ := threeV1()
	starts := 0
	w.behave = func(c *fakeContainer) {
		if c.Labels[LabelVersion] == "v2" {
			starts++
			c.crash = starts == 2
		}
	}
	e, ev := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge = 3, &Amount{N: 1}
	if _, err := e.Rollout(context.Background(), o); err == nil {
		t.Fatal("no error")
	}
	var failed, reverts int
	for _, x := range ev.all {
		if x.Status == StatusFail {
			failed++
			if x.Step != 2 || x.Steps != 3 || !strings.HasPrefix(x.Container, "web-v2") {
				t.Errorf("failure event %+v: want step 2/3 and the v2 container", x)
			}
		}
		if x.Phase == PhaseRevert {
			reverts++
			if x.Step != 2 || x.Steps != 3 {
				t.Errorf("restore event %+v: want step 2/3", x)
			}
			if x.Status == StatusInfo && x.Container == "" {
				t.Errorf("restore event %+v names no container", x)
			}
		}
	}
	if failed != 1 || reverts < 3 {
		t.Errorf("%d failure and %d restore events: %+v", failed, reverts, ev.all)
	}
}

// A rollback's steps report the retained containers they restarted apart
// from those they created.
func TestReplicasRollbackResultSteps(t *testing.T) {
	_, e, ev := rollbackThree("web-v1-a")
	_, res, err := e.Rollback(context.Background(), rollbackThreeOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkStepEvents(t, ev.all, 3)
	if len(res.Steps) != 3 {
		t.Fatalf("steps %+v", res.Steps)
	}
	if st := res.Steps[0]; !reflect.DeepEqual(st.Restarted, []string{"web-v1-a"}) || st.Started != nil || !reflect.DeepEqual(st.Stopped, []string{"web-v2-a"}) {
		t.Errorf("step 1 %+v: want web-v1-a restarted, web-v2-a stopped", st)
	}
	for _, st := range res.Steps[1:] {
		if len(st.Started) != 1 || st.Restarted != nil || len(st.Stopped) != 1 || len(st.Drained) != 1 {
			t.Errorf("step %d %+v: want one created, one drained and stopped", st.Step, st)
		}
	}
}

// A scale's steps: a scale up only starts, a scale down drains, stops and
// removes the oldest.
func TestScaleResultSteps(t *testing.T) {
	w, _ := threeV1()
	e, ev := engine(w)
	_, res, err := e.Scale(context.Background(), scaleOptions(1))
	if err != nil {
		t.Fatal(err)
	}
	checkStepEvents(t, ev.all, len(res.Steps))
	var removed []string
	for _, st := range res.Steps {
		if st.Started != nil || !reflect.DeepEqual(st.Removed, st.Stopped) || !reflect.DeepEqual(st.Drained, st.Stopped) {
			t.Errorf("scale down step %+v", st)
		}
		removed = append(removed, st.Removed...)
	}
	if !reflect.DeepEqual(removed, []string{"web-a", "web-b"}) {
		t.Errorf("removed %v over the steps %+v, want web-a, web-b", removed, res.Steps)
	}

	w2 := newWorld()
	w2.addRunning("web-a", "v1", true)
	e2, ev2 := engine(w2)
	o := scaleOptions(3)
	o.MaxSurge = &Amount{N: 1}
	_, res2, err := e2.Scale(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// 1 running, surge 1 over 3: both new ones start in one step.
	checkStepEvents(t, ev2.all, 1)
	if len(res2.Steps) != 1 || len(res2.Steps[0].Started) != 2 || res2.Steps[0].Stopped != nil {
		t.Errorf("scale up steps %+v, want one that starts two", res2.Steps)
	}
}

// The history records how many containers ran before a run and how many
// it was to leave running: a rollout of 3, a scale from 3 to 1, a
// single-container rollout.
func TestHistoryRecordsTheReplicaCounts(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	j := newMemJournal()
	e.Journal = j
	o := testOptions("v2")
	o.Replicas, o.MaxSurge = 3, &Amount{N: 1}
	if _, err := e.Rollout(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Scale(context.Background(), scaleOptions(1)); err != nil {
		t.Fatal(err)
	}
	w1 := newWorld()
	w1.addImage("web:v2", nil)
	w1.addRunning("web-a", "v1", true)
	e1, _ := engine(w1)
	e1.Journal = j
	if _, err := e1.Rollout(context.Background(), testOptions("v2")); err != nil {
		t.Fatal(err)
	}
	var got [][2]int
	for _, rec := range j.records {
		got = append(got, [2]int{rec.FromReplicas, rec.Replicas})
	}
	// Newest first: the single-container rollout, the scale, the rollout.
	if want := [][2]int{{1, 1}, {3, 1}, {3, 3}}; !reflect.DeepEqual(got, want) {
		t.Errorf("from/to replicas of the records %v, want %v: %+v", got, want, j.records)
	}
}
