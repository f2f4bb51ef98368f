package deploy

import (
	"context"
	"reflect"
	"testing"
)

func TestPlanActions(t *testing.T) {
	current := []PlannedOld{{Name: "web-a", Drain: DrainHealth}, {Name: "legacy", Drain: DrainSignal}, {Name: "web-c", Drain: DrainHealth}}
	for _, tc := range []struct {
		name   string
		steps  []Step
		reuse  []string
		remove bool
		want   []PlannedStep
	}{
		{"single container", []Step{{Start: 1, Drain: []int{0, 1}}}, nil, false,
			[]PlannedStep{{Step: 1, Start: []string{"new #1"}, Drain: []string{"web-a"}, Stop: []string{"web-a", "legacy"}}}},
		{"three replicas, surge 1", []Step{{Start: 1, Drain: []int{0}}, {Start: 1, Drain: []int{1}}, {Start: 1, Drain: []int{2}}}, nil, false,
			[]PlannedStep{
				{Step: 1, Start: []string{"new #1"}, Drain: []string{"web-a"}, Stop: []string{"web-a"}},
				{Step: 2, Start: []string{"new #2"}, Stop: []string{"legacy"}},
				{Step: 3, Start: []string{"new #3"}, Drain: []string{"web-c"}, Stop: []string{"web-c"}},
			}},
		{"surge 0: drain first", []Step{{Drain: []int{0}}, {Start: 2, Drain: []int{1, 2}}, {Start: 1}}, nil, false,
			[]PlannedStep{
				{Step: 1, Drain: []string{"web-a"}, Stop: []string{"web-a"}},
				{Step: 2, Start: []string{"new #1", "new #2"}, Drain: []string{"web-c"}, Stop: []string{"legacy", "web-c"}},
				{Step: 3, Start: []string{"new #3"}},
			}},
		{"rollback: retained first, then created", []Step{{Start: 2, Drain: []int{0}}, {Start: 1, Drain: []int{1, 2}}}, []string{"web-v1-a"}, false,
			[]PlannedStep{
				{Step: 1, Restart: []string{"web-v1-a"}, Start: []string{"new #1"}, Drain: []string{"web-a"}, Stop: []string{"web-a"}},
				{Step: 2, Start: []string{"new #2"}, Drain: []string{"web-c"}, Stop: []string{"legacy", "web-c"}},
			}},
		{"scale down removes", []Step{{Drain: []int{0}}, {Drain: []int{1}}}, nil, true,
			[]PlannedStep{
				{Step: 1, Drain: []string{"web-a"}, Stop: []string{"web-a"}, Remove: []string{"web-a"}},
				{Step: 2, Stop: []string{"legacy"}, Remove: []string{"legacy"}},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planActions(tc.steps, current, tc.reuse, tc.remove); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The dry runs of a rollout, a rollback and a scale of three replicas
// name, per step, what starts and what is drained and stopped, and
// change nothing.
func TestDryRunActionsOfReplicas(t *testing.T) {
	unchanged := func(t *testing.T, w *world) {
		t.Helper()
		for _, op := range w.ops {
			if op != "traefik list" {
				t.Errorf("dry run did %q", op)
			}
		}
	}
	t.Run("rollout", func(t *testing.T) {
		w, _ := threeV1()
		e, _ := engine(w)
		o := testOptions("v2")
		o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 1}, &Amount{N: 0}
		p, err := e.Plan(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		unchanged(t, w)
		want := []PlannedStep{
			{Step: 1, Start: []string{"new #1"}, Drain: []string{"web-a"}, Stop: []string{"web-a"}},
			{Step: 2, Start: []string{"new #2"}, Drain: []string{"web-b"}, Stop: []string{"web-b"}},
			{Step: 3, Start: []string{"new #3"}, Drain: []string{"web-c"}, Stop: []string{"web-c"}},
		}
		if !reflect.DeepEqual(p.Actions, want) {
			t.Errorf("actions %+v\nwant %+v", p.Actions, want)
		}
	})
	t.Run("rollback", func(t *testing.T) {
		w, e, _ := rollbackThree("web-v1-a", "web-v1-b")
		rp, p, err := e.PlanRollbackSteps(context.Background(), rollbackThreeOptions())
		if err != nil {
			t.Fatal(err)
		}
		unchanged(t, w)
		if rp.To != "v1" || p == nil || p.Version != "v1" {
			t.Fatalf("rollback plan %+v, plan %+v", rp, p)
		}
		want := []PlannedStep{
			{Step: 1, Restart: []string{"web-v1-a"}, Drain: []string{"web-v2-a"}, Stop: []string{"web-v2-a"}},
			{Step: 2, Restart: []string{"web-v1-b"}, Drain: []string{"web-v2-b"}, Stop: []string{"web-v2-b"}},
			{Step: 3, Start: []string{"new #1"}, Drain: []string{"web-v2-c"}, Stop: []string{"web-v2-c"}},
		}
		if !reflect.DeepEqual(p.Actions, want) {
			t.Errorf("actions %+v\nwant %+v", p.Actions, want)
		}
		// The retained containers it restarts are not pruned.
		for _, name := range p.Prune {
			if name == "web-v1-a" || name == "web-v1-b" {
				t.Errorf("prune %v lists a container the rollback restarts", p.Prune)
			}
		}
	})
	t.Run("scale down", func(t *testing.T) {
		w, _ := threeV1()
		e, _ := engine(w)
		_, p, err := e.PlanScale(context.Background(), scaleOptions(1))
		if err != nil {
			t.Fatal(err)
		}
		unchanged(t, w)
		var removed []string
		for _, a := range p.Actions {
			if a.Start != nil || !reflect.DeepEqual(a.Remove, a.Stop) {
				t.Errorf("scale down step %+v", a)
			}
			removed = append(removed, a.Remove...)
		}
		if !reflect.DeepEqual(removed, []string{"web-a", "web-b"}) || p.Prune != nil {
			t.Errorf("actions %+v, prune %v: want web-a and web-b removed, no prune", p.Actions, p.Prune)
		}
	})
}
