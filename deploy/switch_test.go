package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// switchingRouter is the fake router with the Switcher capability: its
// PlanSwitch answers plan or err.
type switchingRouter struct {
	*fakeRouter
	plan SwitchPlan
	err  error
}

func (s switchingRouter) PlanSwitch(ctx context.Context, tmpl Container, labels map[string]string, ep Endpoint, version string) (SwitchPlan, error) {
	return s.plan, s.err
}

func (s switchingRouter) Routes(ctx context.Context, routers, urls []string) (bool, error) {
	return false, errors.New("not asked in a dry run")
}

func webSwitchPlan(version string) SwitchPlan {
	return SwitchPlan{
		RemoveLabels: []string{"traefik.http.routers.web.rule", "traefik.http.services.web.loadbalancer.server.port"},
		Labels:       map[string]string{"traefik.http.services.web-" + version + ".loadbalancer.server.port": "8080"},
		Services:     []string{"web-" + version + "@docker"},
		Lifted:       Route{Labels: map[string]string{"traefik.http.routers.web-" + version + ".rule": "PathPrefix(`/`)"}, Routers: []string{"web-" + version + "@docker"}},
		User:         Route{Labels: map[string]string{"traefik.http.routers.web.rule": "PathPrefix(`/`)"}, Routers: []string{"web@docker"}},
	}
}

// TestPlanSwitch is when a rollout switches atomically, and what the plan
// says when it falls back to gradual.
func TestPlanSwitch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     SwitchMode
		replicas int
		surge    *Amount // --max-surge; nil: the default, 100% with atomic
		router   func(w *world) Router
		setup    func(w *world)
		watch    time.Duration
		want     SwitchMode
		warning  string // in the switch-gradual warning; "" none
		refused  string // in the plan's error; "" none
	}{
		{name: "default", want: SwitchAtomic,
			router: func(w *world) Router { return switchingRouter{w.router(), webSwitchPlan("v2"), nil} }},
		{name: "default, router cannot", want: SwitchGradual, warning: "Traefik cannot switch atomically (--switch gradual chooses this switch without the warning)",
			router: func(w *world) Router { return w.router() }},
		{name: "router cannot", mode: SwitchAtomic, want: SwitchGradual, warning: "Traefik cannot switch atomically (--switch gradual chooses this switch without the warning)",
			router: func(w *world) Router { return w.router() }},
		// legacy has no probe: only an atomic switch can take it out and
		// back in.
		{name: "watch, atomic", mode: SwitchAtomic, watch: time.Second, want: SwitchAtomic,
			router: func(w *world) Router { return switchingRouter{w.router(), webSwitchPlan("v2"), nil} }},
		{name: "watch, gradual asked for", mode: SwitchGradual, watch: time.Second, refused: "container legacy has none",
			router: func(w *world) Router { return switchingRouter{w.router(), webSwitchPlan("v2"), nil} }},
		{name: "watch, falling back to gradual", mode: SwitchAtomic, watch: time.Second, warning: "Traefik cannot switch atomically", refused: "container legacy has none",
			router: func(w *world) Router { return w.router() }},
		{name: "gradual asked for", mode: SwitchGradual, want: SwitchGradual,
			router: func(w *world) Router { return switchingRouter{w.router(), webSwitchPlan("v2"), nil} }},
		{name: "atomic", mode: SwitchAtomic, want: SwitchAtomic, // 2 replicas: surge 100% by default

			router: func(w *world) Router { return switchingRouter{w.router(), webSwitchPlan("v2"), nil} }},
		{name: "labels cannot", mode: SwitchAtomic, want: SwitchGradual, warning: "TCP or UDP",
			router: func(w *world) Router {
				return switchingRouter{w.router(), SwitchPlan{}, fmt.Errorf("%w: the app has TCP or UDP routing", ErrNotAtomic)}
			}},
		{name: "surge below replicas", mode: SwitchAtomic, replicas: 3, surge: &Amount{N: 1}, want: SwitchGradual, warning: "--max-surge of at least --replicas (3)",
			router: func(w *world) Router { return switchingRouter{w.router(), webSwitchPlan("v2"), nil} }},
		// Another version runs too (web-v1's own routers): the rollout
		// removes the lifted route first (unlift,
		// TestRunKilledBetweenSwitchAndStopIsSwitchedBack), then switches.
		{name: "left lifted", mode: SwitchAtomic, want: SwitchAtomic,
			router: func(w *world) Router { return switchingRouter{w.router(), webSwitchPlan("v2"), nil} },
			setup: func(w *world) {
				c := w.addRunning("web-route-v1-lifted", "v1", false)
				c.Labels = map[string]string{LabelRouteOf: "web", LabelRouteLevel: RouteLifted, LabelVersion: "v1"}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.addRunning("web-v1", "v1", true)
			legacy := w.addRunning("legacy", "v0", false)
			legacy.Labels[LabelApp] = "web"
			if tc.setup != nil {
				tc.setup(w)
			}
			e, ev := engine(w)
			e.Router = tc.router(w)
			o := testOptions("v2")
			o.Switch, o.Replicas, o.MaxSurge, o.Watch = tc.mode, tc.replicas, tc.surge, tc.watch
			if tc.refused != "" {
				// A rollout, for the warnings it reports before the refusal.
				w.addImage("web:v2", nil)
				_, err := e.Rollout(context.Background(), o)
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("rollout: %v, want refused with %q", err, tc.refused)
				}
				sw := slices.DeleteFunc(ev.warnings(), func(s string) bool { return !strings.Contains(s, "switching gradually") })
				if (tc.warning == "") != (len(sw) == 0) || (tc.warning != "" && !strings.Contains(strings.Join(sw, ""), tc.warning)) {
					t.Errorf("switch warnings with the refusal %q, want %q", sw, tc.warning)
				}
				return
			}
			p, err := e.Plan(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if p.Switch != tc.want {
				t.Errorf("switch %s, want %s", p.Switch, tc.want)
			}
			var sw, noProbe []string
			for _, w := range p.Warnings {
				switch w.Code {
				case WarnSwitchGradual:
					sw = append(sw, w.Message)
				case WarnNoProbeOnCurrent:
					noProbe = append(noProbe, w.Message)
				}
			}
			switch {
			case tc.warning == "" && len(sw) > 0:
				t.Errorf("warned %q", sw)
			case tc.warning != "" && (len(sw) != 1 || !strings.Contains(sw[0], tc.warning)):
				t.Errorf("switch warnings %q, want one naming %q", sw, tc.warning)
			}
			if p.Switch == SwitchAtomic {
				if strings.Join(p.Services, ",") != "web-v2@docker" || strings.Join(p.SwitchRouters, ",") != "web-v2@docker" {
					t.Errorf("plan services %v, switch routers %v", p.Services, p.SwitchRouters)
				}
				for _, c := range p.Current {
					if c.Drain != DrainSwitch {
						t.Errorf("%s drained by %s, want switch", c.Name, c.Drain)
					}
				}
				if len(noProbe) > 0 {
					t.Errorf("warned that a container without the probe gets its signal first, which an atomic switch avoids: %q", noProbe)
				}
			} else if len(noProbe) != 1 {
				t.Errorf("gradual: warnings about the container without the probe %q, want one", noProbe)
			}
		})
	}
}

// TestRollbackRecreatesWhenItsRoutersWouldConflict: a retained container
// with its own routers (made before the app's first atomic rollout)
// cannot come back while a route container routes the app (two
// definitions of one router disable it in Traefik): the rollback creates
// a container from its image instead, and switches to it atomically.
func TestRollbackRecreatesWhenItsRoutersWouldConflict(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	old := w.addRunning("web-v1", "v1", true)
	old.State, old.Health = "exited", ""
	old.Labels[LabelImage] = "web"
	cur := w.addRunning("web-v2", "v2", true)
	cur.Labels[LabelImage] = "web"
	routedBy(w, cur, "v2")
	w.trackServed = true
	e, ev := engine(w)
	e.Router = worldSwitcher{w.router()}
	p, res, err := e.Rollback(context.Background(), rollbackOptions())
	if err != nil {
		t.Fatal(err)
	}
	if p.Reuse != "" || !strings.Contains(p.Recreate, "web-v1") || !strings.Contains(p.Recreate, "routers of its own") {
		t.Errorf("plan %+v: want a new container, and why", p)
	}
	if res.Switch != SwitchAtomic || res.New.ID == old.ID || old.State != "exited" {
		t.Errorf("result %+v, web-v1 %s: want an atomic switch to a new container, web-v1 left stopped", res, old.State)
	}
	if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, res.New.ID)}) {
		t.Errorf("Traefik routes to %v, want the new v1 container only", got)
	}
	for i, n := range w.served {
		if n == 0 {
			t.Errorf("no server routed after op %q", w.ops[i])
		}
	}
	if !slices.ContainsFunc(ev.all, func(e Event) bool {
		return strings.Contains(e.Message, "creating a container from web:v1, configured like the current one")
	}) {
		t.Errorf("no event says why the rollback creates a container")
	}
}

// TestCheckSaysWhyNotAtomic: check --switch atomic reports the fallback as
// a finding with its reason and fix; for a gradual rollout it says nothing
// about the switch.
func TestCheckSaysWhyNotAtomic(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	c := w.addRunning("web-v1", "v1", true)
	c.Labels[LabelImage] = "web"
	e, _ := engine(w)
	e.Router = switchingRouter{w.router(), SwitchPlan{}, fmt.Errorf("%w: the app has no traefik.http.routers.* labels", ErrNotAtomic)}
	o := testOptions("")
	o.App = "web"
	fs, err := e.Check(context.Background(), o)
	if err != nil || len(fs) != 0 {
		t.Fatalf("check (gradual): %+v %v, want nothing", fs, err)
	}
	o.Switch = SwitchAtomic
	fs, err = e.Check(context.Background(), o)
	if err != nil || len(fs) != 1 || fs[0].Code != WarnSwitchGradual || !strings.Contains(fs[0].Problem, "no traefik.http.routers.* labels") || fs[0].Fix == "see the message" {
		t.Errorf("check --switch atomic: %+v %v, want one %s finding with the reason and a fix", fs, err, WarnSwitchGradual)
	}
}

// TestGradualRolloutKeepsTheRoutingBase: after an atomic rollout the app's
// containers carry the user's own routing labels in LabelRoutingBase; a
// gradual rollout's containers keep it (Docker's copy leaves deployctl's
// labels out), so that a later atomic rollout can still split them.
func TestGradualRolloutKeepsTheRoutingBase(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	old.Labels[LabelRoutingBase] = `{"traefik.http.routers.web.rule":"PathPrefix(` + "`/`" + `)"}`
	e, _ := engine(w)
	res, err := e.Rollout(context.Background(), testOptions("v2"))
	if err != nil {
		t.Fatal(err)
	}
	c := w.containers[res.New.ID]
	if c == nil || c.Labels[LabelRoutingBase] != old.Labels[LabelRoutingBase] {
		t.Errorf("new container's %s = %q, want the old one's", LabelRoutingBase, c.Labels[LabelRoutingBase])
	}
}
