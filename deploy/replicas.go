package deploy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// The rollout of several replicas (issue 11): the steps of PlanSteps, run
// one by one. Each step starts its batch of new containers at once, waits
// until every one is healthy and routed (one wait for the batch, so
// Traefik's provider throttle is paid once per step), then drains that
// step's old containers together, waits --drain-grace and stops them.
// Every change to the world is recorded in an undo log; a failure or a
// signal unwinds that log within the same budget (restore).
//
// Every rollout, rollback and scale runs here, one replica too: a rollout
// of one replica is one unnumbered step (+1, -old).

// TargetState is where a container a run touches is (docs/design.md).
type TargetState string

// The states of a target. New containers move left to right; old ones
// start at routed and move right; a restore moves an old one back to
// routed.
const (
	TargetPlanned  TargetState = "planned"
	TargetCreated  TargetState = "created"
	TargetHealthy  TargetState = "healthy"
	TargetRouted   TargetState = "routed"
	TargetDraining TargetState = "draining"
	TargetDrained  TargetState = "drained"
	TargetStopped  TargetState = "stopped"
	TargetGone     TargetState = "gone"
)

// target is one container of a multi-replica run, new or old.
type target struct {
	c        Container
	old      *oldContainer // nil for a new container
	url      string        // its server URL in the router, once known
	state    TargetState
	restarts int // Docker's restart count when it was started
	// reused: a retained container a rollback restarted, not created: a
	// restore stops it again and keeps it (a version to roll back to).
	reused bool
	// probe: it has the drain probe (a new one: as the run decided).
	probe bool
	// step: the step that started it (a new one), 1-based.
	step int
}

func (t *target) short() string { return t.c.Short() }

// undoKind is how to undo one change to the world.
type undoKind int

const (
	undoRemove       undoKind = iota // a new container was created: drain, stop and remove it
	undoServe                        // an old container's drain marker was written: write serve back
	undoRestart                      // an old container was stopped: start it again
	undoRoute                        // a lifted route container was created: remove it (switch back)
	undoRouteCreated                 // a route container was created, not started: remove it
)

type undoEntry struct {
	kind undoKind
	t    *target
}

// stepRun is the state of a multi-replica rollout in progress.
type stepRun struct {
	r      *rollout
	budget Budget
	// minRouted is the budget's floor, or as many as were routed at the
	// start, if fewer.
	minRouted int
	steps     []Step
	step      int // the step being run, 1-based
	// numbered: the run's events and result name its steps ("step 2/3").
	// A rollout of one replica in one step has no steps to name, as
	// before it ran on the step engine.
	numbered bool
	olds     []*target
	news     []*target
	// reuse: a rollback's retained containers not restarted yet, newest
	// first; the start batches take them before creating any.
	reuse []string
	// began: when each step began; ended: when the last one ended (for
	// Result.Steps).
	began []time.Time
	ended time.Time

	// settled is closed when a settle started beside the old containers'
	// stop (settleBeside) is over; nil when none was. oldsStopped, when
	// not nil, is closed once the stop is over (a settle beside waits for
	// it: closeOldsStopped).
	settled, oldsStopped chan struct{}
	// liftedRoute and userRoute are the route containers of an atomic
	// switch, created ahead, while the new containers start and turn
	// healthy (makeRoutes), so that the switch and the settle only start
	// them; nil until makeRoutes runs.
	liftedRoute, userRoute *target
	liftedStarted          bool // liftedRoute was started (makeRoutes, startLiftedEarly, switchOver)
	// routesMade reports the end of makeRoutes (nil once routesReady has
	// read it), routesErr its error.
	routesMade chan error
	routesErr  error
	// switching: the old containers the step's switch takes out of
	// rotation; counting reports the counters prepareCounters set up for
	// them (nil once taken).
	switching []*target
	counting  chan map[*target]prepared

	mu   sync.Mutex
	undo []undoEntry
	// blind: the last error of Traefik's API while the restore went on
	// Docker's health instead (deploy/blind.go); nil if it always answered.
	blind error
}

// wentBlind records that a wait of the restore was decided on Docker's
// health because Traefik's API did not answer (err).
func (s *stepRun) wentBlind(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blind = err
}

// services asks the router for its services, unless the restore has
// already gone blind: the API is not asked again then, as each failed call
// costs its retries (seconds) and the restore's own deadline is bounded
// (seen: 46 s for three replicas on a loaded host when it kept asking).
func (s *stepRun) services(ctx context.Context) ([]Service, error) {
	s.mu.Lock()
	blind := s.blind
	s.mu.Unlock()
	if blind != nil {
		return nil, blind
	}
	return s.r.e.Router.Services(ctx)
}

func (s *stepRun) record(kind undoKind, t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.undo = append(s.undo, undoEntry{kind: kind, t: t})
}

// prefix names the step being run ("step 2/3"), "" in an unnumbered run.
func (s *stepRun) prefix() string {
	if !s.numbered || s.step == 0 {
		return ""
	}
	return fmt.Sprintf("step %d/%d", s.step, len(s.steps))
}

// say is msg of the step being run: "step 2/3: msg".
func (s *stepRun) say(msg string) string {
	if p := s.prefix(); p != "" {
		return p + ": " + msg
	}
	return msg
}

// runSteps runs the decision's steps after plan.
func (r *rollout) runSteps(ctx context.Context) (*Result, error) {
	s := &stepRun{r: r, budget: r.decision.budget, steps: r.decision.steps,
		numbered: len(r.decision.steps) > 1 || r.decision.budget.Replicas > 1 || r.scale}
	r.stepRun = s
	defer s.closeOldsStopped() // whatever ends the run: a settle beside waits for it
	defer func() {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cleanupTimeout())
		defer cancel()
		s.dropCounters(cleanup)
	}()
	if r.o.Reuse != "" {
		s.reuse = slices.Clone(r.reuseAll)
	}
	routed := 0
	for _, old := range r.olds {
		s.olds = append(s.olds, &target{c: old.Container, old: old, url: old.url, state: TargetRouted})
		if old.url != "" {
			routed++
		}
	}
	s.minRouted = min(s.budget.MinRouted(), routed)
	if s.numbered {
		r.info(PhasePlan, Event{Message: fmt.Sprintf("%d replica(s), at most %d running and at least %d routed at any moment: %s",
			s.budget.Replicas, s.budget.MaxRunning(), s.minRouted, stepsString(s.steps))})
	}
	// Pruning older stopped versions runs while the last old containers
	// stop, once the new version serves, rather than after.
	var pruned chan []string
	startPrune := func() {
		if r.scale || pruned != nil || len(s.news) == 0 {
			return
		}
		newest := s.news[0].c
		r.newC, r.newURL = &newest, s.news[0].url
		pruned = make(chan []string, 1)
		go func() { pruned <- r.prune(beside(ctx, "prune")) }()
	}
	waitPrune := func() []string {
		if pruned == nil {
			return nil
		}
		return <-pruned
	}
	for i, st := range s.steps {
		if d := r.o.StepDelay; i > 0 && d > 0 {
			r.info(PhaseCreate, Event{Message: s.say(fmt.Sprintf("waiting %s before step %d/%d (the delay between steps)", d, i+1, len(s.steps)))})
			select {
			case <-ctx.Done():
				return nil, s.fail(ctx, PhaseCreate, nil, context.Cause(ctx))
			case <-time.After(d):
			}
		}
		s.step = i + 1
		s.began = append(s.began, r.e.now())
		if err := ctx.Err(); err != nil {
			return nil, s.fail(ctx, PhaseCreate, nil, context.Cause(ctx))
		}
		if r.sw != nil && len(st.Drain) > 0 {
			// Counted once the switch takes them out: the counts are set
			// up once the route containers are made (makeRoutes).
			s.switching = nil
			for _, i := range st.Drain {
				if t := s.olds[i]; t.old.drain == DrainSwitch && t.state != TargetGone {
					s.switching = append(s.switching, t)
				}
			}
		}
		if st.Start > 0 {
			if t, err := s.startBatch(ctx, st.Start); err != nil {
				return nil, s.fail(ctx, phaseOf(err, PhaseCreate), t, err)
			}
		}
		if r.sw != nil && len(s.olds) == 0 {
			if err := s.routeFirst(ctx); err != nil {
				return nil, s.fail(ctx, PhaseRegister, nil, err)
			}
		}
		last := i == len(s.steps)-1
		if err := ctx.Err(); err != nil {
			// Not a moment later than needed: a signal stops before the
			// step touches an old container.
			return nil, s.fail(ctx, PhaseDrain, nil, context.Cause(ctx))
		}
		if len(st.Drain) > 0 {
			if r.sw != nil {
				if err := s.switchOver(ctx); err != nil {
					return nil, s.fail(ctx, PhaseSwitch, nil, err)
				}
				s.settleBeside(ctx)
			}
			if t, err := s.drainBatch(ctx, st.Drain); err != nil {
				return nil, s.fail(ctx, PhaseDrain, t, err)
			}
			// With --watch the last step's old containers stay drained but
			// running: the way back while the new ones are watched.
			if !(last && r.o.Watch > 0) {
				if last {
					startPrune()
				}
				err := s.stopBatch(ctx, st.Drain)
				s.closeOldsStopped()
				if err != nil {
					waitPrune()
					s.waitSettled()
					return nil, err
				}
			}
			if r.scale {
				s.removeStopped(ctx, st.Drain)
			}
		}
	}
	if r.o.Watch > 0 && len(s.olds) > 0 {
		if t, err := s.watch(ctx); err != nil {
			return nil, s.fail(ctx, PhaseWatch, t, err)
		}
		if last := s.steps[len(s.steps)-1]; len(last.Drain) > 0 {
			startPrune()
			if err := s.stopBatch(ctx, last.Drain); err != nil {
				waitPrune()
				return nil, err
			}
		}
	}
	s.ended, s.step = r.e.now(), 0 // what follows (prune, done) is of no step
	if r.scale {
		return s.scaleResult(), nil
	}
	startPrune()
	if s.settled != nil {
		s.waitSettled()
	} else if r.sw != nil {
		// After the cutover a signal does not stop the settle: the
		// routing is brought to its steady state.
		settleCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cleanupTimeout()+r.o.RegisterTimeout+r.o.DeregisterTimeout)
		s.settle(settleCtx, nil)
		cancel()
	}
	p := waitPrune()
	if ctx.Err() != nil {
		r.warn(PhaseDone, WarnInterrupted, "interrupted after the cutover: the rollout was finished; old containers may not all have been pruned")
	}
	res := r.result(p)
	res.NewContainers = nil
	for _, t := range s.news {
		res.NewContainers = append(res.NewContainers, ContainerRef{ID: t.c.ID, Name: t.short(), Version: r.o.Version, URL: t.url})
	}
	if s.numbered {
		res.Steps = s.report()
	}
	return res, nil
}

// closeOldsStopped tells a settle beside that the old containers' stop is
// over (settleBeside).
func (s *stepRun) closeOldsStopped() {
	if s.oldsStopped != nil {
		close(s.oldsStopped)
		s.oldsStopped = nil
	}
}

// waitSettled waits for a settle started beside the stop, if any.
func (s *stepRun) waitSettled() {
	if s.settled != nil {
		<-s.settled
	}
}

// phaseOf is the phase an error of a batch names, else p.
func phaseOf(err error, p Phase) Phase {
	var de *Error
	if errors.As(err, &de) && de.Phase != "" {
		return de.Phase
	}
	return p
}

func stepsString(steps []Step) string {
	var parts []string
	for _, st := range steps {
		parts = append(parts, fmt.Sprintf("+%d -%v", st.Start, st.Drain))
	}
	return strings.Join(parts, " | ")
}

// startBatch starts n new containers at once and waits until every one
// is healthy and routed: a rollback's retained containers of the target
// version first (restarted), then created ones. On failure it returns the
// container at fault.
func (s *stepRun) startBatch(ctx context.Context, n int) (failed *target, err error) {
	r := s.r
	batch := make([]*target, n)
	reused := 0
	for i := range batch {
		batch[i] = &target{state: TargetPlanned, probe: r.probe, step: s.step}
		if len(s.reuse) > 0 {
			batch[i].c, batch[i].reused = Container{ID: s.reuse[0]}, true
			s.reuse = s.reuse[1:]
			reused++
		}
	}
	// The switch's route containers are made while the new ones start
	// and turn healthy (the switch and the settle then only start them),
	// once Docker has created the first new one: its start, the slow part,
	// goes first (Traefik's throttle counts from the first start).
	makeRoutes := func() {}
	if r.sw != nil && s.userRoute == nil {
		makeRoutes = sync.OnceFunc(func() { s.makeRoutes(ctx, n == 1 && reused == 0 && r.probe) })
		defer func() {
			if rerr := s.routesReady(); rerr != nil && err == nil {
				err = withPhase(rerr, PhaseCreate)
			}
		}()
	}
	msg := s.say(fmt.Sprintf("starting %d new container(s) of %s", n, r.o.ImageRef()))
	if r.o.Reuse != "" {
		msg = s.say(fmt.Sprintf("restarting %d retained and creating %d container(s) of %s", reused, n-reused, r.o.Version))
	}
	r.begin(PhaseCreate, msg)
	err = parallel(batch, func(t *target) error {
		if t.reused {
			err := r.restartRetained(ctx, t, func() {
				t.state = TargetCreated
				s.record(undoRemove, t)
			})
			if err != nil {
				return &targetErr{t: t, err: err}
			}
			r.info(PhaseCreate, Event{Container: t.short(), Message: s.say("restarted")})
			return nil
		}
		c, err := r.createOne(ctx, func(c *Container) {
			defer makeRoutes()
			t.c, t.state = *c, TargetCreated
			s.record(undoRemove, t)
		})
		if err != nil {
			return &targetErr{t: t, err: err}
		}
		t.c, t.restarts = *c, c.RestartCount
		r.info(PhaseCreate, Event{Container: t.short(), Message: s.say("started")})
		return nil
	})
	for _, t := range batch {
		if t.state != TargetPlanned {
			s.news = append(s.news, t)
		}
	}
	if err != nil {
		return firstTarget(err), withPhase(err, PhaseCreate)
	}
	makeRoutes() // a batch of retained containers only
	r.done(PhaseCreate, Event{Message: s.say(fmt.Sprintf("started %s", targetNames(batch)))})
	if t, err := s.waitRouted(ctx, batch); err != nil {
		return t, err
	}
	r.done(PhaseRegister, Event{Message: s.say(fmt.Sprintf("%s healthy and in Traefik service %s", targetNames(batch), strings.Join(r.services, ", ")))})
	return nil, nil
}

// targetErr is an error of one target of a batch.
type targetErr struct {
	t   *target
	err error
}

func (e *targetErr) Error() string { return e.err.Error() }
func (e *targetErr) Unwrap() error { return e.err }

func firstTarget(err error) *target {
	var te *targetErr
	if errors.As(err, &te) {
		return te.t
	}
	return nil
}

// withPhase is err as an *Error of phase p (unless it names its own): a
// Docker engine that stopped answering stays KindUnreachable.
func withPhase(err error, p Phase) error {
	var de *Error
	if errors.As(classifyDocker(err), &de) {
		if de.Phase == "" {
			de.Phase = p
		}
		return de
	}
	return &Error{Phase: p, Kind: KindFailed, Err: err}
}

// waitRouted polls Docker for each container of batch until it is healthy
// and the router until it lists every healthy one, failing at once when one
// exits, restarts or turns unhealthy. One router call per poll serves the
// whole batch. Each container has --healthy-timeout to turn healthy and,
// from then, --register-timeout to be listed; the phase moves from healthy
// to register when the whole batch is healthy.
func (s *stepRun) waitRouted(ctx context.Context, batch []*target) (*target, error) {
	r := s.r
	healthFor := r.o.HealthTimeout
	if healthFor == 0 {
		healthFor = healthDeadline(batch[0].c.Healthcheck)
		if r.probe {
			healthFor = probeHealthDeadline(batch[0].c.Healthcheck)
		}
	}
	start := r.e.now()
	healthyAt := map[*target]time.Time{}
	urls := map[*target]map[string]string{}
	registering := false
	lastLook := map[*target]time.Time{} // healthy ones: when last inspected
	var culprit *target
	var lastErr error
	var seen map[string]Service
	r.begin(PhaseHealthy, s.say(fmt.Sprintf("waiting until %s are healthy", targetNames(batch))))
	// The poll's own deadline only backs the per-container ones up.
	err := r.poll(ctx, healthFor+r.o.RegisterTimeout+time.Second, func() (bool, error) {
		now := r.e.now()
		type look struct {
			t   *target
			c   Container
			err error
		}
		var round []*look
		for _, t := range batch {
			if t.state != TargetCreated && t.state != TargetHealthy {
				continue
			}
			// Healthy ones too, until listed, about once a second: one
			// that exits meanwhile fails the step then, not at the
			// register timeout; and an inspect (slow on a busy host: 30-
			// 400 ms) in every poll would delay noticing Traefik's listing
			// (the benchmark's register reaction lag went from 8 to 49 ms
			// mean, 449 ms max).
			if t.state == TargetHealthy {
				if now.Sub(lastLook[t]) < time.Second {
					continue
				}
				lastLook[t] = now
			}
			round = append(round, &look{t: t})
		}
		// The round's inspects at once: one after the other, at 30-400 ms
		// each on a busy host, a batch of 8 would make each poll last up
		// to 3 s, and every reaction of the step that much later.
		_ = parallel(round, func(l *look) error {
			l.c, l.err = r.e.Runtime.Inspect(ctx, l.t.c.ID)
			return nil
		})
		for _, l := range round {
			t, c, err := l.t, l.c, l.err
			if err != nil {
				culprit = t
				return false, err
			}
			t.c = c
			if err := r.newContainerFailed(ctx, c, t.restarts); err != nil {
				culprit = t
				return false, err
			}
			if t.state == TargetHealthy {
				continue
			}
			if c.State != "running" || !(c.Healthcheck.Disabled() || c.Health == "healthy") {
				if now.Sub(start) > healthFor {
					culprit = t
					return false, s.notHealthy(ctx, t, healthFor)
				}
				continue
			}
			u, err := candidateURLs(r.e.Router.Endpoint, c, r.network)
			if err != nil {
				culprit = t
				return false, &Error{Phase: PhaseRegister, Kind: KindFailed, Err: err, Hint: "attach the container to the network Traefik uses (--network, or the traefik.docker.network label)"}
			}
			if len(u) > 1 {
				r.warnAbout(PhaseRegister, t.short(), WarnAmbiguousNetwork, "container %s is on several networks (%s) and neither --network nor the traefik.docker.network label says which one Traefik uses: Traefik then picks one at random", t.short(), strings.Join(sortedKeys(u), ", "))
			}
			t.state, healthyAt[t], urls[t], lastLook[t] = TargetHealthy, now, u, now
			hs := "healthy"
			if c.Healthcheck.Disabled() {
				hs = "running (no healthcheck)"
			}
			r.info(PhaseHealthy, Event{Container: t.short(), Message: s.say(hs)})
		}
		var healthy []*target
		waiting := false
		for _, t := range batch {
			switch t.state {
			case TargetHealthy:
				healthy = append(healthy, t)
			case TargetCreated:
				waiting = true
			}
		}
		if !waiting && !registering {
			registering = true
			r.done(PhaseHealthy, Event{Message: s.say("healthy: " + targetNames(batch))})
			r.begin(PhaseRegister, s.say(fmt.Sprintf("waiting until %s are in Traefik", targetNames(batch))))
			if err := s.startLiftedEarly(ctx); err != nil {
				return false, withPhase(err, PhaseRegister)
			}
		}
		if len(healthy) > 0 {
			var sv map[string]Service
			sv, lastErr = s.markRouted(ctx, healthy, urls)
			if lastErr == nil {
				seen = sv // else: what it listed before it stopped answering
			}
		}
		for _, t := range batch {
			if t.state == TargetHealthy && now.Sub(healthyAt[t]) > r.o.RegisterTimeout {
				culprit = t
				return false, withPhase(r.notRoutable(t.c, urls[t], seen, lastErr), PhaseRegister)
			}
		}
		for _, t := range batch {
			if t.state != TargetRouted {
				return false, nil
			}
		}
		return true, nil
	})
	if err == nil {
		return nil, nil
	}
	if !isTimeout(err) {
		return culprit, withPhase(err, phaseOf(err, PhaseHealthy))
	}
	for _, t := range batch {
		switch t.state {
		case TargetCreated:
			return t, s.notHealthy(ctx, t, healthFor)
		case TargetHealthy:
			return t, withPhase(r.notRoutable(t.c, urls[t], seen, lastErr), PhaseRegister)
		}
	}
	return nil, err
}

// notHealthy explains a new container that did not turn healthy in time.
func (s *stepRun) notHealthy(ctx context.Context, t *target, d time.Duration) error {
	r := s.r
	return &Error{Phase: PhaseHealthy, Kind: KindFailed, Err: fmt.Errorf("container %s did not become healthy within %s", t.short(), d),
		Observed: fmt.Sprintf("Docker health %q; last probe output: %s; last log lines:\n%s", t.c.Health, r.probeOutput(t.c), r.logs(ctx, t.c.ID)),
		Hint:     "the app's healthcheck (HEALTHCHECK in the image, or --health-cmd); raise --healthy-timeout if the app needs longer to start"}
}

// markRouted asks the router once and moves each of healthy that every
// service of the app lists (UP) at one of its URLs to routed. With no
// service known yet (a first deploy), the services that list the first
// one become the app's. It returns what the app's services listed, for
// the message when one is never listed, and the router's error.
func (s *stepRun) markRouted(ctx context.Context, healthy []*target, urls map[*target]map[string]string) (map[string]Service, error) {
	r := s.r
	all, err := r.e.Router.Services(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range healthy {
		var in []string
		var at, network string
		for _, svc := range all {
			for netName, u := range urls[t] {
				if srv, ok := svc.Server(u); ok && srv.Registered() {
					in = append(in, svc.Name)
					at, network = u, netName
				}
			}
		}
		if len(in) == 0 {
			continue
		}
		if len(r.services) == 0 {
			r.services = in
			if r.network == "" {
				r.network = network
			}
		}
		if !containsAll(in, r.services) {
			continue
		}
		t.url, t.state = at, TargetRouted
		r.info(PhaseRegister, Event{Container: t.short(), URL: t.url, Message: s.say("in Traefik")})
	}
	seen := map[string]Service{}
	for _, svc := range all {
		if slices.Contains(r.services, svc.Name) {
			seen[svc.Name] = svc
		}
	}
	return seen, nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// drainBatch takes the step's old containers out of the router: all
// markers are written at once, then it waits until the router dropped all
// of them, while every new container of the run stays routed. Old
// containers without the probe are left for stopBatch (stopped by signal).
func (s *stepRun) drainBatch(ctx context.Context, idx []int) (*target, error) {
	r := s.r
	var draining []*target
	for _, i := range idx {
		if t := s.olds[i]; t.old.drain == DrainHealth {
			draining = append(draining, t)
		}
	}
	if len(draining) == 0 {
		return nil, nil
	}
	r.begin(PhaseDrain, s.say(fmt.Sprintf("draining %s", targetNames(draining))))
	err := parallel(draining, func(t *target) error {
		s.record(undoServe, t)
		t.state = TargetDraining
		err := r.e.drainer().Drain(ctx, t.c)
		if errors.Is(err, ErrContainerNotFound) {
			t.state, t.old.gone = TargetGone, true
			r.warnAbout(PhaseDrain, t.short(), WarnOldGone, "old container %s disappeared during the rollout (removed by someone else)", t.short())
			return nil
		}
		if err != nil {
			return &targetErr{t: t, err: classifyDocker(fmt.Errorf("draining %s: %w", t.short(), err))}
		}
		t.old.drained = true
		r.info(PhaseDrain, Event{Container: t.short(), URL: t.url, Message: s.say("drain marker written")})
		return nil
	})
	if err != nil {
		return firstTarget(err), err
	}
	if t, err := s.waitDropped(ctx, draining, true); err != nil {
		return t, err
	}
	for _, t := range draining {
		if t.state == TargetDraining {
			t.state = TargetDrained
		}
	}
	r.done(PhaseDrain, Event{Message: s.say(fmt.Sprintf("out of Traefik: %s", targetNames(draining)))})
	return nil, nil
}

// waitDropped polls the router until none of ts is a registered server of
// the app's services. guard: every routed new container must stay routed
// meanwhile (else the drain would leave fewer servers than the budget).
func (s *stepRun) waitDropped(ctx context.Context, ts []*target, guard bool) (*target, error) {
	r := s.r
	var ids []string
	for _, t := range ts {
		if t.state != TargetGone {
			ids = append(ids, t.c.ID)
		}
	}
	// While Traefik's API does not answer, Docker's health stands in
	// (deploy/blind.go): ts dropped, and every routed new container still
	// up, each for longer than the router takes to apply it.
	dropped := r.dropWitness(ids...)
	var stillUp *healthWitness
	if guard {
		var up []string
		for _, t := range s.news {
			if t.state == TargetRouted {
				up = append(up, t.c.ID)
			}
		}
		stillUp = r.restoreWitness(up...)
	}
	var apiErr error
	var culprit *target
	err := r.poll(ctx, r.o.DeregisterTimeout, func() (bool, error) {
		apiErr = nil
		for _, name := range r.services {
			svc, err := r.e.Router.Service(ctx, name)
			if err != nil {
				apiErr = err
				break
			}
			if guard {
				for _, t := range s.news {
					if t.state != TargetRouted {
						continue
					}
					if srv, ok := svc.Server(t.url); !ok || !srv.Registered() {
						culprit = t
						return false, &Error{Kind: KindFailed, Err: fmt.Errorf("new container %s (%s) left service %s while old ones were being drained", t.short(), t.url, name),
							Hint: "the new container's health and logs (docker inspect " + t.short() + ")"}
					}
				}
			}
			for _, t := range ts {
				if t.state == TargetGone {
					continue
				}
				for _, u := range r.oldURLs(t.old) {
					if srv, ok := svc.Server(u); ok && srv.Registered() {
						return false, nil
					}
				}
			}
		}
		if apiErr == nil {
			return true, nil
		}
		// Both clocks run from the first unanswered call on.
		gone := dropped.settled(ctx)
		up := stillUp == nil || stillUp.settled(ctx)
		return gone && up, nil
	})
	if err == nil && apiErr != nil {
		bound, _ := r.e.propagation()
		r.warn(PhaseDrain, WarnTraefikBlind, "%s's API stopped answering (%v); went on because Docker has reported %s unhealthy or stopped for longer than %s takes to apply that (%s + %s)",
			r.e.routerName(), apiErr, targetNames(ts), r.e.routerName(), bound, blindMargin)
	}
	if isTimeout(err) {
		if apiErr != nil {
			return ts[0], &Error{Phase: PhaseDrain, Kind: KindUnreachable, Err: fmt.Errorf("%s's API did not confirm that it dropped %s within %s: %w", r.e.routerName(), targetNames(ts), r.o.DeregisterTimeout, apiErr),
				Hint: "--traefik-url and Traefik's health; docker inspect the containers"}
		}
		return ts[0], &Error{Phase: PhaseDrain, Kind: KindFailed, Err: fmt.Errorf("%s still lists %s after %s", r.e.routerName(), targetNames(ts), r.o.DeregisterTimeout),
			Hint: "that Traefik's docker provider watches this Docker host's events; use --drain=signal to stop old containers without waiting for Traefik"}
	}
	return culprit, err
}

// stopBatch stops the step's old containers: drained ones after
// --drain-grace, the others by signal, then waits for the router to drop
// them. The new version serves them out of rotation: a signal no longer
// aborts this.
func (s *stepRun) stopBatch(ctx context.Context, idx []int) error {
	r := s.r
	var ts []*target
	for _, i := range idx {
		ts = append(ts, s.olds[i])
	}
	r.begin(PhaseStop, s.say(fmt.Sprintf("stopping %s", targetNames(ts))))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cleanupTimeout()+r.o.StopTimeout+DefaultStopTimeout)
	defer cancel()
	if r.o.DrainGrace > 0 && slices.ContainsFunc(ts, func(t *target) bool { return t.old.drain == DrainHealth || t.old.drain == DrainSwitch }) {
		time.Sleep(r.o.DrainGrace)
	}
	var switched []*target
	for _, t := range ts {
		if t.old.drain == DrainSwitch && t.state != TargetGone {
			switched = append(switched, t)
		}
	}
	for t, n := range s.waitConns(ctx, switched) {
		t.old.inFlight = &n
	}
	err := parallel(ts, func(t *target) error {
		if t.state == TargetGone {
			return nil
		}
		s.record(undoRestart, t)
		if tg := r.o.Target; tg != nil && len(tg.PreStop) > 0 && t.c.State != "exited" {
			if err := r.runHooks(ctx, "pre_stop", t.c, tg.PreStop); err != nil {
				r.warnAbout(PhaseStop, t.short(), WarnHookFailed, "%v; stopping it all the same", err)
			}
		}
		timeout := r.stopTimeout(t.c)
		// Written just before the call it announces (the benchmark times
		// Docker's stop from it).
		r.info(PhaseStop, Event{Container: t.short(), Message: s.say(fmt.Sprintf("stopping (stop signal, killed after %s)", timeout))})
		err := r.e.Runtime.Stop(ctx, t.c.ID, timeout)
		switch {
		case errors.Is(err, ErrContainerNotFound):
			t.state, t.old.gone = TargetGone, true
			r.info(PhaseStop, Event{Container: t.short(), Message: s.say("already gone (removed by someone else)")})
		case err != nil:
			return fmt.Errorf("stopping %s: %w", t.short(), err)
		default:
			t.state = TargetStopped
			r.info(PhaseStop, Event{Container: t.short(), Message: s.say("stopped")})
		}
		if t.old.halfMade && t.state == TargetStopped {
			if err := r.e.Runtime.Remove(ctx, t.c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
				r.warnAbout(PhaseStop, t.short(), WarnPruneFailed, "removing %s, left half-made by an interrupted run: %v", t.short(), err)
			} else {
				t.state = TargetGone
				r.info(PhaseStop, Event{Container: t.short(), Message: s.say("removed (left half-made by an interrupted run)")})
			}
		}
		return nil
	})
	if err != nil {
		return &Error{Phase: PhaseStop, Kind: KindNeedsHuman, Err: err,
			State: s.say(fmt.Sprintf("the new container(s) %s serve; old container(s) could not all be stopped", targetNames(s.news))),
			Hint:  "docker ps; stop the old container(s) by hand, then run the rollout again"}
	}
	var bySignal []*target
	for _, t := range ts {
		if t.old.drain == DrainSignal && t.url != "" {
			bySignal = append(bySignal, t)
		}
	}
	if len(bySignal) > 0 {
		if _, err := s.waitDropped(ctx, bySignal, false); err != nil {
			r.warn(PhaseStop, WarnStopNotConfirmed, "%v", err)
		}
	}
	r.done(PhaseStop, Event{Message: s.say(fmt.Sprintf("stopped %s", targetNames(ts)))})
	return nil
}

func (r *rollout) stopTimeout(c Container) time.Duration {
	switch {
	case r.o.StopTimeout > 0:
		return r.o.StopTimeout
	case c.StopTimeout > 0:
		return c.StopTimeout
	}
	return DefaultStopTimeout
}

// watch watches every new container for --watch, the last step's old
// containers drained but running; any one failing fails the run (and so
// restores the old version). It reacts at the first failed health check
// of any new replica (failingReason), not once Docker gives up on it: the
// replica still serves then, so the old ones can be back in Traefik before
// it leaves by itself.
func (s *stepRun) watch(ctx context.Context) (*target, error) {
	r := s.r
	r.begin(PhaseWatch, fmt.Sprintf("watching %s for %s; the old version stays ready", targetNames(s.news), r.o.Watch))
	var culprit *target
	var lastOldCheck time.Time
	err := r.poll(ctx, r.o.Watch, func() (bool, error) {
		// The old version is the way back: say so if it goes (checked
		// about once a second).
		if now := r.e.now(); now.Sub(lastOldCheck) >= time.Second {
			lastOldCheck = now
			for _, t := range s.olds {
				if t.state == TargetGone || t.old.gone {
					continue
				}
				if _, err := r.e.Runtime.Inspect(ctx, t.c.ID); errors.Is(err, ErrContainerNotFound) {
					t.state, t.old.gone = TargetGone, true
					r.warnAbout(PhaseWatch, t.short(), WarnOldGone, "old container %s was removed by someone else during the watch window: it can no longer be put back if %s fails", t.short(), r.o.Version)
				}
			}
		}
		for _, t := range s.news {
			c, err := r.e.Runtime.Inspect(ctx, t.c.ID)
			if err != nil {
				culprit = t
				return false, err
			}
			t.c = c
			if reason := r.failingReason(t, c); reason != "" {
				culprit = t
				return false, &Error{Phase: PhaseWatch, Kind: KindFailed, Err: fmt.Errorf("container %s failed within the watch window: %s", t.short(), reason),
					Observed: "last log lines:\n" + r.logs(ctx, c.ID), Hint: "the new version's logs"}
			}
		}
		for _, name := range r.services {
			svc, err := r.e.Router.Service(ctx, name)
			if err != nil {
				continue // Traefik's answer is not a verdict on the app
			}
			for _, t := range s.news {
				if srv, ok := svc.Server(t.url); !ok || !srv.Registered() {
					culprit = t
					return false, &Error{Phase: PhaseWatch, Kind: KindFailed, Err: fmt.Errorf("container %s failed within the watch window: Traefik no longer routes to it (%s)", t.short(), t.url),
						Observed: "last log lines:\n" + r.logs(ctx, t.c.ID), Hint: "the new version's logs and health (docker inspect " + t.short() + ")"}
				}
			}
		}
		return false, nil
	})
	if isTimeout(err) {
		r.done(PhaseWatch, Event{Message: fmt.Sprintf("%s stayed healthy for %s", targetNames(s.news), r.o.Watch)})
		return nil, nil
	}
	if err != nil {
		r.warnAbout(PhaseWatch, shortOf(culprit), WarnWatchFailed, "%s %s failed within the watch window: %v; putting the old version back", r.o.App, r.o.Version, err)
	}
	return culprit, err
}

// failingReason says why new container t, inspected as c, is failing, or
// "" while it is fine: it exited or restarted, Docker calls it unhealthy,
// or its health check has failed at least once (the drain probe says
// "check failed" while the app's own check fails fewer times in a row than
// its retries allow; without the probe, Docker's failing streak).
func (r *rollout) failingReason(t *target, c Container) string {
	switch {
	case c.State != "running" || c.RestartCount > t.restarts:
		return fmt.Sprintf("it exited with code %d (state %s)", c.ExitCode, c.State)
	case c.Health == "unhealthy" && lastProbe(c) == "":
		return "it turned unhealthy (its probe could not run: the container is probably exiting)"
	case c.Health == "unhealthy":
		return "it turned unhealthy: " + r.probeOutput(c)
	case t.probe && strings.Contains(lastProbe(c), "check failed"):
		return "its health check started failing: " + r.probeOutput(c)
	case c.FailingStreak > 0:
		return fmt.Sprintf("its health check started failing (%d in a row): %s", c.FailingStreak, r.probeOutput(c))
	}
	return ""
}

// fail explains a failure of the current step and restores the old
// version by unwinding the undo log.
func (s *stepRun) fail(ctx context.Context, p Phase, t *target, err error) error {
	r := s.r
	de := r.classify(ctx, p, err)
	if where := s.prefix(); where != "" {
		if t != nil && t.c.ID != "" {
			where += ", container " + t.short()
		}
		de.Err = fmt.Errorf("%s: %w", where, de.Err)
	}
	r.emit(Event{Phase: de.Phase, Status: StatusFail, Container: shortOf(t), Message: de.Err.Error(), Elapsed: r.e.now().Sub(r.phaseStart)})
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	touched := s.touchedOld()
	if rerr := s.restore(cctx); rerr != nil {
		de.Kind = KindNeedsHuman
		de.State = fmt.Sprintf("the old version could not be fully restored: %v", rerr)
		de.Hint = "deployctl status, docker ps; rerun the rollout of the version you want"
		var rr *retainedRunning
		if errors.As(rerr, &rr) {
			de.Hint = "docker stop " + rr.name
		}
		switch {
		case len(s.olds) == 0:
			de.State = fmt.Sprintf("nothing served %s before this first deploy, and what it made could not all be taken away: %v", r.o.App, rerr)
		case !touched:
			de.State = fmt.Sprintf("the old version (%s) is untouched and still serving, but the new container(s) could not all be taken away: %v", names(containersOf(r.olds)), rerr)
		}
		return de
	}
	olds := names(containersOf(r.olds))
	switch {
	case r.scale:
		de.State = fmt.Sprintf("restored: %s %s runs its %d container(s) again, as before the scale", r.o.App, r.o.Version, r.scaleCurrent)
	case len(s.olds) == 0 && len(s.news) == 0:
		de.State = "nothing was changed"
	case len(s.olds) == 0:
		de.State = "first deploy: the new container(s) were removed; nothing of the app is running"
	case len(s.news) == 0 && !touched:
		de.State = fmt.Sprintf("nothing was changed; the old version (%s) is still serving", olds)
	case !touched && r.o.Reuse != "":
		de.State = fmt.Sprintf("the old version (%s) is untouched and still serving; the restarted retained container(s) were stopped again (kept), the created ones removed", olds)
	case !touched:
		de.State = fmt.Sprintf("the old version (%s) is untouched and still serving; the new container(s) were removed", olds)
	case r.o.Reuse != "":
		de.State = fmt.Sprintf("restored: the old version (%s) is serving again; the restarted retained container(s) were stopped again (kept), the created ones removed", olds)
	default:
		de.State = fmt.Sprintf("restored: the old version (%s) is serving again; the new container(s) were removed", olds)
	}
	return de
}

// touchedOld reports whether the run has drained or stopped any old
// container (the undo log holds a change to one).
func (s *stepRun) touchedOld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.undo {
		if u.kind == undoServe || u.kind == undoRestart {
			return true
		}
	}
	return false
}

func shortOf(t *target) string {
	if t == nil || t.c.ID == "" {
		return ""
	}
	return t.short()
}

// restore unwinds the undo log within the budget: the rollout in reverse.
// Drained old containers get their serve marker back first and are
// confirmed in Traefik before any new container is touched (no container
// starts, so the running count holds). New containers that never got
// routed go next: they serve nothing. Then, in turns, as many stopped old
// containers are started again as the surge allows, and once they are
// routed, new ones are drained and removed to make room for the next
// turn, as many as availability allows (restoreTurn).
func (s *stepRun) restore(ctx context.Context) error {
	r := s.r
	r.emit(Event{Phase: PhaseRevert, Status: StatusStart, Message: "restoring the old version"})
	s.mu.Lock()
	log := slices.Clone(s.undo)
	s.mu.Unlock()
	// stopped: old containers to start again, or to create again when
	// they are gone (removed by someone else after the run drained or
	// stopped them): each takes a place in the running count.
	var news, stopped, marked []*target
	for i := len(log) - 1; i >= 0; i-- {
		u := log[i]
		switch {
		case u.kind == undoRoute:
			// 0. Switched back first: the old version's routers serve
			// again before any new container leaves.
			if err := s.unswitch(ctx, u.t); err != nil {
				return fmt.Errorf("switching back to the old version: %w", err)
			}
		case u.kind == undoRouteCreated:
			if u.t.state == TargetCreated {
				if err := r.e.Runtime.Remove(ctx, u.t.c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
					return classifyDocker(fmt.Errorf("removing route container %s: %w", u.t.short(), err))
				}
				u.t.state = TargetGone
			}
		case u.kind == undoRemove:
			news = append(news, u.t)
		case u.t.old != nil && (u.t.state == TargetStopped || u.t.state == TargetGone && u.t.old.gone):
			// (not one the run removed itself: a scale down's, a half-made one)
			if !slices.Contains(stopped, u.t) {
				stopped = append(stopped, u.t)
			}
		case u.kind == undoServe && (u.t.state == TargetDraining || u.t.state == TargetDrained):
			marked = append(marked, u.t)
		}
	}
	// 1. Drained old containers back in rotation, before any new one
	// leaves: a new one may be failing and about to leave by itself.
	if len(marked) > 0 {
		if err := parallel(marked, func(t *target) error {
			err := r.e.drainer().Restore(ctx, t.c)
			if errors.Is(err, ErrContainerNotFound) {
				t.state, t.old.gone = TargetGone, true
				return nil
			}
			if err == nil {
				t.old.drained = false
			}
			return err
		}); err != nil {
			return fmt.Errorf("restoring %s: %w", targetNames(marked), err)
		}
		if err := s.waitOldRouted(ctx, marked, true); err != nil {
			return err
		}
		for _, t := range marked {
			if t.state == TargetGone {
				stopped = append(stopped, t) // removed meanwhile: made again below
			}
		}
	}
	// 2. New containers not routed: out of the way.
	var routedNews, unrouted []*target
	for _, t := range news {
		if t.state == TargetRouted {
			routedNews = append(routedNews, t)
		} else {
			unrouted = append(unrouted, t)
		}
	}
	errs := []error{s.removeNews(ctx, unrouted)}
	// 3. The steps in reverse.
	running := len(routedNews)
	for _, t := range s.olds {
		if t.state == TargetRouted || t.state == TargetDraining || t.state == TargetDrained {
			running++
		}
	}
	for len(stopped) > 0 || len(routedNews) > 0 {
		// New containers that no longer serve (exited, unhealthy) take
		// a place in the running count and give nothing: they go first.
		serving, failing, down := s.sortNews(ctx, routedNews)
		errs = append(errs, s.removeNews(ctx, down))
		running -= len(down)
		n := max(min(len(stopped), s.budget.MaxRunning()-running), 0)
		batch := stopped[:n]
		stopped = stopped[n:]
		if len(batch) > 0 {
			if err := s.restartOld(ctx, batch); err != nil {
				return err
			}
			running += len(batch)
		}
		victims := s.restoreTurn(serving, failing, len(stopped))
		if len(victims) == 0 && n == 0 && len(down) == 0 {
			if len(serving)+len(failing) == 0 {
				// No new container left and still no room: only a scale
				// down starts above N + surge; its old containers go
				// back to what ran before it.
				if err := s.restartOld(ctx, stopped); err != nil {
					return err
				}
				break
			}
			// Within the budget this cannot happen unless new containers
			// fail or old ones are gone: never loop forever.
			victims = slices.Concat(failing, serving)[:1]
		}
		errs = append(errs, s.removeNews(ctx, victims))
		running -= len(victims)
		routedNews = slices.DeleteFunc(slices.Concat(failing, serving), func(t *target) bool { return slices.Contains(victims, t) })
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if s.blind != nil {
		bound, _ := r.e.propagation()
		r.warn(PhaseRevert, WarnTraefikBlind, "%s's API stopped answering (%v): the restore went on Docker's health, taking each old container as back and each new one as dropped once Docker had reported it so for longer than %s takes to apply that (%s + %s)",
			r.e.routerName(), s.blind, r.e.routerName(), bound, blindMargin)
	}
	r.emit(Event{Phase: PhaseRevert, Status: StatusDone, Message: "the old version is serving again"})
	return nil
}

// restoreTurn chooses the routed new containers a turn of the restore
// drains and removes, given those still serving, those whose health check
// is failing (they still serve, but are about to leave Traefik by
// themselves) and the stopped old containers still to start. Once none is
// left to start, all go. Otherwise only as many as the next turn needs to
// start the rest within the surge, failing ones first, and only as many as
// availability allows: the servers left routed must number at least the
// floor, and a failing new one counts as already lost (it cannot be relied
// on to keep serving), so a serving one is drained only while the old ones
// routed plus the serving new ones stay above the floor.
func (s *stepRun) restoreTurn(serving, failing []*target, stopped int) []*target {
	if stopped == 0 {
		return slices.Concat(failing, serving)
	}
	routedOld := 0
	for _, t := range s.olds {
		if t.state == TargetRouted {
			routedOld++
		}
	}
	need := stopped
	routed := routedOld + len(serving) + len(failing) // as Traefik lists them now
	sure := routedOld + len(serving)                  // those that will still be
	k := max(min(len(failing), need, routed-s.minRouted), 0)
	victims := slices.Clone(failing[:k])
	need, routed = need-k, routed-k
	k = max(min(len(serving), need, routed-s.minRouted, sure-s.minRouted), 0)
	return append(victims, serving[:k]...)
}

// sortNews inspects the routed new containers ts: those that serve and
// pass their checks, those that serve but whose health check has started
// failing, and those that no longer serve (exited, unhealthy, gone). One
// that cannot be inspected counts as serving (as last seen).
func (s *stepRun) sortNews(ctx context.Context, ts []*target) (serving, failing, down []*target) {
	r := s.r
	for _, t := range ts {
		c, err := r.e.Runtime.Inspect(ctx, t.c.ID)
		switch {
		case errors.Is(err, ErrContainerNotFound):
			down = append(down, t)
			continue
		case err != nil:
			serving = append(serving, t)
			continue
		}
		t.c = c
		switch {
		case !c.Running() || c.Health == "unhealthy":
			down = append(down, t)
		case r.failingReason(t, c) != "":
			failing = append(failing, t)
		default:
			serving = append(serving, t)
		}
	}
	return serving, failing, down
}

// removeNews drains, stops and removes the new containers ts at once.
func (s *stepRun) removeNews(ctx context.Context, ts []*target) error {
	return parallel(ts, func(t *target) error { return s.removeNew(ctx, t) })
}

// restartOld starts stopped old containers again, their markers set back
// to serve first, and waits until the router routes to them. One that is
// gone is created again (recreateOld).
func (s *stepRun) restartOld(ctx context.Context, ts []*target) error {
	r := s.r
	err := parallel(ts, func(t *target) error {
		if t.state == TargetGone {
			return s.recreateOld(ctx, t)
		}
		if t.old.drain == DrainHealth {
			err := r.e.drainer().Restore(ctx, t.c)
			if errors.Is(err, ErrContainerNotFound) {
				return s.recreateOld(ctx, t)
			}
			if err != nil {
				return fmt.Errorf("restoring %s: %w", t.short(), err)
			}
		}
		err := r.e.Runtime.Start(ctx, t.c.ID)
		if errors.Is(err, ErrContainerNotFound) {
			return s.recreateOld(ctx, t)
		}
		if err != nil {
			return fmt.Errorf("starting %s again: %w", t.short(), err)
		}
		t.old.drained = false
		r.emit(Event{Phase: PhaseRevert, Status: StatusInfo, Container: t.short(), Message: "old container started again"})
		return nil
	})
	if err != nil {
		return err
	}
	return s.waitOldRouted(ctx, ts, false)
}

// recreateOld makes a replacement for old container t, removed by someone
// else after the run drained or stopped it: a container of the image it
// ran (by its reference when that still names the same image, else by
// its ID), with its deployctl labels and healthcheck, and the rest of the
// configuration copied from another old container that still exists (the
// same app's replicas share it; Docker keeps nothing of a removed
// container, so with none left it cannot be made). It gets the drain probe
// (marker serve) when t had it, and is started; t becomes it.
func (s *stepRun) recreateOld(ctx context.Context, t *target) error {
	r := s.r
	var from *target
	for _, o := range s.olds {
		if o == t || o.state == TargetGone {
			continue
		}
		if _, err := r.e.Runtime.Inspect(ctx, o.c.ID); err == nil {
			from = o
			break
		}
	}
	if from == nil {
		return fmt.Errorf("old container %s was removed by someone else, and no other old container is left to copy its configuration from", t.short())
	}
	image := t.c.Image
	if img, err := r.e.Runtime.Image(ctx, t.c.Image); t.c.ImageID != "" && (err != nil || img.ID != t.c.ImageID) {
		image = t.c.ImageID
	}
	labels := map[string]string{}
	for k, v := range t.c.Labels {
		if strings.HasPrefix(k, "deployctl.") {
			labels[k] = v
		}
	}
	version := cmp.Or(t.c.Labels[LabelVersion], "old")
	spec := CreateSpec{Name: containerName(r.o.App, version, randomSuffix()), Image: image, From: from.c.ID, Labels: labels,
		Healthcheck: t.c.Healthcheck, StopTimeout: t.c.StopTimeout}
	c, _, err := r.e.Runtime.Create(ctx, spec)
	if err != nil {
		return fmt.Errorf("creating a replacement of old container %s (removed by someone else) from %s: %w", t.short(), image, err)
	}
	gone := t.short()
	// A replacement that could not be made whole is removed again: the
	// restore fails, and leaves no half-made container behind.
	discard := func(err error) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cleanupTimeout())
		defer cancel()
		if rerr := r.e.Runtime.Remove(ctx, c.ID); rerr != nil && !errors.Is(rerr, ErrContainerNotFound) {
			return fmt.Errorf("%w; removing %s again failed too (%v): docker rm -f %s", err, c.Short(), rerr, c.Short())
		}
		return err
	}
	if t.c.Labels[LabelDrain] == "probe" && r.probeBin != nil {
		files := []File{
			{Path: ProbeDir + "/", Mode: 0o1777},
			{Path: probePathOf(c), Mode: 0o755, Data: r.probeBin},
			{Path: MarkerPath, Mode: 0o644, Data: []byte(MarkerServe)},
		}
		if err := r.e.Runtime.CopyFiles(ctx, c.ID, files); err != nil {
			return discard(fmt.Errorf("copying the drain probe into %s (replacing %s): %w", c.Short(), gone, err))
		}
	}
	if err := r.e.Runtime.Start(ctx, c.ID); err != nil {
		return discard(fmt.Errorf("starting %s (replacing %s): %w", c.Short(), gone, err))
	}
	if ci, err := r.e.Runtime.Inspect(ctx, c.ID); err == nil {
		c = ci
	}
	t.c, t.old.Container, t.state, t.old.gone, t.old.drained = c, c, TargetCreated, false, false
	r.warn(PhaseRevert, WarnOldGone, "old container %s was removed by someone else during the rollout: created %s in its place (%s, configuration of %s)", gone, c.Short(), image, from.short())
	return nil
}

// waitOldRouted waits until the router lists every one of ts again (a
// restarted container may have a new address: it is inspected). Old
// containers whose drain was undone in place (inPlace: they ran all along)
// count as back only once a health check that began after their marker
// said serve has passed, for as long as the router takes to apply that
// (servingAgainWitness): a listing from before is no proof. While
// Traefik's API does not answer, Docker's health stands in: each running
// and healthy by such a check for longer than Traefik's throttle
// (deploy/blind.go).
func (s *stepRun) waitOldRouted(ctx context.Context, ts []*target, inPlace bool) error {
	r := s.r
	var back *healthWitness
	bound, _ := r.e.propagation()
	err := r.poll(ctx, r.o.DeregisterTimeout+r.o.RegisterTimeout+bound+blindMargin, func() (bool, error) {
		var ids []string
		var cs []Container
		for _, t := range ts {
			if t.state == TargetGone {
				continue
			}
			c, err := r.e.Runtime.Inspect(ctx, t.c.ID)
			if errors.Is(err, ErrContainerNotFound) {
				t.state, t.old.gone = TargetGone, true
				continue
			}
			if err != nil {
				return false, nil
			}
			t.c = c
			ids, cs = append(ids, c.ID), append(cs, c)
		}
		if back == nil || !slices.Equal(back.ids, ids) {
			if inPlace {
				back = r.servingAgainWitness(ids...)
			} else {
				back = r.restoreWitness(ids...)
			}
		}
		holds := back.observe(cs)
		if inPlace && !back.propagatedIf(holds) {
			return false, nil
		}
		all, err := s.services(ctx)
		if err != nil {
			if back.settledIf(holds) {
				s.wentBlind(err)
				return true, nil
			}
			return false, nil
		}
		for _, t := range ts {
			if t.state == TargetGone {
				continue
			}
			urls, err := candidateURLs(r.e.Router.Endpoint, t.c, r.network)
			if err != nil {
				return false, nil
			}
			found := false
			for _, svc := range all {
				if len(r.services) > 0 && !slices.Contains(r.services, svc.Name) {
					continue
				}
				for _, u := range urls {
					if srv, ok := svc.Server(u); ok && srv.Registered() {
						t.url, found = u, true
					}
				}
			}
			if !found {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("old container(s) %s did not come back into Traefik: %w", targetNames(ts), err)
	}
	for _, t := range ts {
		if t.state != TargetGone {
			t.state = TargetRouted
		}
	}
	return nil
}

// removeNew drains a new container (if the router may route to it), then
// stops and removes it.
func (s *stepRun) removeNew(ctx context.Context, t *target) error {
	r := s.r
	if t.c.ID == "" {
		return nil
	}
	if t.state == TargetRouted || t.state == TargetHealthy {
		// A healthy one deployctl never saw listed may be listed at any
		// moment (Traefik applies Docker's health with a delay: seen 45 s
		// late on a loaded host): it is not taken as dropped before Docker
		// has reported it unhealthy for longer than Traefik's throttle.
		unconfirmed := t.state == TargetHealthy && t.probe
		t.state = TargetDraining
		if d := r.e.drainer(); t.probe && d != nil {
			_ = d.Drain(ctx, t.c)
		}
		urls := serverURLs(r.e.Router.Endpoint, t.c)
		dropped := r.dropWitness(t.c.ID)
		_ = r.poll(ctx, r.o.DeregisterTimeout, func() (bool, error) {
			all, err := s.services(ctx)
			if err != nil {
				// Traefik's API did not answer: Docker's health stands in.
				if dropped.settled(ctx) {
					s.wentBlind(err)
					return true, nil
				}
				return false, nil
			}
			if unconfirmed && !dropped.settled(ctx) {
				return false, nil
			}
			for _, svc := range all {
				for _, u := range urls {
					if srv, ok := svc.Server(u); ok && srv.Registered() {
						return false, nil
					}
				}
			}
			return true, nil
		})
		if r.o.DrainGrace > 0 {
			time.Sleep(r.o.DrainGrace)
		}
	}
	if err := r.e.Runtime.Stop(ctx, t.c.ID, r.stopTimeout(Container{})); err != nil && !errors.Is(err, ErrContainerNotFound) {
		if t.reused {
			return &retainedRunning{name: t.short(), err: err}
		}
		return fmt.Errorf("stopping new container %s: %w", t.short(), err)
	}
	if t.reused {
		// Never docker rm: it is a retained version, as before the run.
		t.state = TargetStopped
		r.emit(Event{Phase: PhaseRevert, Status: StatusInfo, Container: t.short(), Message: "retained container stopped again"})
		return nil
	}
	if err := r.e.Runtime.Remove(ctx, t.c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
		return fmt.Errorf("removing new container %s: %w", t.short(), err)
	}
	t.state = TargetGone
	r.emit(Event{Phase: PhaseRevert, Status: StatusInfo, Container: t.short(), Message: "new container removed"})
	return nil
}

// retainedRunning: a retained container restarted by a rollback could not
// be stopped again; it is never removed (it is a kept version).
type retainedRunning struct {
	name string
	err  error
}

func (e *retainedRunning) Error() string {
	return fmt.Sprintf("stopping the retained container %s again (never removed: docker stop %s): %v", e.name, e.name, e.err)
}
func (e *retainedRunning) Unwrap() error { return e.err }

func targetNames(ts []*target) string {
	var out []string
	for _, t := range ts {
		if t.c.ID != "" {
			out = append(out, t.short())
		}
	}
	return strings.Join(out, ", ")
}
