package cmd

import (
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// The --dry-run renderer's steps: what each starts, then each current
// container it drains and stops.
func TestStepLines(t *testing.T) {
	current := []deploy.PlannedOld{
		{Name: "web-v1", Version: "v1", URL: "http://10.0.0.2:8080", Drain: deploy.DrainHealth},
		{Name: "legacy", Drain: deploy.DrainSignal},
	}
	for _, tc := range []struct {
		name string
		st   deploy.Step
		want string
	}{
		{"first deploy", deploy.Step{Start: 1}, "  step 1: start 1 new container\n"},
		{"one step", deploy.Step{Start: 1, Drain: []int{0, 1}}, "  step 1: start 1 new container\n" +
			"          then drain (health) and stop web-v1 (v1, http://10.0.0.2:8080)\n" +
			"          then drain (signal) and stop legacy (-, -)\n"},
		{"drain only", deploy.Step{Drain: []int{1}}, "  step 1: drain (signal) and stop legacy (-, -)\n"},
		{"several", deploy.Step{Start: 3}, "  step 1: start 3 new containers\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stepLines(1, tc.st, current); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// What each step of a finished run did, a line a step.
func TestPrintSteps(t *testing.T) {
	var b strings.Builder
	printSteps(&b, []deploy.StepReport{
		{Step: 1, Restarted: []string{"web-v1-a"}, Drained: []string{"web-v2-a"}, Stopped: []string{"web-v2-a"}, Elapsed: deploy.Duration(1500 * time.Millisecond)},
		{Step: 2, Started: []string{"web-v1-x", "web-v1-y"}, Stopped: []string{"legacy"}, Removed: []string{"legacy"}, Gone: []string{"web-v2-b"}, Elapsed: deploy.Duration(2 * time.Second)},
	})
	want := "  step 1/2 (1.5s): restarted web-v1-a; drained web-v2-a; stopped web-v2-a\n" +
		"  step 2/2 (2s): started web-v1-x, web-v1-y; stopped legacy; removed legacy; found removed by someone else web-v2-b\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
