package deploy

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseAmount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Amount
		err  string
	}{
		{"1", Amount{N: 1}, ""},
		{"0", Amount{}, ""},
		{"25%", Amount{N: 25, Percent: true}, ""},
		{"100%", Amount{N: 100, Percent: true}, ""},
		{" 3 ", Amount{N: 3}, ""},
		{"101%", Amount{}, "at most 100%"},
		{"-1", Amount{}, "not negative"},
		{"", Amount{}, "want a count"},
		{"%", Amount{}, "want a count"},
		{"1.5", Amount{}, "want a count"},
		{"two", Amount{}, "want a count"},
	} {
		got, err := ParseAmount("--max-surge", tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--max-surge") {
				t.Errorf("ParseAmount(%q) = %v, %v; want an error naming --max-surge with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseAmount(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestNewBudgetRounding(t *testing.T) {
	pct := func(n int) Amount { return Amount{N: n, Percent: true} }
	cnt := func(n int) Amount { return Amount{N: n} }
	for _, tc := range []struct {
		n                  int
		surge, unavailable Amount
		want               Budget
	}{
		// Defaults: 25% surge rounds up (at least 1), 0 unavailable.
		{1, DefaultMaxSurge, DefaultMaxUnavailable, Budget{1, 1, 0}},
		{4, DefaultMaxSurge, DefaultMaxUnavailable, Budget{4, 1, 0}},
		{5, DefaultMaxSurge, DefaultMaxUnavailable, Budget{5, 2, 0}},
		{8, DefaultMaxSurge, DefaultMaxUnavailable, Budget{8, 2, 0}},
		{10, DefaultMaxSurge, DefaultMaxUnavailable, Budget{10, 3, 0}},
		// Unavailable percentages round down.
		{3, cnt(0), pct(50), Budget{3, 0, 1}},
		{10, cnt(0), pct(25), Budget{10, 0, 2}},
		{4, pct(100), pct(100), Budget{4, 4, 4}},
		// Both rounding to 0: one may be unavailable (Kubernetes' fencepost).
		{3, cnt(0), pct(10), Budget{3, 0, 1}},
		// Counts above N: surge may exceed N, unavailable may not.
		{2, cnt(5), cnt(5), Budget{2, 5, 2}},
	} {
		got, err := NewBudget(tc.n, tc.surge, tc.unavailable)
		if err != nil || got != tc.want {
			t.Errorf("NewBudget(%d, %v, %v) = %+v, %v; want %+v", tc.n, tc.surge, tc.unavailable, got, err, tc.want)
		}
	}
	if _, err := NewBudget(3, cnt(0), pct(0)); err == nil || !strings.Contains(err.Error(), "both 0") {
		t.Errorf("surge 0, unavailable 0%%: %v; want a usage error", err)
	}
	if _, err := NewBudget(0, cnt(1), cnt(0)); err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("0 replicas: %v; want a usage error about the replicas", err)
	}
}

// simulate runs steps over old containers and checks the budget at every
// moment: never more than MaxRunning containers, never fewer routed than
// the floor (or than were routed before the step, when the app started
// below it), every old container drained exactly once, oldest first, and
// Replicas new ones at the end.
func simulate(t *testing.T, old int, b Budget, steps []Step) {
	t.Helper()
	routed, running, started, next := old, old, 0, 0
	for i, s := range steps {
		running += s.Start
		started += s.Start
		if running > max(b.MaxRunning(), old) {
			t.Fatalf("step %d: %d running > %d", i+1, running, b.MaxRunning())
		}
		floor := min(b.MinRouted(), routed)
		routed = running
		for _, d := range s.Drain {
			if d != next {
				t.Fatalf("step %d drains old #%d, want #%d (oldest first)", i+1, d, next)
			}
			next++
			running--
			routed--
		}
		if routed < floor {
			t.Fatalf("step %d: %d routed < floor %d", i+1, routed, floor)
		}
		if s.Start == 0 && len(s.Drain) == 0 {
			t.Fatalf("step %d does nothing", i+1)
		}
	}
	if started != b.Replicas || next != old || running != b.Replicas {
		t.Fatalf("after %d steps: %d started, %d of %d old drained, %d running; want %d new only", len(steps), started, next, old, running, b.Replicas)
	}
}

func TestPlanStepsKeepsTheBudget(t *testing.T) {
	amounts := []Amount{{N: 0}, {N: 1}, {N: 2}, {N: 25, Percent: true}, {N: 50, Percent: true}, {N: 100, Percent: true}}
	for n := 1; n <= 10; n++ {
		for _, surge := range amounts {
			for _, unavailable := range amounts {
				b, err := NewBudget(n, surge, unavailable)
				if err != nil {
					continue // both 0: refused, tested above
				}
				for old := 0; old <= 12; old++ {
					t.Run(fmt.Sprintf("n=%d/surge=%v/unavailable=%v/old=%d", n, surge, unavailable, old), func(t *testing.T) {
						steps, err := PlanSteps(old, b)
						if err != nil {
							t.Fatal(err)
						}
						simulate(t, old, b, steps)
					})
				}
			}
		}
	}
}

func TestPlanStepsShapes(t *testing.T) {
	for _, tc := range []struct {
		old  int
		b    Budget
		want string
	}{
		// One container, surge 1: the single-container rollout of today.
		{1, Budget{1, 1, 0}, "+1 -[0]"},
		// 3 replicas, surge 1, unavailable 0: one at a time.
		{3, Budget{3, 1, 0}, "+1 -[0] | +1 -[1] | +1 -[2]"},
		// surge 100%: all new at once, then all old.
		{3, Budget{3, 3, 0}, "+3 -[0 1 2]"},
		// surge 0, unavailable 1: drain first, then replace one at a time.
		{3, Budget{3, 0, 1}, "+0 -[0] | +1 -[1] | +1 -[2] | +1"},
		// First deploy of 4.
		{0, Budget{4, 1, 0}, "+4"},
		// Scale-down while rolling: 5 old, 2 new.
		{5, Budget{2, 1, 0}, "+0 -[0 1 2] | +1 -[3] | +1 -[4]"},
		// 8 replicas, surge 2: four steps of two.
		{8, Budget{8, 2, 0}, "+2 -[0 1] | +2 -[2 3] | +2 -[4 5] | +2 -[6 7]"},
	} {
		steps, err := PlanSteps(tc.old, tc.b)
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, s := range steps {
			p := fmt.Sprintf("+%d", s.Start)
			if len(s.Drain) > 0 {
				p += fmt.Sprintf(" -%v", s.Drain)
			}
			parts = append(parts, p)
		}
		if got := strings.Join(parts, " | "); got != tc.want {
			t.Errorf("PlanSteps(%d, %+v) = %s; want %s", tc.old, tc.b, got, tc.want)
		}
	}
}
