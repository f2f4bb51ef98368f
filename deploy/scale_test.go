package deploy

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestScaleSteps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		current int
		b       Budget
		want    []Step
	}{
		{"1 to 3, surge 1", 1, Budget{Replicas: 3, MaxSurge: 1}, []Step{{Start: 2}}},
		{"2 to 10, surge 0 unavailable 1", 2, Budget{Replicas: 10, MaxUnavailable: 1}, []Step{{Start: 8}}},
		{"3 to 1, surge 1", 3, Budget{Replicas: 1, MaxSurge: 1}, []Step{{Drain: []int{0, 1}}}},
		{"6 to 4, unavailable 1", 6, Budget{Replicas: 4, MaxSurge: 1, MaxUnavailable: 1}, []Step{{Drain: []int{0, 1}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ScaleSteps(tc.current, tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ScaleSteps(%d, %+v) = %+v, want %+v", tc.current, tc.b, got, tc.want)
			}
		})
	}
	if _, err := ScaleSteps(1, Budget{Replicas: 3}); err == nil {
		t.Error("a budget of surge 0 and unavailable 0 was accepted")
	}
}

func scaleOptions(n int) Options {
	o := testOptions("")
	o.Image, o.App, o.Replicas = "", "web", n
	return o
}

func TestScaleUp(t *testing.T) {
	w := newWorld()
	first := w.addRunning("web-a", "v1", true)
	first.Env = []string{"A=1"}
	e, _ := engine(w)
	j := newMemJournal()
	e.Journal = j
	o := scaleOptions(3)
	o.MaxSurge = &Amount{N: 1}
	p, res, err := e.Scale(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.From != 1 || p.To != 3 || p.Version != "v1" || p.NoOp {
		t.Errorf("plan %+v", p)
	}
	// Budget of 3 replicas, surge 1: at most 4 run; the one serving stays.
	checkBudget(t, w, 4, 1)
	if got := versionsRunning(w); got["v1"] != 3 || len(got) != 1 {
		t.Errorf("running versions %v, want 3 v1", got)
	}
	if first.State != "running" || first.marker != MarkerServe {
		t.Errorf("the serving container was touched: %s, marker %q", first.State, first.marker)
	}
	if len(res.NewContainers) != 3 || len(res.Old) != 0 {
		t.Errorf("result new_containers %+v, old %+v", res.NewContainers, res.Old)
	}
	w.mu.Lock()
	for _, c := range w.containers {
		if c.ID == first.ID {
			continue
		}
		if c.spec.From != first.ID || c.spec.Image != "web:v1" || c.Labels[LabelVersion] != "v1" || c.Labels[LabelApp] != "web" || c.Labels[LabelDrain] != "probe" {
			t.Errorf("new replica %s: from %q, image %q, labels %v: want the configuration of web-a", c.Name, c.spec.From, c.spec.Image, c.Labels)
		}
	}
	w.mu.Unlock()
	if len(j.records) != 1 || j.records[0].Operation != "scale" || j.records[0].Result != "ok" || j.records[0].To != "v1" {
		t.Errorf("history %+v", j.records)
	}
	if len(j.holders) != 0 {
		t.Errorf("lock left held: %+v", j.holders)
	}
}

func TestScaleDownDrainsTheOldestFirst(t *testing.T) {
	w, olds := threeV1()
	e, _ := engine(w)
	j := newMemJournal()
	e.Journal = j
	o := scaleOptions(1)
	_, res, err := e.Scale(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkBudget(t, w, 3, 1)
	for _, c := range olds[:2] {
		if _, ok := w.containers[c.ID]; ok {
			t.Errorf("%s not removed", c.Name)
		}
		// drained (out of Traefik) before it was stopped
		if d, s := indexOf(t, w.ops, "marker "+c.Name+" drain"), indexOf(t, w.ops, "stop "+c.Name); d > s {
			t.Errorf("%s stopped before it was drained: %q", c.Name, w.ops)
		}
	}
	if olds[2].State != "running" || olds[2].marker != MarkerServe {
		t.Errorf("the newest container %s is %s, marker %q", olds[2].Name, olds[2].State, olds[2].marker)
	}
	if hasOp(w.ops, "create ") {
		t.Errorf("a scale down created a container: %q", w.ops)
	}
	if len(res.NewContainers) != 1 || res.NewContainers[0].ID != olds[2].ID || len(res.Old) != 2 {
		t.Errorf("result %+v", res)
	}
	if len(j.records) != 1 || j.records[0].Operation != "scale" {
		t.Errorf("history %+v", j.records)
	}
}

func TestScaleToTheCurrentCountIsANoOp(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	j := newMemJournal()
	e.Journal = j
	p, res, err := e.Scale(context.Background(), scaleOptions(3))
	if err != nil || res != nil || !p.NoOp || p.From != 3 {
		t.Fatalf("plan %+v, result %+v, err %v", p, res, err)
	}
	for _, op := range w.ops {
		t.Errorf("changed the world: %q", op)
	}
	if len(j.records) != 0 || len(j.holders) != 0 {
		t.Errorf("history %+v, lock %+v", j.records, j.holders)
	}
}

func TestScaleUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    func(*Options)
		want string
	}{
		{"no app", func(o *Options) { o.App = "" }, "--app is required"},
		{"zero replicas", func(o *Options) { o.Replicas = 0 }, "--replicas must be at least 1"},
		{"unknown app", func(o *Options) { o.App = "shop" }, "app shop has no running containers"},
		{"no budget", func(o *Options) { o.MaxSurge, o.MaxUnavailable = &Amount{}, &Amount{} }, "--max-surge and --max-unavailable are both 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := threeV1()
			e, _ := engine(w)
			o := scaleOptions(5)
			tc.o(&o)
			_, _, err := e.Scale(context.Background(), o)
			de := assertKind(t, err, KindUsage)
			if !strings.Contains(de.Error(), tc.want) {
				t.Errorf("error %q, want %q", de.Error(), tc.want)
			}
			for _, op := range w.ops {
				if op != "traefik list" {
					t.Errorf("changed the world: %q", op)
				}
			}
		})
	}
}

// A new replica that never turns healthy: the scale is undone (the new
// ones removed), the serving container untouched, exit 1 naming the step
// and the container.
func TestScaleUpFailureRemovesTheNewReplicas(t *testing.T) {
	w := newWorld()
	first := w.addRunning("web-a", "v1", true)
	w.behave = func(c *fakeContainer) {
		if c.ID != first.ID {
			c.never = true
		}
	}
	e, _ := engine(w)
	o := scaleOptions(3)
	_, _, err := e.Scale(context.Background(), o)
	de := assertKind(t, err, KindFailed)
	if !strings.Contains(de.Error(), "step 1/1") || !strings.Contains(de.Error(), "did not become healthy") || !strings.Contains(de.State, "runs its 1 container(s) again") {
		t.Errorf("error %q, state %q", de.Error(), de.State)
	}
	if len(w.containers) != 1 || first.State != "running" {
		t.Errorf("containers left: %d, web-a %s", len(w.containers), first.State)
	}
	checkBudget(t, w, 4, 1)
}

func TestPlanScale(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	p, plan, err := e.PlanScale(context.Background(), scaleOptions(5))
	if err != nil {
		t.Fatal(err)
	}
	if p.From != 3 || p.To != 5 || plan.Version != "v1" || !reflect.DeepEqual(plan.Steps, []Step{{Start: 2}}) || len(plan.Current) != 3 {
		t.Errorf("scale plan %+v, plan %+v", p, plan)
	}
	for _, op := range w.ops {
		if op != "traefik list" {
			t.Errorf("changed the world: %q", op)
		}
	}
}
