package deploy

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanChangesNothing(t *testing.T) {
	w := newWorld()
	w.addRunning("web-v1", "v1", true)
	legacy := w.addRunning("legacy", "v0", false)
	legacy.Labels[LabelApp] = "web"
	stopped := w.addRunning("web-v0", "v0", true)
	stopped.State = "exited"
	e, _ := engine(w)
	o := testOptions("v2") // web:v2 is not on the host: it would be pulled
	o.Keep = 1
	o.Replicas = 1 // the default would keep both (TestDecideBudget)
	p, err := e.Plan(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range w.ops {
		if op != "traefik list" {
			t.Errorf("dry run did %q", op)
		}
	}
	if !p.WouldPull || p.Port != 8080 || !p.Probe || len(p.Services) != 1 || p.Services[0] != "web@docker" {
		t.Errorf("plan %+v", p)
	}
	drains := map[string]DrainMode{}
	for _, c := range p.Current {
		drains[c.Name] = c.Drain
	}
	if len(p.Current) != 2 || drains["legacy"] != DrainSignal || drains["web-v1"] != DrainHealth {
		t.Errorf("current %+v", p.Current)
	}
	// --keep 1 with two containers about to be stopped: the stopped v0 goes.
	if len(p.Prune) != 1 || p.Prune[0] != "web-v0" {
		t.Errorf("prune %v", p.Prune)
	}
	if len(p.Warnings) != 1 || p.Warnings[0].Code != WarnNoProbeOnCurrent || !strings.Contains(p.Warnings[0].Message, "legacy") {
		t.Errorf("warnings %+v, want one %s about legacy", p.Warnings, WarnNoProbeOnCurrent)
	}
	// One step: start the new container, then drain both current ones.
	if want := []Step{{Start: 1, Drain: []int{0, 1}}}; !reflect.DeepEqual(p.Steps, want) {
		t.Errorf("steps %+v, want %+v", p.Steps, want)
	}
}

func TestCheckFindings(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	c := w.addRunning("web-v1", "v1", true)
	c.Labels[LabelImage] = "web"
	e, _ := engine(w)
	probe := testOptions("v1").Probes
	findings, err := e.Check(context.Background(), Options{App: "web", Probes: probe, Switch: SwitchGradual})
	if err != nil || len(findings) != 0 {
		t.Fatalf("healthy app: %+v %v", findings, err)
	}
	// A slow drain probe, two networks and no service label: all reported,
	// with fixes.
	c.Healthcheck = &Healthcheck{Test: []string{"CMD", ProbePath}, Interval: 30 * time.Second}
	c.Networks["backend"] = "10.9.0.2"
	for k := range c.Labels {
		if strings.HasPrefix(k, "traefik.http.services.") {
			delete(c.Labels, k)
		}
	}
	findings, err = e.Check(context.Background(), Options{App: "web", Probes: probe, Switch: SwitchGradual})
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, f := range findings {
		all += f.Problem + " / " + f.Fix + "\n"
	}
	for _, want := range []string{"several networks", "traefik.docker.network", "name no Traefik service", "Traefik does not list", "runs every 30s"} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if _, err := e.Check(context.Background(), Options{App: "nope"}); err == nil {
		t.Errorf("unknown app accepted")
	}
}

// check reports an image platform deployctl has no probe for as a finding
// with its fix, not as a failure of check itself.
func TestCheckReportsPlatformWithoutProbe(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	img := w.images["web:v1"]
	img.Arch = "s390x"
	w.images["web:v1"] = img
	c := w.addRunning("web-v1", "v1", true)
	c.Labels[LabelImage] = "web"
	e, _ := engine(w)
	findings, err := e.Check(context.Background(), Options{App: "web", Probes: fakeProbes{}, Switch: SwitchGradual})
	if err != nil || len(findings) != 1 || !strings.Contains(findings[0].Problem, "linux/s390x") || !strings.Contains(findings[0].Fix, "--drain=signal") {
		t.Errorf("findings %+v, err %v; want one naming linux/s390x with --drain=signal in its fix", findings, err)
	}
}

// The dry run's prune list is the one the rollout then removes, also when
// --select adopts a running container without the deployctl.app label
// (issue 11: the dry run had its own prune arithmetic, which counted the
// adopted container among the just-stopped versions kept by --keep).
func TestDryRunPrunesWhatTheRolloutPrunes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adopt  bool // a running container the --select adopts, without deployctl.app
		keep   int
		stoppd int // stopped versions of the app
	}{
		{name: "labelled only", keep: 2, stoppd: 3},
		{name: "adopted", adopt: true, keep: 2, stoppd: 3},
		{name: "adopted keep 1", adopt: true, keep: 1, stoppd: 2},
		{name: "adopted keep 3", adopt: true, keep: 3, stoppd: 3},
		{name: "nothing to prune", adopt: true, keep: 5, stoppd: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.addImage("web:v9", nil)
			for i := range tc.stoppd {
				c := w.addRunning(fmt.Sprintf("web-old%d", i), fmt.Sprintf("v%d", i), true)
				c.State = "exited"
			}
			if tc.adopt {
				w.addRunning("legacy", "v0", false)
			}
			w.addRunning("web-v5", "v5", true)
			e, _ := engine(w)
			o := testOptions("v9")
			o.Keep = tc.keep
			o.Select = map[string]string{"app": "web"}
			p, err := e.Plan(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.Rollout(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Prune, res.Pruned) {
				t.Errorf("the dry run would prune %q, the rollout pruned %q", p.Prune, res.Pruned)
			}
		})
	}
}

// check's findings for the plan's warnings are read by code: a current
// container Traefik does not list and one without the probe.
func TestCheckReadsWarningCodes(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	legacy := w.addRunning("legacy", "v0", false)
	legacy.Labels[LabelApp] = "web"
	c := w.addRunning("web-v1", "v1", true)
	c.Labels[LabelImage] = "web"
	w.unlisted = func(fc *fakeContainer) bool { return fc.Name == "legacy" }
	e, _ := engine(w)
	findings, err := e.Check(context.Background(), Options{App: "web", Probes: fakeProbes{}, Switch: SwitchGradual})
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, f := range findings {
		codes = append(codes, f.Code)
		if !strings.Contains(f.Problem, "legacy") || f.Fix == "" {
			t.Errorf("finding %+v: want one about legacy, with a fix", f)
		}
	}
	if want := []string{FindingNotListed, FindingNoProbeOnCurrent}; !slices.Equal(codes, want) {
		t.Errorf("codes %v, want %v", codes, want)
	}
}
