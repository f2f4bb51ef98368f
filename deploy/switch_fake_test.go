package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// worldSwitcher is the fake router with the Switcher capability over the
// fake world: the app's requests go to the service of its highest running
// route container (lifted above user level), else to web@docker
// (world.routedServiceLocked). It splits webLabels as the docker
// provider's adapter does; a lifted router of another version that runs
// ties with the plan's (LiftedLeftError, with the plan).
type worldSwitcher struct{ *fakeRouter }

func (s worldSwitcher) PlanSwitch(ctx context.Context, tmpl Container, labels map[string]string, ep Endpoint, version string) (SwitchPlan, error) {
	svc := "web-" + version
	route := func(router string) Route {
		return Route{
			Labels: map[string]string{
				"traefik.enable": "true",
				"traefik.http.routers." + router + ".rule":    "PathPrefix(`/`)",
				"traefik.http.routers." + router + ".service": svc,
			},
			Routers: []string{router + "@docker"},
		}
	}
	var remove []string
	for _, m := range []map[string]string{tmpl.Labels, labels} {
		for k := range m {
			if strings.HasPrefix(k, "traefik.http.routers.") || strings.HasPrefix(k, "traefik.http.services.") {
				remove = append(remove, k)
			}
		}
	}
	plan := SwitchPlan{
		RemoveLabels: remove,
		Labels:       map[string]string{"traefik.http.services." + svc + ".loadbalancer.server.port": "8080", LabelRoutingBase: `{"split":"by the fake"}`},
		Services:     []string{svc + "@docker"},
		Lifted:       route("web-" + version),
		User:         route("web"),
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var left []string
	for router := range s.w.routersLocked() {
		if strings.HasPrefix(router, "web-") && router != "web-"+version+"@docker" {
			left = append(left, router)
		}
	}
	if len(left) > 0 {
		slices.Sort(left)
		return plan, &LiftedLeftError{Routers: left, Err: fmt.Errorf("%w: router(s) %s tie with the lifted router", ErrNotAtomic, strings.Join(left, ", "))}
	}
	return plan, nil
}

func (s worldSwitcher) Routes(ctx context.Context, routers, urls []string) (bool, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.traefikErr != nil {
		return false, w.traefikErr
	}
	listed := w.routersLocked()
	if len(urls) == 0 {
		return !slices.ContainsFunc(routers, func(r string) bool { _, ok := listed[r]; return ok }), nil
	}
	svcs := w.servicesLocked()
	for _, r := range routers {
		svc, ok := listed[r]
		if !ok {
			return false, nil
		}
		i := slices.IndexFunc(svcs, func(s Service) bool { return s.Name == svc })
		if i < 0 {
			return false, nil
		}
		for _, u := range urls {
			if srv, ok := svcs[i].Server(u); !ok || !srv.Registered() {
				return false, nil
			}
		}
	}
	return true, nil
}

// routersLocked is the routers the running containers on Traefik's
// network define (route containers, and app containers with routers of
// their own, whose router web routes to their service), and the service
// each routes to. A router defined twice with different services is left
// out, as Traefik's docker provider does ("Router defined multiple times
// with different configurations"). w.mu is held.
func (w *world) routersLocked() map[string]string {
	defs := map[string]map[string]bool{}
	def := func(router, svc string) {
		if defs[router] == nil {
			defs[router] = map[string]bool{}
		}
		defs[router][svc] = true
	}
	for _, c := range w.containers {
		if c.State != "running" || c.network != "proxy" {
			continue
		}
		if c.Labels[LabelRouteOf] == "" {
			if _, ok := c.Labels["traefik.http.routers.web.rule"]; ok {
				def("web@docker", serviceFromLabels(c.Labels))
			}
			continue
		}
		for k, v := range c.Labels {
			rest, ok := strings.CutPrefix(k, "traefik.http.routers.")
			if name, key, _ := strings.Cut(rest, "."); ok && key == "service" {
				def(name+"@docker", v+"@docker")
			}
		}
	}
	out := map[string]string{}
	for router, svcs := range defs {
		if len(svcs) == 1 {
			for svc := range svcs {
				out[router] = svc
			}
		}
	}
	return out
}

// routedServiceLocked is the service the app's requests go to: that of
// the highest running lifted route container of app web whose service
// Traefik lists (Traefik leaves out a router whose service it cannot
// build), else that of the user's router web (routersLocked: a user-level
// route container's, or the app containers' own), if listed, else none;
// w.mu is held.
func (w *world) routedServiceLocked() string {
	listed := map[string]bool{}
	for _, svc := range w.servicesLocked() {
		listed[svc.Name] = true
	}
	for _, id := range sortedKeys(w.containers) {
		c := w.containers[id]
		if c.State != "running" || c.network != "proxy" || c.Labels[LabelRouteOf] != "web" || c.Labels[LabelRouteLevel] != RouteLifted {
			continue
		}
		if svc := "web-" + c.Labels[LabelVersion] + "@docker"; listed[svc] {
			return svc
		}
	}
	if svc, ok := w.routersLocked()["web@docker"]; ok && listed[svc] {
		return svc
	}
	return ""
}

// atomicScenario: v1 (deployctl's, with the probe and the user's routers)
// serves; v2 is rolled out with the atomic switch.
func atomicScenario() *scenario {
	s := rolloutScenario()
	s.router = func(w *world) Router { return worldSwitcher{w.router()} }
	return s
}

// The fault matrix of an atomic rollout: every Docker call of a clean
// run fails in turn (faults_test.go), and the invariants hold: the lock
// released, the app served after every step, on success only the new
// version routed, on failure the old one routed and nothing of the run
// left (no new, route or helper container).
func TestDockerFaultAtEveryCallAtomic(t *testing.T) {
	testFaultAtEveryCall(t, false, atomicScenario)
}

// routedBy makes c a container of an atomically switched version: its
// service under the version's name, no router; and adds the user-level
// route container that routes the app to it.
func routedBy(w *world, c *fakeContainer, version string) {
	splitLabels(w, c, version)
	addRoute(w, "web-route-"+version+"-user", version, RouteUser)
}

// splitLabels rewrites c's labels as an atomic rollout makes them: its service
// under version's name, no router.
func splitLabels(w *world, c *fakeContainer, version string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(c.Labels, "traefik.http.routers.web.rule")
	delete(c.Labels, "traefik.http.services.web.loadbalancer.server.port")
	c.Labels["traefik.http.services.web-"+version+".loadbalancer.server.port"] = "8080"
}

// addRoute adds a running route container of app web for version at
// level: the user's router web, or the lifted web-<version>.
func addRoute(w *world, name, version, level string) *fakeContainer {
	router := "web"
	if level == RouteLifted {
		router = "web-" + version
	}
	c := w.addRunning(name, version, false)
	w.mu.Lock()
	defer w.mu.Unlock()
	c.Labels = map[string]string{
		"traefik.enable": "true",
		"traefik.http.routers." + router + ".rule":    "PathPrefix(`/`)",
		"traefik.http.routers." + router + ".service": "web-" + version,
		LabelRouteOf: "web", LabelRouteLevel: level, LabelVersion: version,
	}
	c.Healthcheck, c.Health = nil, ""
	return c
}

// addKilledMidSwitch adds what a run to v2 killed after its switch leaves:
// its container (split, made for one replica) and its lifted route.
func addKilledMidSwitch(w *world) (killed, lifted *fakeContainer) {
	killed = w.addRunning("web-v2-killed", "v2", true)
	splitLabels(w, killed, "v2")
	w.mu.Lock()
	killed.Labels[LabelReplicas] = "1" // as the killed run made it
	w.mu.Unlock()
	return killed, addRoute(w, "web-route-v2-lifted", "v2", RouteLifted)
}

// atomicRoutedScenario: v1 serves through a route container (an earlier
// atomic rollout); v2 is rolled out atomically, and its settle runs beside
// the stop of v1.
func atomicRoutedScenario() *scenario {
	s := atomicScenario()
	routedBy(s.w, s.serving, "v1")
	s.target = func() string {
		s.w.mu.Lock()
		defer s.w.mu.Unlock()
		for id, c := range s.w.containers {
			if id != s.serving.ID && !(c.Labels[LabelRouteOf] == "web" && c.Labels[LabelVersion] == "v1") {
				return id
			}
		}
		return ""
	}
	return s
}

func TestDockerFaultAtEveryCallAtomicRouted(t *testing.T) {
	testFaultAtEveryCall(t, false, atomicRoutedScenario)
}

// rollbackAtomicScenario: v2 serves through a route container; v1, from
// the same kind of rollout, is retained; a rollback switches back to it
// atomically.
func rollbackAtomicScenario() *scenario {
	s := rollbackScenario()
	s.router = func(w *world) Router { return worldSwitcher{w.router()} }
	v1 := s.w.containers[s.target()]
	routedBy(s.w, v1, "v1")
	routedBy(s.w, s.serving, "v2")
	s.w.mu.Lock()
	route := s.w.containers["id-web-route-v1-user"]
	s.w.mu.Unlock()
	route.State = "exited" // only v2's route runs
	return s
}

func TestDockerFaultAtEveryCallOfAtomicRollback(t *testing.T) {
	testFaultAtEveryCall(t, true, rollbackAtomicScenario)
}

// A run killed while it counted an old container's connections leaves
// its helper running; the next atomic run removes it, and says so.
func TestHelperLeftByAKilledRunIsRemoved(t *testing.T) {
	s := atomicScenario()
	h := s.w.addRunning("web-v0-3f9ace-conns-b4d2e1", "v0", false)
	h.Labels = map[string]string{LabelHelperOf: "web"}
	e, ev := s.engine(newFaultyRuntime(s.w.runtime()))
	if _, err := run(t, false, e); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.w.containers[h.ID]; ok {
		t.Errorf("helper %s left", h.Name)
	}
	if !slices.ContainsFunc(ev.all, func(e Event) bool {
		return e.Container == h.Short() && strings.Contains(e.Message, "left by an interrupted run")
	}) {
		t.Errorf("no event says the helper was removed")
	}
}

// The user's routers given again with --label go to the route containers,
// not onto the new app containers (where they would define the router a
// second time).
func TestAtomicRolloutKeepsGivenRoutersOffTheAppContainers(t *testing.T) {
	s := atomicScenario()
	e, _ := s.engine(newFaultyRuntime(s.w.runtime()))
	o := faultOptions()
	o.Switch, o.Labels = SwitchAtomic, webLabels()
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	c := s.w.containers[res.New.ID]
	for k := range c.Labels {
		if strings.HasPrefix(k, "traefik.http.routers.") || k == "traefik.http.services.web.loadbalancer.server.port" {
			t.Errorf("new container %s carries %s", c.Name, k)
		}
	}
	if got := servedURLs(s.w); !slices.Equal(got, []string{urlOf(s.w, res.New.ID)}) {
		t.Errorf("Traefik routes to %v, want the new container only", got)
	}
}

// Two replicas: every new one is listed before the switch, and both old
// ones' connections are counted (at once) before their signal.
func TestAtomicRolloutOfTwoReplicas(t *testing.T) {
	s := atomicScenario()
	s.w.addRunning("web-v1b", "v1", true)
	e, _ := s.engine(newFaultyRuntime(s.w.runtime()))
	o := faultOptions()
	o.Switch, o.DrainTimeout, o.Replicas = SwitchAtomic, time.Second, 2
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Switch != SwitchAtomic || len(res.NewContainers) != 2 || len(res.Old) != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, old := range res.Old {
		if old.InFlightAtSignal == nil || *old.InFlightAtSignal != 0 {
			t.Errorf("%s: in flight at signal %v, want counted, 0", old.Name, old.InFlightAtSignal)
		}
		if !slices.Contains(s.w.ops, "conns "+old.Name) || slices.Index(s.w.ops, "conns "+old.Name) > slices.Index(s.w.ops, "stop "+old.Name) {
			t.Errorf("%s: not counted before its stop: %q", old.Name, s.w.ops)
		}
	}
	for i, n := range s.w.served {
		if n == 0 {
			t.Errorf("no server routed after op %q", s.w.ops[i])
		}
	}
	if got := servedURLs(s.w); len(got) != 2 {
		t.Errorf("Traefik routes to %v, want the 2 new containers", got)
	}
}

// A run killed between its switch and its stop leaves both versions
// running and its lifted route container serving the newer one. The next
// rollout switches back from it (removing it puts the older version's
// route in force again), then switches to its own version: the app is
// served throughout and only the new version's route is left.
func TestRunKilledBetweenSwitchAndStopIsSwitchedBack(t *testing.T) {
	s := atomicRoutedScenario() // v1 routed by its user-level route
	w := s.w
	w.addImage("web:v3", nil)
	killed, lifted := addKilledMidSwitch(w)
	res, ev := repairToV3(t, s, w.runtime())
	if _, ok := w.containers[lifted.ID]; ok {
		t.Errorf("the killed run's lifted route container is left")
	}
	// Its switch was never settled: its container is no version to roll
	// back to.
	if _, ok := w.containers[killed.ID]; ok {
		t.Errorf("the killed run's container %s is kept", killed.Name)
	}
	var routes []string
	for _, c := range w.containers {
		if c.Labels[LabelRouteOf] == "web" {
			routes = append(routes, c.Name+" "+c.Labels[LabelRouteLevel]+" "+c.Labels[LabelVersion]+" "+c.State)
		}
	}
	if len(routes) != 1 || !strings.HasSuffix(routes[0], "user v3 running") {
		t.Errorf("route containers %q, want v3's, at the user's level", routes)
	}
	if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, res.New.ID)}) {
		t.Errorf("Traefik routes to %v, want the new container only", got)
	}
	for i, n := range w.served {
		if n == 0 {
			t.Errorf("no server routed after op %q", w.ops[i])
		}
	}
	if !slices.ContainsFunc(ev.all, func(e Event) bool {
		return strings.Contains(e.Message, "switching back from route container "+lifted.Short())
	}) {
		t.Errorf("no event says the lifted route was switched back from")
	}
}

// repairToV3 runs the rollout to v3 that follows a killed run, atomic,
// over rt, and expects it to succeed and to switch atomically.
func repairToV3(t *testing.T, s *scenario, rt Runtime) (*Result, *events) {
	t.Helper()
	e, ev := s.engine(newFaultyRuntime(rt))
	o := faultOptions()
	o.Version, o.Switch, o.DrainTimeout = "v3", SwitchAtomic, time.Second
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\nops %q", err, s.w.ops)
	}
	if res.Switch != SwitchAtomic {
		t.Errorf("switch %s, want atomic; warnings %q", res.Switch, ev.warnings())
	}
	return res, ev
}

// As TestRunKilledBetweenSwitchAndStopIsSwitchedBack, but the killed run's
// settle had already removed the route under its lifted one (it runs
// beside the stop): switching back would leave nothing routed, so the
// next rollout settles the lifted route first, then switches.
func TestRunKilledInItsSettleIsSettledNotSwitchedBack(t *testing.T) {
	s := atomicRoutedScenario()
	w := s.w
	w.addImage("web:v3", nil)
	delete(w.containers, "id-web-route-v1-user") // removed by the killed run's settle
	_, lifted := addKilledMidSwitch(w)
	w.served = nil
	res, ev := repairToV3(t, s, w.runtime())
	if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, res.New.ID)}) {
		t.Errorf("Traefik routes to %v, want the new container only", got)
	}
	for i, n := range w.served {
		if n == 0 {
			t.Errorf("no server routed after op %q", w.ops[i])
		}
	}
	if !slices.ContainsFunc(ev.all, func(e Event) bool { return strings.Contains(e.Message, "settling route container "+lifted.Short()) }) {
		t.Errorf("no event says the lifted route was settled")
	}
}

// A run killed in its settle after its stop: only its version runs, with
// its lifted and its user-level route. The next rollout settles it first
// (removing the lifted one, which would tie with its own), then switches.
func TestRunKilledInItsSettleAfterTheStopIsSettled(t *testing.T) {
	s := atomicRoutedScenario() // v1 routed by its user-level route
	w := s.w
	lifted := addRoute(w, "web-route-v1-lifted", "v1", RouteLifted)
	e, ev := s.engine(newFaultyRuntime(w.runtime()))
	o := faultOptions()
	o.Switch, o.DrainTimeout = SwitchAtomic, time.Second
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\nops %q", err, w.ops)
	}
	if res.Switch != SwitchAtomic {
		t.Errorf("switch %s, want atomic; warnings %q", res.Switch, ev.warnings())
	}
	if _, ok := w.containers[lifted.ID]; ok {
		t.Errorf("the killed run's lifted route container is left")
	}
}

// lingeringSwitcher is a router that still lists the lifted router
// web-v0@docker of a route container an interrupted run removed, for
// polls more polls of Routes; its plan ties with it until then.
type lingeringSwitcher struct {
	worldSwitcher
	mu    sync.Mutex
	polls int
}

func (s *lingeringSwitcher) listed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls > 0
}

func (s *lingeringSwitcher) PlanSwitch(ctx context.Context, tmpl Container, labels map[string]string, ep Endpoint, version string) (SwitchPlan, error) {
	if s.listed() {
		return SwitchPlan{}, &LiftedLeftError{Routers: []string{"web-v0@docker"},
			Err: fmt.Errorf("%w: router(s) web-v0@docker (priority 12) ... tie", ErrNotAtomic)}
	}
	return s.worldSwitcher.PlanSwitch(ctx, tmpl, labels, ep, version)
}

func (s *lingeringSwitcher) Routes(ctx context.Context, routers, urls []string) (bool, error) {
	if len(urls) == 0 && slices.Contains(routers, "web-v0@docker") {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.polls > 0 {
			s.polls--
			return false, nil
		}
	}
	return s.worldSwitcher.Routes(ctx, routers, urls)
}

// A run killed in its settle after its stop had already asked Docker to
// remove its lifted route container, and the removal completed after the
// kill: the next run does not see the container, but the router lists its
// router for a moment, at the priority the new lifted router needs. The
// run waits for the router to drop it and switches atomically (found by
// the SIGKILL soak, which fell back to gradual); if the router keeps it,
// the run switches gradually and says why.
func TestRunAfterALiftedRouteWasRemovedWaitsForTheRouterToDropIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		polls int
		want  SwitchMode
	}{
		{"dropped", 3, SwitchAtomic},
		{"kept", 1 << 30, SwitchGradual},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := atomicRoutedScenario()
			sw := &lingeringSwitcher{worldSwitcher: worldSwitcher{s.w.router()}, polls: tc.polls}
			s.router = func(w *world) Router { return sw }
			e, ev := s.engine(newFaultyRuntime(s.w.runtime()))
			o := faultOptions()
			o.Switch, o.DrainTimeout = SwitchAtomic, time.Second
			res, err := e.Rollout(context.Background(), o)
			if err != nil {
				t.Fatalf("%v\nops %q", err, s.w.ops)
			}
			if res.Switch != tc.want {
				t.Errorf("switch %s, want %s; warnings %q", res.Switch, tc.want, ev.warnings())
			}
			gradual := slices.ContainsFunc(ev.warnings(), func(m string) bool { return strings.Contains(m, "web-v0@docker (priority 12)") })
			if gradual != (tc.want == SwitchGradual) {
				t.Errorf("warnings %q: a switch-gradual warning naming web-v0@docker is %v, want %v", ev.warnings(), gradual, tc.want == SwitchGradual)
			}
			ev.mu.Lock()
			waited := slices.ContainsFunc(ev.all, func(e Event) bool {
				return strings.Contains(e.Message, "waiting for Traefik to drop router(s) web-v0@docker, whose route container is gone")
			})
			ev.mu.Unlock()
			if !waited {
				t.Errorf("no event says the run waits for the router to drop web-v0@docker")
			}
		})
	}
}

// A run killed between making its route containers and starting them
// (they are made ahead, while the new containers start: createRoutes)
// leaves them created; the next atomic run removes them.
func TestRouteContainersLeftUnstartedAreRemoved(t *testing.T) {
	s := atomicRoutedScenario()
	var left []*fakeContainer
	for _, level := range []string{RouteLifted, RouteUser} {
		c := addRoute(s.w, "web-route-v0-"+level, "v0", level)
		s.w.mu.Lock()
		c.State = "created"
		s.w.mu.Unlock()
		left = append(left, c)
	}
	ev := runAtomic(t, s)
	for _, c := range left {
		if _, ok := s.w.containers[c.ID]; ok {
			t.Errorf("route container %s left", c.Name)
		}
		if !slices.ContainsFunc(ev.all, func(e Event) bool {
			return e.Container == c.Short() && strings.Contains(e.Message, "left unstarted by an interrupted run")
		}) {
			t.Errorf("no event says %s was removed", c.Name)
		}
	}
}

// The lifted route container, made while the new containers start, is
// started with the one new container when that gets the drain-aware
// healthcheck (makeRoutes: the router takes it in the same reload as the
// new server), else as soon as every new container is healthy
// (startLiftedEarly): before the router is seen to list them. The switch
// is then only confirmed, and the app is served throughout.
func TestLiftedRouteStartsOnceTheNewContainersAreHealthy(t *testing.T) {
	for _, tc := range []struct {
		name string
		// with: started with the new container, before it is healthy
		with bool
		opts func(o *Options, w *world)
	}{
		{"one replica", true, func(*Options, *world) {}},
		{"two replicas", false, func(o *Options, w *world) {
			w.addRunning("web-v1b", "v1", true)
			o.Replicas = 2
		}},
		{"no healthcheck", false, func(o *Options, w *world) {
			w.addImage("web:v2", nil)
			o.Drain = DrainSignal
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := atomicScenario()
			e, ev := s.engine(newFaultyRuntime(s.w.runtime()))
			o := faultOptions()
			o.Switch, o.DrainTimeout = SwitchAtomic, time.Second
			tc.opts(&o, s.w)
			s.w.trackServed = true
			res, err := e.Rollout(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Switch != SwitchAtomic {
				t.Fatalf("switch %s, want atomic", res.Switch)
			}
			ev.mu.Lock()
			defer ev.mu.Unlock()
			with, early, healthy, registered := -1, -1, -1, -1
			for i, e := range ev.all {
				switch {
				case e.Phase == PhaseCreate && strings.Contains(e.Message, "Traefik switches every new request to v2 once it sees the new container healthy"):
					with = i
				case e.Phase == PhaseRegister && e.Status == StatusInfo && strings.Contains(e.Message, "Traefik switches every new request to v2 once it lists the new containers"):
					early = i
				case e.Phase == PhaseHealthy && e.Status == StatusDone:
					healthy = i
				case e.Phase == PhaseRegister && e.Status == StatusDone:
					registered = i
				}
			}
			if tc.with {
				// Made beside the new container's start: its start may come
				// before or after the fake's instant health.
				if with < 0 || early >= 0 || with > registered {
					t.Errorf("the lifted route started with the new container at event %d, once healthy at %d; confirmed in the router at %d: want it started with the new container", with, early, registered)
				}
			} else if with >= 0 || early < 0 || early < healthy || early > registered {
				t.Errorf("the lifted route started with the new containers at event %d, once healthy at %d; healthy at %d, confirmed in the router at %d: want it started between these two", with, early, healthy, registered)
			}
			for i, n := range s.w.served {
				if n == 0 {
					t.Errorf("no server routed after op %q", s.w.ops[i])
				}
			}
		})
	}
}

// reporterFunc is a Reporter.
type reporterFunc func(Event)

func (f reporterFunc) Event(ev Event) { f(ev) }

// Traefik's API stops answering once the lifted route container has
// started (before the register's confirmation: startLiftedEarly). The
// register fails; the restore switches back without the API (the route
// container removed longer ago than Traefik's throttle), and takes the
// new container away: the old version serves, nothing of the run is left,
// and the failure is the API's (found by e2e TestFaultTraefikDownBeforeDrain,
// where the restore gave up and left v2 running).
func TestAPIDownAfterTheEarlySwitchIsSwitchedBackBlind(t *testing.T) {
	s := atomicScenario()
	e, ev := s.engine(newFaultyRuntime(s.w.runtime()))
	e.Reporter = reporterFunc(func(x Event) {
		ev.Event(x)
		if strings.Contains(x.Message, "Traefik switches every new request") {
			s.w.mu.Lock()
			s.w.traefikErr = fmt.Errorf("%w: connection refused", ErrUnreachable)
			s.w.mu.Unlock()
		}
	})
	o := faultOptions()
	// Beyond the blind bound: the throttle (1 ms here) and blindMargin.
	o.Switch, o.DrainTimeout, o.DeregisterTimeout = SwitchAtomic, time.Second, 2*time.Second
	_, err := e.Rollout(context.Background(), o)
	var de *Error
	if !errors.As(err, &de) || de.Kind != KindUnreachable || de.Phase != PhaseRegister {
		t.Fatalf("err %v, want Traefik unreachable in the register phase", err)
	}
	if strings.Contains(de.State, "could not") {
		t.Errorf("the restore did not finish: %s", de.State)
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	for _, c := range s.w.containers {
		if c.ID != s.serving.ID && (c.State == "running" || c.Labels[LabelRouteOf] != "") {
			t.Errorf("left: %s (%s)", c.Name, c.State)
		}
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if !slices.ContainsFunc(ev.all, func(x Event) bool { return strings.Contains(x.Message, "its API did not answer") }) {
		t.Errorf("no event says the switch back went without Traefik's API")
	}
}

// runAtomic runs s's rollout, which must succeed with an atomic switch,
// and returns its events.
func runAtomic(t *testing.T, s *scenario) *events {
	t.Helper()
	e, ev := s.engine(newFaultyRuntime(s.w.runtime()))
	res, err := run(t, false, e)
	if err != nil {
		t.Fatal(err)
	}
	if res.Switch != SwitchAtomic {
		t.Fatalf("switch %s, want atomic", res.Switch)
	}
	return ev
}

// The old containers' connection counts are set up while the new
// containers start (prepareCounters): a helper for an old container
// without the probe is made then. A run that fails before its count
// removes it (dropCounters), and the old version serves on.
func TestCountersSetUpAheadAreDroppedWhenTheRunFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails bool
	}{{"the run succeeds", false}, {"the new container is never healthy", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.addImage("web:v2", nil)
			w.addImage("web:v1", nil)
			old := w.addRunning("web-v1", "v1", false) // docker run: no probe
			w.trackServed = true
			if tc.fails {
				w.healthyAfter = 1 << 30
			}
			s := &scenario{w: w, j: newMemJournal(), serving: old}
			s.router = func(w *world) Router { return worldSwitcher{w.router()} }
			e, _ := s.engine(newFaultyRuntime(w.runtime()))
			o := faultOptions()
			o.Switch, o.DrainTimeout = SwitchAtomic, time.Second
			o.Select = map[string]string{"app": "web"}
			res, err := e.Rollout(context.Background(), o)
			if tc.fails != (err != nil) {
				t.Fatalf("error %v, want failure %v", err, tc.fails)
			}
			if !tc.fails && res.Switch != SwitchAtomic {
				t.Fatalf("switch %s, want atomic", res.Switch)
			}
			made := slices.IndexFunc(w.ops, func(op string) bool { return strings.HasPrefix(op, "create web-v1-conns-") })
			if made < 0 {
				t.Fatalf("no helper was made: %q", w.ops)
			}
			if tc.fails {
				if i := slices.IndexFunc(w.ops, func(op string) bool { return strings.HasPrefix(op, "conns ") }); i >= 0 {
					t.Errorf("counted (%q), but the run failed before its switch", w.ops[i])
				}
			}
			for _, c := range w.containers {
				if c.Labels[LabelHelperOf] != "" {
					t.Errorf("helper %s left (%s)", c.Name, c.State)
				}
			}
			for i, n := range w.served {
				if n == 0 {
					t.Errorf("no server routed after op %q", w.ops[i])
				}
			}
		})
	}
}

// An old container with routers of its own defines the user's routers
// too until it stops: the settle starts beside the stop all the same
// (its route container while the old one drains: Traefik disables the
// router defined twice, the lifted one shadows it), and waits for the
// stop before it confirms the settled routers and removes the lifted
// route.
func TestSettleBesideOldContainersWithRoutersWaitsForTheirStop(t *testing.T) {
	s := atomicScenario() // v1 carries the user's routers
	fr := newFaultyRuntime(s.w.runtime())
	e, _ := s.engine(fr)
	if _, err := run(t, false, e); err != nil {
		t.Fatal(err)
	}
	stop := slices.Index(s.w.ops, "stop web-v1")
	lifted := slices.IndexFunc(s.w.ops, func(op string) bool {
		return strings.HasPrefix(op, "remove web-route-v2-")
	})
	if stop < 0 || lifted < stop {
		t.Errorf("the lifted route was removed at op %d, the old container stopped at %d: want after: %q", lifted, stop, s.w.ops)
	}
	if !slices.ContainsFunc(fr.calls, func(c string) bool { return strings.HasPrefix(c, "settle: Start ") }) {
		t.Errorf("the settle's route container was not started beside the stop: %q", fr.calls)
	}
	for i, n := range s.w.served {
		if n == 0 {
			t.Errorf("no server routed after op %q", s.w.ops[i])
		}
	}
}

// listedThen is a runtime whose first listing of the app's route
// containers is followed by then (a Docker call an interrupted run sent
// completing after the next run listed).
type listedThen struct {
	Runtime
	once sync.Once
	then func()
}

func (l *listedThen) List(ctx context.Context, sel map[string]string) ([]Container, error) {
	cs, err := l.Runtime.List(ctx, sel)
	if sel[LabelRouteOf] != "" {
		l.once.Do(l.then)
	}
	return cs, err
}

// A run killed as its settle began (beside its stop) leaves its lifted
// route over routing it had started to change: its last Docker calls can
// complete after the kill, and Traefik disables a router defined twice.
// The next rollout must not trust what it lists to route once the lifted
// route goes: it switches back to routing it made and saw in the router,
// and the app is served after every step.
func TestRunKilledAsItsSettleBeganIsSwitchedBackToRoutingItMade(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(w *world) // after v1 and the killed run's v2 and lifted route
		routed bool           // v1 is routed by its user-level route container
		then   func(w *world) // after the next run's listing
	}{
		{"its user-level route started: the router is defined twice", func(w *world) {
			addRoute(w, "web-route-v2-user", "v2", RouteUser)
		}, true, nil},
		{"its user-level route started while v1 carries its own routers", func(w *world) {
			addRoute(w, "web-route-v2-user", "v2", RouteUser)
		}, false, nil},
		{"the route under it is removed after the next run listed it", nil, true, func(w *world) {
			w.mu.Lock()
			defer w.mu.Unlock()
			delete(w.containers, "id-web-route-v1-user")
			w.op("removal of web-route-v1-user completes")
		}},
		// Its lifted route started beside its new container, which is
		// not healthy yet: Traefik leaves the lifted router out (no
		// service), so the route under it serves, and nothing may leave
		// a gap in it.
		{"its new container is not healthy yet: the lifted route routes nothing", func(w *world) {
			w.mu.Lock()
			defer w.mu.Unlock()
			c := w.containers["id-web-v2-killed"]
			c.Health, c.never = "starting", true
		}, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := atomicScenario()
			if tc.routed {
				s = atomicRoutedScenario()
			}
			w := s.w
			w.addImage("web:v3", nil)
			_, lifted := addKilledMidSwitch(w)
			if tc.setup != nil {
				tc.setup(w)
			}
			want := urlOf(w, "id-web-v2-killed")
			if w.containers["id-web-v2-killed"].Health != "healthy" {
				want = urlOf(w, s.serving.ID)
			}
			if got := servedURLs(w); !slices.Equal(got, []string{want}) {
				t.Fatalf("before the run Traefik routes to %v, want %s", got, want)
			}
			w.served = nil
			var rt Runtime = w.runtime()
			if tc.then != nil {
				rt = &listedThen{Runtime: rt, then: func() { tc.then(w) }}
			}
			res, ev := repairToV3(t, s, rt)
			for i, n := range w.served {
				if n == 0 {
					t.Errorf("no server routed after op %q\nops %q", w.ops[i], w.ops)
					break
				}
			}
			if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, res.New.ID)}) {
				t.Errorf("Traefik routes to %v, want the new container only", got)
			}
			if _, ok := w.containers[lifted.ID]; ok {
				t.Errorf("the killed run's lifted route container is left")
			}
			if !slices.ContainsFunc(ev.all, func(e Event) bool {
				return strings.Contains(e.Message, "switching back from route container "+lifted.Short()+" (v2) to v1")
			}) {
				t.Errorf("no event says the lifted route was switched back from, to v1")
			}
		})
	}
}

func TestSharedService(t *testing.T) {
	r := &rollout{e: &Engine{Router: &fakeRouter{}}}
	svc := func(name string) Container {
		return Container{Name: name, Labels: map[string]string{"traefik.http.services." + name + ".loadbalancer.server.port": "8080"}, Ports: []int{8080}}
	}
	target := svc("web-v2")
	olds := []*oldContainer{{Container: svc("web-v3")}}
	if got, _ := r.sharedService(target, containersOf(olds)); got != "" {
		t.Errorf("services web-v2 and web-v3: shared %q, want none", got)
	}
	olds = append(olds, &oldContainer{Container: svc("web-v2")})
	if got, i := r.sharedService(target, containersOf(olds)); got != "web-v2@docker" || i != 1 {
		t.Errorf("service web-v2 on both: shared %q (%d), want web-v2@docker, 1", got, i)
	}
}

// A first deploy under --switch atomic splits the routing from the
// start (planFirst): its container carries its version's service and no
// router, a user-level route container the user's router, confirmed
// before the run ends. The next rollout then switches atomically from
// that steady state, and a rollback to the first version restarts its
// retained container (it carries no router to conflict with the route
// container's). A route container left with nothing to route to is
// removed first. Without a known network the container carries its
// routers itself, as before, and an event says why.
func TestFirstDeploySplitsTheRouting(t *testing.T) {
	t.Run("split, then atomic, then a rollback that restarts v1", func(t *testing.T) {
		w := newWorld()
		w.addImage("web:v1", nil)
		w.addImage("web:v2", nil)
		w.trackServed = true
		// Left by a deployment whose app containers were removed by hand.
		stale := w.addRunning("web-route-v0", "v0", true)
		stale.Labels = map[string]string{LabelRouteOf: "web", LabelRouteLevel: RouteUser, LabelVersion: "v0",
			"traefik.http.routers.web.rule": "PathPrefix(`/`)", "traefik.http.routers.web.service": "web-v0"}
		e, ev := engine(w)
		e.Router = worldSwitcher{w.router()}
		o := testOptions("v1")
		o.Switch, o.Network, o.Labels = SwitchAtomic, "proxy", webLabels()

		p, err := e.Plan(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.RouteRouters, []string{"web@docker"}) || !slices.Equal(p.Services, []string{"web-v1@docker"}) {
			t.Errorf("plan: route routers %v, services %v; want web@docker, web-v1@docker", p.RouteRouters, p.Services)
		}
		if stale.State != "running" {
			t.Fatalf("the dry run removed %s", stale.Name)
		}

		res, err := e.Rollout(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Service, []string{"web-v1@docker"}) {
			t.Errorf("result service %v, want web-v1@docker", res.Service)
		}
		v1 := w.containers[res.New.ID]
		if hasOwnRouters(v1.Container) {
			t.Errorf("first container %s carries routers: %v", v1.Name, v1.Labels)
		}
		if _, ok := w.containers[stale.ID]; ok {
			t.Errorf("stale route container %s left", stale.Name)
		}
		routes := routeContainersOf(w)
		if len(routes) != 1 || routes[0].Labels[LabelRouteLevel] != RouteUser || routes[0].State != "running" {
			t.Fatalf("route containers %v, want one user-level, running", routes)
		}
		if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, res.New.ID)}) {
			t.Errorf("Traefik routes to %v, want the first container", got)
		}
		if !slices.ContainsFunc(ev.all, func(e Event) bool {
			return strings.Contains(e.Message, "router web@docker routes to v1: route container")
		}) {
			t.Errorf("no event confirms the routing")
		}

		o.Version = "v2"
		if res, err = e.Rollout(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		if res.Switch != SwitchAtomic || slices.ContainsFunc(ev.warnings(), func(m string) bool { return strings.Contains(m, "gradual") }) {
			t.Errorf("second rollout: switch %q, warnings %q; want atomic, none", res.Switch, ev.warnings())
		}
		if v1.State != "exited" {
			t.Fatalf("v1 %s", v1.State)
		}

		w.ops, w.served = nil, nil
		rp, rres, err := e.Rollback(context.Background(), rollbackOptions())
		if err != nil {
			t.Fatal(err)
		}
		if rp.Reuse != v1.ID || rres.New.ID != v1.ID || rres.Switch != SwitchAtomic {
			t.Errorf("rollback plan %+v result %+v: want v1's container %s restarted, atomically", rp, rres, v1.Name)
		}
		if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, v1.ID)}) {
			t.Errorf("Traefik routes to %v, want v1 only", got)
		}
		for i, n := range w.served {
			if n == 0 {
				t.Errorf("no server routed after op %q", w.ops[i])
			}
		}
	})
	t.Run("no network known: the container carries its routers", func(t *testing.T) {
		w := newWorld()
		w.addImage("web:v1", nil)
		e, ev := engine(w)
		e.Router = worldSwitcher{w.router()}
		o := testOptions("v1")
		o.Switch, o.Labels = SwitchAtomic, webLabels()
		res, err := e.Rollout(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if c := w.containers[res.New.ID]; !hasOwnRouters(c.Container) {
			t.Errorf("container %s has no router: %v", c.Name, c.Labels)
		}
		if routes := routeContainersOf(w); len(routes) != 0 {
			t.Errorf("route containers %v, want none", routes)
		}
		if !slices.ContainsFunc(ev.all, func(e Event) bool {
			return strings.Contains(e.Message, "carry their Traefik routers themselves, not a route container: no --network")
		}) {
			t.Errorf("no event says why the routing is not split")
		}
	})
}

// routeContainersOf are the world's route containers of app web.
func routeContainersOf(w *world) []*fakeContainer {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*fakeContainer
	for _, id := range sortedKeys(w.containers) {
		if c := w.containers[id]; c.Labels[LabelRouteOf] == "web" {
			out = append(out, c)
		}
	}
	return out
}

// The fault matrix of a first deploy that splits the routing: every
// Docker call of a clean run fails in turn. On success the new container
// is routed through the one route container; on failure nothing of the
// run is left (no app or route container: there was nothing before), the
// error has a phase and a state, and the lock is released.
func TestDockerFaultAtEveryCallOfFirstSplitDeploy(t *testing.T) {
	mk := func() (*world, *Engine, *events, *faultyRuntime, *memJournal) {
		w := newWorld()
		w.addImage("web:v1", nil)
		e, ev := engine(w)
		fr := newFaultyRuntime(w.runtime())
		j := newMemJournal()
		e.Runtime, e.Journal, e.Router = fr, j, worldSwitcher{w.router()}
		return w, e, ev, fr, j
	}
	opts := func() Options {
		o := faultOptions()
		o.Version, o.Switch, o.Network, o.Labels = "v1", SwitchAtomic, "proxy", webLabels()
		return o
	}
	_, e, _, clean, _ := mk()
	if _, err := e.Rollout(context.Background(), opts()); err != nil {
		t.Fatalf("clean run: %v", err)
	}
	for _, seq := range countedSeqs {
		for n, call := range clean.seqs[seq] {
			method := strings.Fields(strings.TrimPrefix(call, seqPrefix(seq)))[0]
			for _, f := range dockerFaults {
				if !canFail(f.err, method) {
					continue
				}
				t.Run(fmt.Sprintf("%s/%scall %d %s", f.name, seqPrefix(seq), n+1, method), func(t *testing.T) {
					t.Parallel()
					w, e, _, fr, j := mk()
					fr.seq, fr.failAt, fr.err, fr.sticky = seq, n+1, f.err, f.sticky
					res, err := e.Rollout(context.Background(), opts())
					fr.fired(t)
					trace := fmt.Sprintf("\n  failed calls: %q\n  ops: %q", fr.failed, w.ops)
					if h, _ := j.LockHolder(context.Background(), "web"); h != nil {
						t.Errorf("the deploy lock is still held by %s%s", h, trace)
					}
					if err == nil {
						if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, res.New.ID)}) {
							t.Errorf("succeeded, but Traefik routes to %v%s", got, trace)
						}
						if routes := routeContainersOf(w); len(routes) != 1 {
							t.Errorf("succeeded with route containers %v%s", routes, trace)
						}
						return
					}
					var de *Error
					if !errors.As(err, &de) || de.Phase == "" || de.State == "" {
						t.Fatalf("error %T without a phase or state: %v%s", err, err, trace)
					}
					if de.Kind == KindNeedsHuman {
						// Docker failing from then on: what is left is named.
						if !f.sticky || de.Hint == "" || !strings.Contains(de.State, "web-") {
							t.Errorf("needs a human after a fault that is not sticky, or without naming what is left: %v%s", err, trace)
						}
						return
					}
					w.mu.Lock()
					defer w.mu.Unlock()
					for _, c := range w.containers {
						if c.Labels[LabelApp] == "web" || c.Labels[LabelRouteOf] == "web" {
							t.Errorf("failed (%v), and left container %s (%s)%s", err, c.Name, c.State, trace)
						}
					}
				})
			}
		}
	}
}

// A redeploy of the serving version (--force) from a version a route
// container routes: the new containers would be in the old ones'
// versioned service, which no router can split, so it switches gradually
// (both sides run one version: nothing mixes) and says why.
func TestRedeployOfTheServingVersionSwitchesGradually(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	old := w.addRunning("web-v1", "v1", true)
	routedBy(w, old, "v1")
	w.trackServed = true
	e, ev := engine(w)
	e.Router = worldSwitcher{w.router()}
	o := faultOptions()
	o.Version, o.Switch, o.Force = "v1", SwitchAtomic, true
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Switch == SwitchAtomic || !slices.ContainsFunc(ev.warnings(), func(m string) bool { return strings.Contains(m, "a redeploy of v1") }) {
		t.Errorf("switch %q, warnings %q: want gradual, and why", res.Switch, ev.warnings())
	}
	if got := servedURLs(w); !slices.Equal(got, []string{urlOf(w, res.New.ID)}) || old.State != "exited" {
		t.Errorf("Traefik routes to %v, old %s: want the new container only", got, old.State)
	}
	for i, n := range w.served {
		if n == 0 {
			t.Errorf("no server routed after op %q", w.ops[i])
		}
	}
}

// A rollback's default --max-surge is 100% only when it will switch back
// atomically: not when the retained containers share a service with the
// current ones (a --switch gradual rollout from a routed version), nor
// when no route container routes the app.
func TestRollbackSwitchesAtomically(t *testing.T) {
	w := newWorld()
	v1 := w.addRunning("web-v1", "v1", true)
	v1.State = "exited"
	splitLabels(w, v1, "v1")
	v2 := w.addRunning("web-v2", "v2", true)
	splitLabels(w, v2, "v2")
	route := addRoute(w, "web-route-v2-user", "v2", RouteUser)
	e, _ := engine(w)
	r := &rollout{e: e, o: Options{Reuse: v1.ID}}
	routes, current := []Container{route.Container}, []Container{v2.Container}
	if ok, err := r.rollbackSwitchesAtomically(context.Background(), routes, current); !ok || err != nil {
		t.Errorf("own services, routed: %v %v, want atomic", ok, err)
	}
	if ok, _ := r.rollbackSwitchesAtomically(context.Background(), nil, current); ok {
		t.Errorf("no route container: atomic")
	}
	splitLabels(w, v2, "v1") // v2's containers in v1's service
	w.mu.Lock()
	delete(v2.Labels, "traefik.http.services.web-v2.loadbalancer.server.port")
	w.mu.Unlock()
	current = []Container{v2.Container}
	if ok, _ := r.rollbackSwitchesAtomically(context.Background(), routes, current); ok {
		t.Errorf("a shared service: atomic")
	}
}

// check plans a redeploy of the serving version in place of the next
// rollout: on an app a route container routes, it must not report the
// gradual switch that only a real redeploy takes (the next rollout, of
// another version, switches atomically).
func TestCheckOfARoutedAppReportsNoGradualSwitch(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	c := w.addRunning("web-v1", "v1", true)
	c.Labels[LabelImage] = "web"
	routedBy(w, c, "v1")
	e, _ := engine(w)
	e.Router = worldSwitcher{w.router()}
	o := testOptions("")
	o.App, o.Switch = "web", SwitchAtomic
	fs, err := e.Check(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Code == WarnSwitchGradual {
			t.Errorf("finding %+v", f)
		}
	}
}
