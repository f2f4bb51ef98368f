package deploy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The atomic switch (docs/design.md, "Routing cutover"): the new
// containers carry their version's service and no router; once all of
// them are healthy and listed, a route container whose routers sit one
// above the user's starts, and from the instant the router shows them
// every new request goes to the new version. After the old version is
// stopped, a route container at the user's own names and priorities takes
// over (settle). Undoing the switch is removing the lifted route.

// WarnSwitchGradual: --switch atomic (the default) was asked for and the
// rollout switches gradually; the message says why.
const WarnSwitchGradual = "switch-gradual"

// WarnSwitchAtomicFirst: steps were asked for (Options.StepsNeedProbes)
// and the rollout switches atomically, in one step; the message says why.
const WarnSwitchAtomicFirst = "switch-atomic-first"

// WarnSettleFailed: after an atomic switch the route containers could not
// be brought to their steady state; the new version serves through the
// lifted route, and the next atomic rollout settles it first.
const WarnSettleFailed = "route-settle-failed"

// planSwitch decides whether the rollout switches atomically, after
// decide, from the app's route containers: it returns the split of the app's routing, or nil and the
// warning that says why it switches gradually (nil when nothing was asked
// or there is nothing to switch from).
func (r *rollout) planSwitch(ctx context.Context, d *decision, routes []Container) (*SwitchPlan, *Warning, error) {
	o := r.o
	if r.scale || (o.Switch != SwitchAtomic && o.Reuse == "") {
		return nil, nil, nil
	}
	if len(d.olds) == 0 {
		if o.Reuse != "" {
			return nil, nil, nil
		}
		return r.planFirst(ctx, d, routes)
	}
	var err error
	// A lifted route left by a killed run may be settled below, before
	// the rollout's own fields are set from d: its route container goes
	// on the app's network too.
	r.network = d.network
	routed := slices.ContainsFunc(routes, Container.Running)
	if o.Reuse != "" {
		// A rollback switches the way the app is routed now: atomically
		// when a route container routes it, else gradually.
		target, err := r.e.Runtime.Inspect(ctx, o.Reuse)
		if err != nil {
			return nil, nil, classifyDocker(err)
		}
		switch {
		case hasOwnRouters(target) && routed:
			return nil, nil, &Error{Phase: PhasePlan, Kind: KindFailed, State: "nothing was changed",
				Err:  fmt.Errorf("%s's retained container %s carries its own Traefik routers, which would conflict with those of route container(s) %s that route the app now", o.Version, target.Short(), names(runningOf(routes))),
				Hint: fmt.Sprintf("roll %s out as a new version instead, from its image: deployctl rollout --app %s --image %s --version %s --switch atomic", o.Version, o.App, o.Image, o.Version)}
		case !routed:
			return nil, nil, nil
		}
		if shared, i := r.sharedService(target, containersOf(d.olds)); shared != "" {
			old := d.olds[i]
			// A gradual rollout from a version a route container routes
			// put its containers into that version's service (the
			// template's labels, and the route container's router names
			// it): the router serves both from one service, so no router
			// of its can switch between them, and a gradual switch back
			// (the probe's drain) can.
			w := warningf(WarnSwitchGradual, "switching back gradually (both versions answer for a moment), not atomically: %s's retained container %s and the current container %s share Traefik service %s (a --switch gradual rollout from %s put them there), and no router can tell them apart", o.Version, target.Short(), old.Short(), shared, o.Version)
			return nil, &w, nil
		}
	}
	gradual := func(format string, args ...any) (*SwitchPlan, *Warning, error) {
		if o.Reuse != "" {
			return nil, nil, &Error{Phase: PhasePlan, Kind: KindFailed, State: "nothing was changed",
				Err:  fmt.Errorf("the app is routed by route container(s) %s, so a rollback must switch atomically, and it cannot: %s", names(runningOf(routes)), fmt.Sprintf(format, args...)),
				Hint: "fix what the message names; or roll the version out again with deployctl rollout --switch atomic"}
		}
		w := warningf(WarnSwitchGradual, "switching gradually (both versions answer for a moment), not atomically: "+format+" (--switch gradual chooses this switch without the warning)", args...)
		return nil, &w, nil
	}
	sw := r.e.switcher()
	switch {
	case sw == nil:
		return gradual("%s cannot switch atomically", r.e.routerName())
	case len(d.steps) != 1 || d.steps[0].Start < d.budget.Replicas:
		return gradual("an atomic switch starts every new replica before any old one leaves, which needs --max-surge of at least --replicas (%d); the plan is %s", d.budget.Replicas, stepsString(d.steps))
	case d.network == "":
		return gradual("the network %s reaches the app on is not known, and the route container must be on it", r.e.routerName())
	}
	if reason, err := r.chooseRouteProbe(ctx, d); err != nil || reason != "" {
		if err != nil {
			return nil, nil, err
		}
		return gradual("%s", reason)
	}
	for _, c := range routes {
		if c.Labels[LabelRouteLevel] != RouteLifted || !c.Running() {
			continue
		}
		repaired, err := r.repairLifted(ctx, sw, d, c, true)
		if err != nil {
			return nil, nil, err
		}
		u, routed := routingUnder(routes, d, c)
		switch {
		case repaired || r.dryRun:
		case routed:
			if err := r.unlift(ctx, sw, d, c, u); err != nil {
				return nil, nil, err
			}
		default:
			// Nothing would route under it (the killed run's settle had
			// removed the route before it): settle it, the other
			// versions running beside, unrouted, until the rollout
			// stops them.
			if repaired, err = r.repairLifted(ctx, sw, d, c, false); err != nil {
				return nil, nil, err
			}
			if !repaired {
				return gradual("route container %s (version %s) was left lifted by an interrupted rollout, and neither switching back from it nor settling it is possible: no routing under it, and no running container of its version in %s", c.Short(), c.Labels[LabelVersion], r.e.routerName())
			}
		}
	}
	tmpl := *d.template
	// The new containers' endpoint, as they will be made (the rollout's
	// --label and image count). Without it, a rollout that puts the probe
	// in them fails the same way when switching gradually (a usage error:
	// a label that names no port); one without the probe may not need it.
	ep, err := r.newEndpoint(&tmpl, o.Labels)
	if err != nil && d.probe {
		return nil, nil, err
	}
	if err != nil {
		return gradual("%v", err)
	}
	plan, err := sw.PlanSwitch(ctx, tmpl, o.Labels, ep, o.Version)
	if left := (*LiftedLeftError)(nil); errors.As(err, &left) && !r.dryRun {
		// Every running lifted route was settled or removed above: these
		// are routers of one that is gone, that the router has yet to
		// drop: a settle does not wait for that (settleTo), and a killed
		// one's removal can complete after the kill.
		r.info(PhasePlan, Event{Message: fmt.Sprintf("waiting for %s to drop router(s) %s, whose route container is gone (removed at the end of the rollout before, or by an interrupted one)", r.e.routerName(), strings.Join(left.Routers, ", "))})
		if werr := r.waitRoutes(ctx, left.Routers, nil, o.DeregisterTimeout); werr == nil {
			plan, err = sw.PlanSwitch(ctx, tmpl, o.Labels, ep, o.Version)
		} else if ctx.Err() != nil {
			return nil, nil, werr
		}
	}
	if errors.Is(err, ErrNotAtomic) {
		return gradual("%v", err)
	}
	if err != nil {
		return nil, nil, &Error{Phase: PhasePlan, Kind: KindFailed, Err: fmt.Errorf("splitting the app's Traefik labels for an atomic switch: %w", err),
			State: "nothing was changed", Hint: "fix the labels, or use --switch gradual"}
	}
	if shared, i := r.sharedWith(plan.Services, containersOf(d.olds)); shared != "" && o.Reuse == "" && !o.forNext {
		// A redeploy of the serving version (--force): its service is
		// already that version's, and a router to it would route to the
		// old containers too. Both sides run one version, so the
		// gradual switch (the probe's drain) mixes nothing.
		return gradual("the new containers would be in Traefik service %s, which the current container %s is in already (a redeploy of %s), and no router can tell them apart", shared, d.olds[i].Short(), o.Version)
	}
	return &plan, nil, nil
}

// chooseRouteProbe sets the probe the route containers run, whether or
// not the new app containers get it (a read-only one does not); reason
// says why there is none.
func (r *rollout) chooseRouteProbe(ctx context.Context, d *decision) (reason string, err error) {
	r.routeBin = d.probeBin
	if r.routeBin != nil || r.dryRun {
		return "", nil
	}
	img := r.image
	if img.OS == "" { // a rollback's: the image its retained containers ran
		if img, err = r.e.Runtime.Image(ctx, r.routeImage()); err != nil {
			return "", classifyDocker(err)
		}
	}
	bin, err := selectProbe(r.o.Probes, "the route container", img)
	if err != nil {
		return fmt.Sprintf("the route container runs deployctl's probe, and %v", err), nil
	}
	r.routeBin = bin
	return "", nil
}

// planFirst is planSwitch for a first deploy (no current container): the
// routing is split from the start, as an atomic rollout leaves it. The
// new containers get their version's service and no router; a route
// container carries the user's routers at their own names and
// priorities (the user-level one), started with them (routeFirst
// confirms it). The next rollout then switches atomically from that
// steady state, and a rollback to this version restarts its retained
// containers (they carry no router of their own). Where an atomic switch
// would not be possible later either (the same conditions), the new
// containers carry their routers themselves, as a gradual rollout's do,
// and an event says why. Route containers of the app left with nothing
// to route (its containers removed by hand) are removed: their routers
// would be defined twice, differently, and Traefik would disable them.
func (r *rollout) planFirst(ctx context.Context, d *decision, routes []Container) (*SwitchPlan, *Warning, error) {
	o := r.o
	own := func(format string, args ...any) (*SwitchPlan, *Warning, error) {
		r.info(PhasePlan, Event{Message: "the new containers carry their Traefik routers themselves, not a route container: " + fmt.Sprintf(format, args...)})
		return nil, nil, nil
	}
	sw := r.e.switcher()
	switch {
	case sw == nil:
		return own("%s cannot switch atomically", r.e.routerName())
	case len(d.steps) != 1:
		return own("the plan is %s, not one step", stepsString(d.steps))
	case d.network == "":
		return own("no --network: the route container that would carry the routers must be on the network %s reaches the app on", r.e.routerName())
	}
	r.network = d.network
	if reason, err := r.chooseRouteProbe(ctx, d); err != nil || reason != "" {
		if err != nil {
			return nil, nil, err
		}
		return own("%s", reason)
	}
	tmpl := Container{Name: o.App, Labels: map[string]string{LabelApp: o.App}}
	if o.declared() {
		maps.Copy(tmpl.Labels, o.Target.Config.Labels)
	}
	ep, err := r.newEndpoint(&tmpl, o.Labels)
	if err != nil && d.probe {
		return nil, nil, err
	}
	if err != nil {
		return own("%v", err)
	}
	plan, err := sw.PlanSwitch(ctx, tmpl, o.Labels, ep, o.Version)
	if left := (*LiftedLeftError)(nil); errors.As(err, &left) {
		err = nil // a first deploy lifts nothing: its user-level routes tie with nothing
	}
	if errors.Is(err, ErrNotAtomic) {
		return own("%v", err)
	}
	if err != nil {
		return nil, nil, &Error{Phase: PhasePlan, Kind: KindFailed, Err: fmt.Errorf("splitting the app's Traefik labels: %w", err),
			State: "nothing was changed", Hint: "fix the labels, or use --switch gradual"}
	}
	if !r.dryRun {
		for _, c := range routes {
			if err := r.e.Runtime.Remove(ctx, c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
				return nil, nil, classifyDocker(fmt.Errorf("removing route container %s, left with no container of %s to route to: %w", c.Short(), o.App, err))
			}
			r.info(PhasePlan, Event{Container: c.Short(), Message: fmt.Sprintf("removed route container %s (version %s), left with no container of %s to route to", c.Short(), c.Labels[LabelVersion], o.App)})
		}
	}
	return &plan, nil, nil
}

// rollbackSwitchesAtomically tells, before decide, whether a rollback
// will switch back atomically (planSwitch): a route container routes the
// app, and the retained target is in no Traefik service of a current
// container. It decides the rollback's default --max-surge; planSwitch
// decides the switch.
func (r *rollout) rollbackSwitchesAtomically(ctx context.Context, routes, current []Container) (bool, error) {
	if !slices.ContainsFunc(routes, Container.Running) {
		return false, nil
	}
	target, err := r.e.Runtime.Inspect(ctx, r.o.Reuse)
	if err != nil {
		return false, classifyDocker(err)
	}
	shared, _ := r.sharedService(target, current)
	return shared == "", nil
}

// sharedService is a Traefik service that target's labels and those of
// one of cs (returned, with its index) both define, "" when none.
func (r *rollout) sharedService(target Container, cs []Container) (string, int) {
	ep, err := r.e.Router.Endpoint(target)
	if err != nil {
		return "", -1
	}
	return r.sharedWith(ep.Services, cs)
}

// sharedWith is one of services that the labels of one of cs (returned,
// with its index) define, "" when none.
func (r *rollout) sharedWith(services []string, cs []Container) (string, int) {
	for i, c := range cs {
		oep, err := r.e.Router.Endpoint(c)
		if err != nil {
			continue
		}
		for _, svc := range services {
			if slices.Contains(oep.Services, svc) {
				return svc, i
			}
		}
	}
	return "", -1
}

// hasOwnRouters reports whether c's labels define Traefik routers (a
// container made before the app's first atomic rollout): while it runs,
// they conflict with a route container's routers of the same names.
func hasOwnRouters(c Container) bool {
	for k := range c.Labels {
		if strings.HasPrefix(k, "traefik.http.routers.") {
			return true
		}
	}
	return false
}

// removeUnstarted removes the route containers of routes that were
// created and never started (made ahead by a run that was killed before
// it started them: they route nothing) and returns the others.
func (r *rollout) removeUnstarted(ctx context.Context, routes []Container) ([]Container, error) {
	var out []Container
	for _, c := range routes {
		if c.State != "created" {
			out = append(out, c)
			continue
		}
		if err := r.e.Runtime.Remove(ctx, c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
			return nil, classifyDocker(fmt.Errorf("removing route container %s, left unstarted by an interrupted run: %w", c.Short(), err))
		}
		r.info(PhasePlan, Event{Container: c.Short(), Message: fmt.Sprintf("removed route container %s, left unstarted by an interrupted run", c.Short())})
	}
	return out, nil
}

// runningOf are the running ones of cs.
func runningOf(cs []Container) []Container {
	return slices.DeleteFunc(slices.Clone(cs), func(c Container) bool { return !c.Running() })
}

// routeContainers lists the app's route containers, running or not.
func (r *rollout) routeContainers(ctx context.Context) ([]Container, error) {
	cs, err := r.e.Runtime.List(ctx, map[string]string{LabelRouteOf: r.o.App})
	if err != nil {
		return nil, classifyDocker(fmt.Errorf("listing the route containers of %s: %w", r.o.App, err))
	}
	return cs, nil
}

// startRoute creates and starts a route container for the new version at
// level (createRoute).
func (r *rollout) startRoute(ctx context.Context, route Route, level, version string, created func(Container)) (Container, error) {
	c, err := r.createRoute(ctx, route, level, version, created)
	if err != nil {
		return c, err
	}
	return c, r.startRouteContainer(ctx, c)
}

func (r *rollout) startRouteContainer(ctx context.Context, c Container) error {
	if err := r.e.Runtime.Start(ctx, c.ID); err != nil {
		return classifyDocker(fmt.Errorf("starting route container %s: %w", c.Short(), err))
	}
	return nil
}

// createRoute creates a route container for the new version at level,
// not started: the new image with the probe's hold mode as its only
// process, no healthcheck (Traefik takes it at once), on the network
// Traefik reaches the app on, restarted with the Docker engine. Until it
// starts, the router does not see it.
func (r *rollout) createRoute(ctx context.Context, route Route, level, version string, created func(Container)) (Container, error) {
	labels := maps.Clone(route.Labels)
	if t := r.o.Target; t != nil {
		maps.Copy(labels, t.OneOffLabels)
	}
	labels[LabelRouteOf] = r.o.App
	labels[LabelRouteLevel] = level
	labels[LabelVersion] = version
	spec := CreateSpec{
		Name:        containerName(r.o.App+"-route", version, randomSuffix()),
		Image:       r.routeImage(),
		Labels:      labels,
		Networks:    []string{r.network},
		Entrypoint:  []string{ProbePath, "hold"},
		Healthcheck: &Healthcheck{Test: []string{"NONE"}},
		Restart:     "unless-stopped",
	}
	c, _, err := r.e.Runtime.Create(ctx, spec)
	if err != nil {
		return Container{}, classifyDocker(fmt.Errorf("creating route container %s: %w", spec.Name, err))
	}
	created(c)
	files := []File{{Path: ProbeDir + "/", Mode: 0o755}, {Path: ProbePath, Mode: 0o755, Data: r.routeBin}}
	if err := r.e.Runtime.CopyFiles(ctx, c.ID, files); err != nil {
		return c, classifyDocker(fmt.Errorf("copying the probe into route container %s: %w", c.Short(), err))
	}
	return c, nil
}

// startLiftedEarly starts the lifted route container made ahead as soon
// as every new container is healthy, before the router is seen to list
// them: the router takes it in the same reload as their servers, or the
// next (Traefik often sees their health first), rather than one after
// the register's confirmation. Safe because the router only serves a
// container it sees healthy, and builds each reload from all containers:
// the lifted router never routes to fewer than the healthy new
// containers; while their service is not built (a label the router
// refuses, traefik.enable=false), the router skips the lifted router and
// the old routing serves (Traefik: a router whose handler cannot be built
// is left out). If they are never listed, the restore switches back.
func (s *stepRun) startLiftedEarly(ctx context.Context) error {
	if err := s.routesReady(); err != nil {
		return err
	}
	rt := s.liftedRoute
	if rt == nil || rt.state != TargetCreated || s.liftedStarted {
		return nil
	}
	if err := s.startLifted(ctx); err != nil {
		return err
	}
	s.r.info(PhaseRegister, Event{Container: rt.short(), Message: s.say(fmt.Sprintf("route container %s started: Traefik switches every new request to %s once it lists the new containers", rt.short(), s.r.o.Version))})
	return nil
}

// startLifted starts the lifted route container made ahead. From the
// start on it is undone as the switch: removed, and the router seen to
// drop it, before any new container leaves (a start that failed may
// still have started it).
func (s *stepRun) startLifted(ctx context.Context) error {
	s.record(undoRoute, s.liftedRoute)
	s.liftedStarted = true
	return s.r.startRouteContainer(ctx, s.liftedRoute.c)
}

// makeRoutes creates both route containers of the switch in the
// background, not started, while the new containers start and turn
// healthy: the lifted one (switchOver starts it, or startLiftedEarly
// before) and the user level one (the settle starts it). routesReady
// waits for it. Then it sets up the connection counts of the old
// containers the switch takes out (prepareCounters).
//
// withNew: the switch has one new container, and it gets deployctl's
// drain-aware healthcheck: the lifted route container then starts as
// soon as it is made, before the new container is healthy, so that the
// router takes the lifted router in the same reload as the new server,
// when it sees it healthy, rather than a reload (Traefik's throttle, 2 s
// by default) after. Safe for the same reasons as startLiftedEarly: the
// router leaves out a container Docker has not reported healthy, and so
// the lifted router, whose service has no other server, until it is.
// With more than one new container the lifted router would route every
// new request to the first one seen healthy; without a healthcheck, to a
// container as soon as it runs: startLiftedEarly starts it then, once
// every new container is healthy.
//
// A first deploy (no old container) makes the user level one only, and
// starts it at once: Traefik leaves its routers out until it sees a new
// container healthy, and takes them in the same reload (routeFirst).
func (s *stepRun) makeRoutes(ctx context.Context, withNew bool) {
	s.userRoute = &target{state: TargetPlanned}
	if len(s.olds) > 0 {
		s.liftedRoute = &target{state: TargetPlanned}
	}
	made := make(chan error, 1)
	s.routesMade = made
	go func() { made <- s.createRoutes(beside(ctx, "routes"), withNew) }()
}

// createRoutes is makeRoutes' work: the lifted route container (started
// at once when withNew), the user level one, then the connection counts.
func (s *stepRun) createRoutes(ctx context.Context, withNew bool) error {
	r := s.r
	create := func(rt *target, route Route, level string) error {
		_, err := r.createRoute(ctx, route, level, r.o.Version, func(c Container) {
			rt.c, rt.state = c, TargetCreated
			s.record(undoRouteCreated, rt)
		})
		return err
	}
	if s.liftedRoute == nil {
		if err := create(s.userRoute, r.sw.User, RouteUser); err != nil {
			return err
		}
		if err := r.startRouteContainer(ctx, s.userRoute.c); err != nil {
			return err
		}
		r.info(PhaseCreate, Event{Container: s.userRoute.short(), Message: s.say(fmt.Sprintf("route container %s started: router %s routes to %s once Traefik sees the new container(s) healthy", s.userRoute.short(), strings.Join(r.sw.User.Routers, ", "), r.o.Version))})
		return nil
	}
	if err := create(s.liftedRoute, r.sw.Lifted, RouteLifted); err != nil {
		return err
	}
	if withNew {
		if err := s.startLifted(ctx); err != nil {
			return err
		}
		r.info(PhaseCreate, Event{Container: s.liftedRoute.short(), Message: s.say(fmt.Sprintf("route container %s started: Traefik switches every new request to %s once it sees the new container healthy", s.liftedRoute.short(), r.o.Version))})
	}
	if err := create(s.userRoute, r.sw.User, RouteUser); err != nil {
		return err
	}
	// After the route containers, which the switch needs: on a host short
	// of disk space the counts (a copy of the probe, or a helper
	// container), which it can do without, must not take their room.
	s.prepareCounters(ctx, s.switching)
	return nil
}

// routesReady waits until makeRoutes is over and returns its error.
func (s *stepRun) routesReady() error {
	if s.routesMade != nil {
		s.routesErr = <-s.routesMade
		s.routesMade = nil
	}
	return s.routesErr
}

// routeImage is the image of the route containers: the new version's.
func (r *rollout) routeImage() string { return cmp.Or(r.createImage, r.o.ImageRef()) }

// waitRoutes polls the router until routers route to urls (none: until
// they are gone), within timeout.
func (r *rollout) waitRoutes(ctx context.Context, routers, urls []string, timeout time.Duration) error {
	sw := r.e.switcher()
	var last error
	err := r.poll(ctx, timeout, func() (bool, error) {
		ok, err := sw.Routes(ctx, routers, urls)
		last = err
		return ok && err == nil, nil
	})
	if isTimeout(err) {
		return r.routesTimeout(routers, urls, timeout, last)
	}
	return err
}

// waitRoutesGone polls the router until routers, of a route container
// removed at removedAt, are gone, within --deregister-timeout. While the
// router's API does not answer, Docker's removal stands in for its answer
// once the router's propagation bound has passed since (deploy/blind.go:
// Traefik applies a container's removal within its throttle); blind is
// then the API's last error.
func (r *rollout) waitRoutesGone(ctx context.Context, routers []string, removedAt time.Time) (blind, err error) {
	sw := r.e.switcher()
	bound, known := r.e.propagation()
	var last error
	err = r.poll(ctx, r.o.DeregisterTimeout, func() (bool, error) {
		ok, err := sw.Routes(ctx, routers, nil)
		last = err
		if err == nil {
			return ok, nil
		}
		return known && r.e.now().Sub(removedAt) >= bound+blindMargin, nil
	})
	switch {
	case err == nil:
		return last, nil
	case isTimeout(err):
		return nil, r.routesTimeout(routers, nil, r.o.DeregisterTimeout, last)
	}
	return nil, err
}

// routesTimeout is the error of a wait for routers that timed out, last
// the router's last error.
func (r *rollout) routesTimeout(routers, urls []string, timeout time.Duration, last error) error {
	what := fmt.Sprintf("route to %s", strings.Join(urls, ", "))
	if len(urls) == 0 {
		what = "be gone"
	}
	if last != nil {
		return &Error{Kind: KindUnreachable, Err: fmt.Errorf("%s's API did not confirm that router(s) %s %s within %s: %w", r.e.routerName(), strings.Join(routers, ", "), what, timeout, last),
			Hint: "--traefik-url and Traefik's health"}
	}
	return &Error{Kind: KindFailed, Err: fmt.Errorf("%s's router(s) %s did not %s within %s", r.e.routerName(), strings.Join(routers, ", "), what, timeout),
		Hint: "Traefik's log (a label it refused?) and /api/http/routers; or use --switch gradual"}
}

// routeFirst confirms a first deploy's routing (planFirst): the user
// level route container's routers route to every new container.
func (s *stepRun) routeFirst(ctx context.Context) error {
	r := s.r
	if err := s.routesReady(); err != nil {
		return withPhase(err, PhaseRegister)
	}
	var urls []string
	for _, t := range s.news {
		urls = append(urls, t.url)
	}
	if err := r.waitRoutes(ctx, r.sw.User.Routers, urls, r.o.RegisterTimeout); err != nil {
		return withPhase(err, PhaseRegister)
	}
	s.userRoute.state = TargetRouted
	r.info(PhaseRegister, Event{Container: s.userRoute.short(), Message: s.say(fmt.Sprintf("router %s routes to %s: route container %s confirmed in %s", strings.Join(r.sw.User.Routers, ", "), r.o.Version, s.userRoute.short(), r.e.routerName()))})
	return nil
}

// switchOver is the atomic switch: the lifted route container starts, and
// once the router shows its routers enabled and routing to every new
// container, no old container gets a new request.
func (s *stepRun) switchOver(ctx context.Context) error {
	r := s.r
	var urls []string
	for _, t := range s.news {
		urls = append(urls, t.url)
	}
	r.begin(PhaseSwitch, s.say(fmt.Sprintf("switching every new request to %s at once (router %s)", r.o.Version, strings.Join(r.sw.Lifted.Routers, ", "))))
	if s.liftedRoute == nil {
		s.makeRoutes(ctx, false)
	}
	if err := s.routesReady(); err != nil {
		return withPhase(err, PhaseSwitch)
	}
	rt := s.liftedRoute
	if !s.liftedStarted {
		if err := s.startLifted(ctx); err != nil {
			return withPhase(err, PhaseSwitch)
		}
	}
	if err := r.waitRoutes(ctx, r.sw.Lifted.Routers, urls, r.o.RegisterTimeout); err != nil {
		return withPhase(err, PhaseSwitch)
	}
	rt.state = TargetRouted
	r.lifted, r.switchedAt = rt, r.e.now()
	for _, t := range s.olds {
		if t.state == TargetRouted {
			t.state, t.old.drained = TargetDrained, true
		}
	}
	r.done(PhaseSwitch, Event{Container: rt.short(), Message: s.say(fmt.Sprintf("every new request goes to %s: router %s confirmed in %s", r.o.Version, strings.Join(r.sw.Lifted.Routers, ", "), r.e.routerName()))})
	return nil
}

// unswitch undoes the switch: the lifted route container is removed, and
// once the router no longer lists its routers the old version's routers
// serve again.
func (s *stepRun) unswitch(ctx context.Context, rt *target) error {
	r := s.r
	if rt.state == TargetPlanned {
		return nil
	}
	if err := r.e.Runtime.Remove(ctx, rt.c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
		return classifyDocker(fmt.Errorf("removing route container %s: %w", rt.short(), err))
	}
	rt.state = TargetGone
	// Also when Traefik's API has stopped answering (a restore after a
	// register that could not be confirmed: the lifted route starts
	// before it, startLiftedEarly).
	blind, err := r.waitRoutesGone(ctx, r.sw.Lifted.Routers, r.e.now())
	if err != nil {
		return err
	}
	for _, t := range s.olds {
		if t.state == TargetDrained && t.old.drain == DrainSwitch {
			t.state, t.old.drained = TargetRouted, false
		}
	}
	if blind != nil {
		s.wentBlind(blind)
		r.info(PhaseRevert, Event{Container: rt.short(), Message: fmt.Sprintf("switched back: route container removed longer ago than %s takes to drop its router %s (its API did not answer: %v)", r.e.routerName(), strings.Join(r.sw.Lifted.Routers, ", "), blind)})
		return nil
	}
	r.info(PhaseRevert, Event{Container: rt.short(), Message: fmt.Sprintf("switched back: route container removed, router %s gone", strings.Join(r.sw.Lifted.Routers, ", "))})
	return nil
}

// settle brings the routing to its steady state once the old version is
// stopped (settleTo). A failure is a warning: the new version serves
// through the lifted route, and the next atomic rollout settles it first.
func (s *stepRun) settle(ctx context.Context, ready <-chan struct{}) {
	r := s.r
	if r.sw == nil || r.lifted == nil {
		return
	}
	var urls []string
	for _, t := range s.news {
		urls = append(urls, t.url)
	}
	var made Container
	if s.userRoute != nil && s.userRoute.state == TargetCreated {
		made = s.userRoute.c
		s.userRoute.state = TargetRouted // the settle's from here: it removes it if it fails
	}
	user, err := r.settleTo(ctx, *r.sw, r.o.Version, urls, r.lifted.c, made, ready)
	if err != nil {
		r.warn(PhaseDone, WarnSettleFailed, "the new version serves through route container %s (router %s, one above your routers' priority), which could not be replaced by one at your routers' own names and priorities: %v", r.lifted.short(), strings.Join(r.sw.Lifted.Routers, ", "), err)
		return
	}
	r.info(PhaseDone, Event{Container: user.Short(), Message: fmt.Sprintf("router %s routes to %s", strings.Join(r.sw.User.Routers, ", "), r.o.Version)})
}

// settleBeside starts the settle at once, beside the old containers' drain
// and stop, when nothing needs the old routing any more: no --watch window
// (whose restore switches back to it). Otherwise the settle runs after the
// stop. Old containers with routers of their own define the user's
// routers too, differently, until they stop (Traefik disables a router
// defined twice; the lifted routers shadow it meanwhile): the settle
// starts its route container at once and waits for their stop
// (oldsStopped) before it waits for the router to take it, so the reload
// that drops them (their die event) also takes the settled routers.
func (s *stepRun) settleBeside(ctx context.Context) {
	r := s.r
	if r.o.Watch > 0 {
		return
	}
	timeout := r.cleanupTimeout() + r.o.RegisterTimeout + r.o.DeregisterTimeout
	var stopped chan struct{}
	if slices.ContainsFunc(s.olds, func(t *target) bool { return hasOwnRouters(t.c) }) {
		stopped = make(chan struct{})
		s.oldsStopped = stopped
		// The stop's own bounds (stopBatch): the connection count and the
		// longest stop timeout.
		longest := time.Duration(0)
		for _, t := range s.olds {
			longest = max(longest, r.stopTimeout(t.c))
		}
		timeout += r.o.DrainTimeout + longest + DefaultStopTimeout
	}
	s.settled = make(chan struct{})
	settleCtx, cancel := context.WithTimeout(beside(context.WithoutCancel(ctx), "settle"), timeout)
	go func() {
		defer close(s.settled)
		defer cancel()
		s.settle(settleCtx, stopped)
	}()
}

// settleTo replaces the lifted route container of version (whose
// containers serve at urls) by one at the user's router names and
// priorities: the app's other route containers go while the new one
// starts (made, when it was created ahead, else one it creates), and once the
// router shows it routing to urls the lifted one goes. Traffic stays on
// version throughout: the lifted route shadows the rest until it goes.
// On failure the route container it started or was given is removed.
// When ready is not nil, the wait for the router begins once it is
// closed (settleBeside).
func (r *rollout) settleTo(ctx context.Context, plan SwitchPlan, version string, urls []string, lifted, made Container, ready <-chan struct{}) (Container, error) {
	user, routed := made, false
	defer func() {
		if !routed && user.ID != "" {
			_ = r.e.Runtime.Remove(ctx, user.ID)
		}
	}()
	routes, err := r.routeContainers(ctx)
	if err != nil {
		return Container{}, err
	}
	// The app's other route containers go while the new one starts (the
	// lifted routers shadow the routers they define twice meanwhile), so
	// that both changes tend to reach the router in one reload: it takes
	// at most one per throttle, and a removal first, then a start, often
	// cost one more.
	removed := make(chan error, 1)
	go func() { removed <- r.removeRoutes(beside(ctx, "unroute"), routes, lifted.ID, made.ID) }()
	if made.ID != "" {
		err = r.startRouteContainer(ctx, made)
	} else {
		_, err = r.startRoute(ctx, plan.User, RouteUser, version, func(c Container) { user = c })
	}
	if rerr := <-removed; err == nil {
		err = rerr
	}
	if err == nil && ready != nil {
		select {
		case <-ready:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	if err == nil {
		err = r.waitRoutes(ctx, plan.User.Routers, urls, r.o.RegisterTimeout)
	}
	if err != nil {
		return Container{}, err
	}
	routed = true
	// The router drops the lifted routers at its next reload; meanwhile
	// they route to the same servers as the user's, so nothing waits for
	// it (a next rollout whose lifted routers would tie with them does:
	// LiftedLeftError).
	if err := r.e.Runtime.Remove(ctx, lifted.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
		return user, fmt.Errorf("removing %s: %w", lifted.Short(), err)
	}
	return user, nil
}

// removeRoutes removes the route containers of routes but those of the
// IDs keep (a removal an interrupted run had begun may complete first).
func (r *rollout) removeRoutes(ctx context.Context, routes []Container, keep ...string) error {
	for _, c := range routes {
		if slices.Contains(keep, c.ID) {
			continue
		}
		if err := r.e.Runtime.Remove(ctx, c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
			return fmt.Errorf("removing the previous route container %s: %w", c.Short(), err)
		}
	}
	return nil
}

// under is the routing under a lifted route container: the containers
// of version that define the user's routers (own: they carry them), or
// whose user-level route container, route, does; urls are theirs, tmpl
// one of them.
type under struct {
	version string
	urls    []string
	tmpl    Container
	own     bool
	route   Container
}

// routingUnder reports what would route the app if lifted went: running
// containers with routers of their own that the router lists, or a
// running user-level route container of another version than lifted's
// whose containers the router lists. (One of lifted's own version is the
// interrupted run's settle under way: that is settled, not switched back
// to.)
func routingUnder(routes []Container, d *decision, lifted Container) (under, bool) {
	var u under
	for _, old := range d.olds {
		if hasOwnRouters(old.Container) && old.url != "" {
			if !u.own {
				u = under{version: old.Labels[LabelVersion], tmpl: old.Container, own: true}
			}
			u.urls = append(u.urls, old.url)
		}
	}
	if u.own {
		return u, true
	}
	for _, rc := range routes {
		v := rc.Labels[LabelVersion]
		if rc.ID == lifted.ID || !rc.Running() || rc.Labels[LabelRouteLevel] != RouteUser || v == lifted.Labels[LabelVersion] {
			continue
		}
		u = under{version: v, route: rc}
		for _, old := range d.olds {
			if old.Labels[LabelVersion] == v && old.url != "" {
				u.urls, u.tmpl = append(u.urls, old.url), old.Container
			}
		}
		if len(u.urls) > 0 {
			return u, true
		}
	}
	return under{}, false
}

// unlift switches back from a lifted route container a run killed between
// its switch and its stop left while other versions still run, to the
// routing under it, u (the run before's), and the rollout then switches
// from there, taking every running version's containers out. (Settling
// it instead would need the other versions stopped first, which is the
// killed run's unfinished work, without its connection count.)
//
// What the killed run left is not trusted to route once the lifted route
// goes: its settle may have been under way, its last Docker calls
// completing after the kill (a removal of the route under it, a start of
// its own user-level route, whose routers Traefik disables as defined
// twice). So the routing under it is made again first (unliftTo).
func (r *rollout) unlift(ctx context.Context, sw Switcher, d *decision, lifted Container, u under) error {
	version := lifted.Labels[LabelVersion]
	var routers []string
	for _, old := range d.olds {
		if old.Labels[LabelVersion] != version {
			continue
		}
		if plan, err := r.planUser(ctx, sw, old.Container, version); err == nil {
			routers = plan.Lifted.Routers
			break
		}
	}
	r.info(PhasePlan, Event{Container: lifted.Short(), Message: fmt.Sprintf("switching back from route container %s (%s) to %s, left lifted by an interrupted rollout while other versions still run; that rollout's containers of %s are removed after the stop, not kept as a version", lifted.Short(), version, u.version, version)})
	// The interrupted run's new containers: its switch was never
	// settled, so, like those of a run killed before its switch, they
	// are half-made (the SIGKILL soak found one kept as a version that
	// had never answered a request: its lifted route had just started).
	for _, old := range d.olds {
		if old.Labels[LabelVersion] == version {
			old.halfMade = true
		}
	}
	failed := func(err error) error {
		e := &Error{Phase: PhasePlan, Kind: KindFailed, Err: fmt.Errorf("switching back from route container %s, left lifted by an interrupted rollout, to %s: %w", lifted.Short(), u.version, err),
			State: fmt.Sprintf("%s serves, through route container %s", version, lifted.Short()),
			Hint:  "docker ps -a (the app's route containers carry the label " + LabelRouteOf + "=" + r.o.App + "); Traefik's /api/http/routers; run the rollout again"}
		if de := (*Error)(nil); errors.As(classifyDocker(err), &de) {
			e.Kind, e.Hint = de.Kind, cmp.Or(de.Hint, e.Hint)
		}
		return e
	}
	plan, err := r.planUser(ctx, sw, u.tmpl, u.version) // the routing u's run recorded
	if err != nil {
		return failed(err)
	}
	if err := r.unliftTo(ctx, plan, u, lifted); err != nil {
		return failed(err)
	}
	if len(routers) > 0 {
		if err := r.waitRoutes(ctx, routers, nil, r.o.DeregisterTimeout); err != nil {
			return &Error{Phase: PhasePlan, Kind: KindFailed, Err: err,
				State: fmt.Sprintf("route container %s was removed; the routing under it serves", lifted.Short()),
				Hint:  "Traefik's /api/http/routers; run the rollout again"}
		}
	}
	return nil
}

// unliftTo is unlift's switch back to u. Unless u's containers carry the
// user's routers, a route container with the labels of u's starts beside
// it (both define the same routers, identically: Traefik merges them), so
// that the routing stays whole if the killed run's removal of u's lands
// now. Then every other route container of the app goes, and once the
// router shows the user's routers routing to u's containers, lifted goes.
// Nothing is removed before its replacement runs: lifted may route
// nothing (the killed run's new containers not yet healthy: Traefik
// leaves out a router whose service it cannot build), so the routing
// under it must never have a gap (the SIGKILL soak: a settle-like
// removal beside the start gave 404s for a throttle).
func (r *rollout) unliftTo(ctx context.Context, plan SwitchPlan, u under, lifted Container) error {
	var made Container
	routed := false
	defer func() {
		if !routed && made.ID != "" {
			_ = r.e.Runtime.Remove(ctx, made.ID)
		}
	}()
	if !u.own {
		route := Route{Labels: map[string]string{}, Routers: plan.User.Routers}
		for k, v := range u.route.Labels {
			if strings.HasPrefix(k, "traefik.") {
				route.Labels[k] = v
			}
		}
		if _, err := r.startRoute(ctx, route, RouteUser, u.version, func(c Container) { made = c }); err != nil {
			return err
		}
	}
	routes, err := r.routeContainers(ctx)
	if err != nil {
		return err
	}
	if err := r.removeRoutes(ctx, routes, lifted.ID, made.ID); err != nil {
		return err
	}
	if err := r.waitRoutes(ctx, plan.User.Routers, u.urls, r.o.RegisterTimeout); err != nil {
		return err
	}
	routed = true
	if err := r.e.Runtime.Remove(ctx, lifted.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
		return fmt.Errorf("removing %s: %w", lifted.Short(), err)
	}
	return nil
}

// repairLifted settles the lifted route container a run interrupted after
// its switch left (settleTo) when every current container runs the
// version it routes to (the interrupted run had stopped the old version),
// or, without onlyItsVersion, when its version's containers are all up.
// It reports whether it did.
func (r *rollout) repairLifted(ctx context.Context, sw Switcher, d *decision, lifted Container, onlyItsVersion bool) (bool, error) {
	version := lifted.Labels[LabelVersion]
	var urls []string
	var tmpl Container
	for _, old := range d.olds {
		if old.Labels[LabelVersion] != version {
			if onlyItsVersion {
				return false, nil
			}
			continue
		}
		if old.url == "" {
			r.warnAbout(PhasePlan, lifted.Short(), WarnSettleFailed, "route container %s (%s), left lifted by an interrupted rollout, cannot be settled: %s is not in %s", lifted.Short(), version, old.Short(), r.e.routerName())
			return false, nil
		}
		urls = append(urls, old.url)
		tmpl = old.Container
	}
	if r.dryRun || len(urls) == 0 {
		return false, nil
	}
	plan, err := r.planUser(ctx, sw, tmpl, version) // the routing that version's run recorded
	if err == nil {
		return r.settleLifted(ctx, plan, version, urls, lifted)
	}
	// Said, not silent: the rollout then switches back from it or
	// gradually, and the reason is here.
	r.warnAbout(PhasePlan, lifted.Short(), WarnSettleFailed, "route container %s (%s), left lifted by an interrupted rollout, cannot be settled: %v", lifted.Short(), version, err)
	return false, nil
}

// planUser plans the routing of version's containers, of which tmpl is
// one, for a settle or a switch back, which use its user-level routes
// and the names of its lifted routers: lifted routers of other versions
// the router still lists (the one being settled or switched back from
// among them) are no obstacle to that (LiftedLeftError comes with the
// whole plan).
func (r *rollout) planUser(ctx context.Context, sw Switcher, tmpl Container, version string) (SwitchPlan, error) {
	ep, err := r.e.Router.Endpoint(tmpl)
	if err != nil {
		return SwitchPlan{}, err
	}
	plan, err := sw.PlanSwitch(ctx, tmpl, nil, ep, version)
	if left := (*LiftedLeftError)(nil); errors.As(err, &left) {
		err = nil
	}
	return plan, err
}

// settleLifted is repairLifted's settle, once planned.
func (r *rollout) settleLifted(ctx context.Context, plan SwitchPlan, version string, urls []string, lifted Container) (bool, error) {
	r.info(PhasePlan, Event{Container: lifted.Short(), Message: fmt.Sprintf("settling route container %s, left lifted by an interrupted rollout of %s", lifted.Short(), version)})
	if _, err := r.settleTo(ctx, plan, version, urls, lifted, Container{}, nil); err != nil {
		return false, &Error{Phase: PhasePlan, Kind: KindFailed, Err: fmt.Errorf("settling route container %s, left lifted by an interrupted rollout: %w", lifted.Short(), err),
			State: fmt.Sprintf("%s serves, through route container %s or its replacement", version, lifted.Short()), Hint: "docker ps -a (the app's route containers carry the label " + LabelRouteOf + "=" + r.o.App + "); Traefik's /api/http/routers"}
	}
	return true, nil
}

// atomicForUnprobed makes a gradual rollout whose steps need the probe
// (Options.StepsNeedProbes) atomic, all replicas in one step, when a
// current container cannot be drained by its probe and the router can
// switch: such a container could only leave a step by its stop signal,
// which fails requests. It reports whether it changed r.o.
func (r *rollout) atomicForUnprobed(current []Container) bool {
	o := r.o
	if !o.StepsNeedProbes || o.Switch != SwitchGradual || o.Reuse != "" || o.Drain == DrainSignal || r.scale || r.e.switcher() == nil {
		return false
	}
	var unprobed []string
	for _, c := range current {
		if c.Labels[LabelDrain] != "probe" || c.ReadOnlyRootfs {
			unprobed = append(unprobed, c.Short())
		}
	}
	if len(unprobed) == 0 {
		return false
	}
	all := Amount{N: 100, Percent: true}
	r.o.Switch, r.o.MaxSurge = SwitchAtomic, &all
	r.warn(PhasePlan, WarnSwitchAtomicFirst, "switching atomically, every replica in one step, not in the steps asked for: container(s) %s were not made by deployctl (they have no drain probe), so a step could take them out of Traefik only by stopping them, which fails requests; the steps apply from the next rollout", strings.Join(unprobed, ", "))
	return true
}
