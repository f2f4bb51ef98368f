package cmd

import (
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// The --dry-run renderer's steps: what each restarts and starts, then
// each current container it drains and stops (and removes).
func TestStepLines(t *testing.T) {
	current := []deploy.PlannedOld{
		{Name: "web-v1", Version: "v1", URL: "http://10.0.0.2:8080", Drain: deploy.DrainHealth},
		{Name: "legacy", Drain: deploy.DrainSignal},
	}
	for _, tc := range []struct {
		name string
		a    deploy.PlannedStep
		want string
	}{
		{"first deploy", deploy.PlannedStep{Step: 1, Start: []string{"new #1"}}, "  step 1: start new #1\n"},
		{"one step", deploy.PlannedStep{Step: 1, Start: []string{"new #1"}, Drain: []string{"web-v1"}, Stop: []string{"web-v1", "legacy"}}, "  step 1: start new #1\n" +
			"          then drain (health) and stop web-v1 (v1, http://10.0.0.2:8080)\n" +
			"          then drain (signal) and stop legacy (-, -)\n"},
		{"drain only", deploy.PlannedStep{Step: 2, Stop: []string{"legacy"}}, "  step 2: drain (signal) and stop legacy (-, -)\n"},
		{"several", deploy.PlannedStep{Step: 3, Start: []string{"new #2", "new #3"}}, "  step 3: start new #2, new #3\n"},
		{"rollback", deploy.PlannedStep{Step: 1, Restart: []string{"web-v0-a"}, Start: []string{"new #1"}, Drain: []string{"web-v1"}, Stop: []string{"web-v1"}}, "  step 1: restart retained web-v0-a, start new #1\n" +
			"          then drain (health) and stop web-v1 (v1, http://10.0.0.2:8080)\n"},
		{"scale down", deploy.PlannedStep{Step: 1, Drain: []string{"web-v1"}, Stop: []string{"web-v1"}, Remove: []string{"web-v1"}}, "  step 1: drain (health) stop and remove web-v1 (v1, http://10.0.0.2:8080)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stepLines(tc.a, current); got != tc.want {
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
