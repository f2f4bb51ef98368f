package deploy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Engine carries out rollouts against a container runtime and Traefik.
type Engine struct {
	Runtime  Runtime
	Router   Router
	Reporter Reporter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Journal holds the deploy lock and the history; nil: neither.
	Journal Journal
	// Processes looks at this machine's processes, to break at once a lock
	// left by a killed run of the same machine and PID namespace; nil: only
	// expiry breaks locks.
	Processes Processes
	// CleanupTimeout bounds the work done after a failure or a signal to
	// leave the old version serving (removing the new container, restoring a
	// drained one); it runs even when the rollout's context is done.
	CleanupTimeout time.Duration
	// Secrets are values (the Traefik API's credentials) that never show
	// in anything relayed from a container (see relay).
	Secrets []string
}

// Result describes a finished rollout.
type Result struct {
	App     string   `json:"app"`
	Image   string   `json:"image"`
	Version string   `json:"version"`
	Service []string `json:"services"`
	// New is the first new container (NewContainers[0] with several
	// replicas), as before replicas.
	New           ContainerRef   `json:"new"`
	NewContainers []ContainerRef `json:"new_containers,omitempty"`
	Old           []OldRef       `json:"old"`
	Phases        []PhaseTime    `json:"phases"`
	// Steps is what each step did, in a run of several steps (several
	// replicas, a scale); empty for a single-container rollout.
	Steps  []StepReport `json:"steps,omitempty"`
	Pruned []string     `json:"pruned,omitempty"`
	Total  Duration     `json:"total"`
	// Switch is how traffic moved to the new version: atomic, or gradual
	// (asked for, or the fallback the plan warned about). SwitchedAt is
	// the atomic switch's instant: when the router confirmed the new
	// version's routers, after which no new request reached the old one.
	Switch     SwitchMode `json:"switch"`
	SwitchedAt *time.Time `json:"switched_at,omitempty"`
	// Swarm is set for the rollout of a Swarm service (New and Old then
	// name services, not containers).
	Swarm *SwarmResult `json:"swarm,omitempty"`
}

// SwarmResult is what a Swarm rollout did.
type SwarmResult struct {
	// Service serves the new version with Tasks tasks; Old was taken out
	// of the router and scaled to 0, kept for rollback.
	Service string `json:"service"`
	Tasks   int    `json:"tasks"`
	Old     string `json:"old"`
}

// ContainerRef names a container and its server URL.
type ContainerRef struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	URL     string `json:"url,omitempty"`
}

// OldRef is an old container and how it was drained.
type OldRef struct {
	ContainerRef
	Drain DrainMode `json:"drain"`
	// Gone: removed by someone else during the rollout (so not kept for
	// rollback).
	Gone bool `json:"gone,omitempty"`
	// HalfMade: the new container of an interrupted run, never in
	// Traefik: stopped and removed, not kept for rollback.
	HalfMade bool `json:"half_made,omitempty"`
	// InFlightAtSignal is how many of its connections were still in flight
	// when it got its stop signal, when they were counted (after an atomic
	// switch, with --drain-timeout).
	InFlightAtSignal *int `json:"in_flight_at_signal,omitempty"`
}

// PhaseTime is how long one phase took.
type PhaseTime struct {
	Phase    Phase    `json:"phase"`
	Duration Duration `json:"duration"`
}

// Duration marshals as seconds in JSON and prints rounded to milliseconds.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).Round(time.Millisecond).String() }

// MarshalJSON writes seconds as a number.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(d).Seconds())), nil
}

// UnmarshalJSON reads seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return err
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// oldContainer is a container being replaced, with what the plan found
// about it.
type oldContainer struct {
	Container
	url   string // its URL in Traefik, "" when Traefik does not list it
	drain DrainMode
	// drained: its marker says "drain" (so it must be restored on revert).
	drained bool
	// gone: removed by someone else during the rollout.
	gone bool
	// halfMade: the new container of an interrupted run that never got
	// into Traefik; removed once stopped, not kept as a version.
	halfMade bool
	// inFlight: its connections in flight when it got its stop signal,
	// when they were counted (after an atomic switch).
	inFlight *int
}

// rollout is the state of one rollout in progress.
type rollout struct {
	e *Engine
	o Options

	start      time.Time
	phaseStart time.Time
	phases     []PhaseTime

	image Image
	// decision is what plan decided (decide). The fields below start as
	// its values; olds then change as the run goes on (drained, gone).
	decision *decision
	olds     []*oldContainer
	template *Container
	services []string        // Traefik services the app's servers must be in
	baseline map[string]bool // server URLs those services had at plan time
	network  string          // the network Traefik reaches the app on, if known

	// sw is the split of the app's routing when the rollout switches
	// atomically (planSwitch), nil when gradually; lifted is its lifted
	// route container once the switch is confirmed.
	sw         *SwitchPlan
	lifted     *target
	switchedAt time.Time
	routeBin   []byte // the probe the route containers run

	probe bool // the new container gets the drain-aware probe
	// probeBin is the probe executable for the new container's platform,
	// once chosen (nil in a dry run of an image not yet pulled).
	probeBin []byte
	// newC and newURL: the newest new container and its URL, once the
	// steps have run (the result and the history name it).
	newC   *Container
	newURL string
	// operation is what the history calls this run: rollout or rollback.
	operation string
	locked    bool
	holder    Holder // of the lock, while locked
	// swarm is set by plan when the app is a Swarm service.
	swarm *swarmApp
	// dryRun: plan only; nothing is pulled, locked or changed.
	dryRun    bool
	wouldPull bool

	// scale: the run is a scale (scale.go) of the serving version, whose
	// newest container is scaleFrom, from scaleCurrent running containers.
	scale        bool
	scaleCurrent int
	scaleFrom    Container
	// createImage is the image new containers are created from when it
	// is not o.ImageRef(): a scale's is the one its containers run, a
	// rollback's the one its retained containers ran.
	createImage string
	// reuseAll: a rollback's retained containers of the target version,
	// newest first; with N > 1 replicas its steps restart up to N of them.
	reuseAll []string

	// numberMu guards the numbering of a Target's new containers
	// (nextNumber): lastNumber, once numbered.
	numberMu   sync.Mutex
	numbered   bool
	lastNumber int

	// stepRun is the multi-replica run in progress (replicas.go), if any:
	// the events emitted while one of its steps runs carry that step.
	stepRun *stepRun
}

// Rollout deploys o.Image:o.Version as described in the package comment.
func (e *Engine) Rollout(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o, _ = o.normalize()
	r := &rollout{e: e, o: o, operation: "rollout"}
	r.start = e.now()
	res, err := r.run(ctx)
	if err == nil {
		err = r.postDeploy(ctx)
	}
	return res, err
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) emit(ev Event) {
	if e.Reporter == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = e.now()
	}
	e.Reporter.Event(ev)
}

// emit emits ev, with the step being run when one is (Event.Step).
func (r *rollout) emit(ev Event) {
	// Pruning and the settle are of no step (they may run beside the last
	// step's stop, and end after it).
	if s := r.stepRun; s != nil && ev.Phase != PhasePrune && ev.Phase != PhaseDone && s.numbered && s.step > 0 && ev.Step == 0 {
		ev.Step, ev.Steps = s.step, len(s.steps)
	}
	r.e.emit(ev)
}

func (r *rollout) begin(p Phase, msg string) {
	r.phaseStart = r.e.now()
	r.emit(Event{Phase: p, Status: StatusStart, Message: msg})
}

func (r *rollout) done(p Phase, ev Event) {
	d := r.e.now().Sub(r.phaseStart)
	r.phases = append(r.phases, PhaseTime{Phase: p, Duration: Duration(d)})
	ev.Phase, ev.Status, ev.Elapsed = p, StatusDone, d
	r.emit(ev)
}

// warn emits a warning with its stable code (the Warn constants).
func (r *rollout) warn(p Phase, code, format string, args ...any) {
	r.warning(p, warningf(code, format, args...))
}

// warnAbout emits a warning about one container (Event.Container).
func (r *rollout) warnAbout(p Phase, container, code, format string, args ...any) {
	w := warningf(code, format, args...)
	r.emit(Event{Phase: p, Status: StatusWarn, Container: container, Code: w.Code, Message: w.Message})
}

func (r *rollout) warning(p Phase, w Warning) {
	r.emit(Event{Phase: p, Status: StatusWarn, Code: w.Code, Message: w.Message})
}

func (r *rollout) info(p Phase, ev Event) {
	ev.Phase, ev.Status = p, StatusInfo
	r.emit(ev)
}

func (r *rollout) run(ctx context.Context) (res *Result, err error) {
	defer func() { r.finish(ctx, err) }()
	if err := r.plan(ctx); err != nil {
		return nil, r.fail(ctx, PhasePlan, err)
	}
	if r.swarm != nil {
		return r.runSwarm(ctx)
	}
	if err := r.prepareTarget(ctx); err != nil {
		return nil, r.fail(ctx, PhaseCreate, err)
	}
	if err := r.preDeploy(ctx); err != nil {
		return nil, r.fail(ctx, PhaseRelease, err)
	}
	return r.runSteps(ctx)
}

// plan gathers the facts (the image, the app's current containers, the
// router's services) and decides from them (decide): how each old
// container will be drained, whether the new one gets the probe, the
// steps and the warnings. It changes nothing but the lock.
func (r *rollout) plan(ctx context.Context) error {
	r.begin(PhasePlan, "")
	o := r.o
	// A Swarm service is a plan of its own (swarm.go).
	if !r.scale && o.Reuse == "" {
		sw, err := r.swarmServices(ctx)
		if err != nil || sw != nil {
			r.swarm = sw
			return err
		}
	}
	lockImage := o.ImageRef()
	if r.scale {
		if err := r.scaleImage(ctx); err != nil {
			return err
		}
	} else if o.Reuse == "" {
		img, err := r.ensureImage(ctx)
		if err != nil {
			return err
		}
		r.image = img
	} else {
		c, err := r.e.Runtime.Inspect(ctx, o.Reuse)
		if err != nil {
			return classifyDocker(err)
		}
		lockImage = c.ImageID
	}
	if !r.locked && !r.dryRun {
		if err := r.lock(ctx, lockImage); err != nil {
			return err
		}
	}
	current, err := r.findCurrent(ctx)
	if err != nil {
		return err
	}
	// Refused before Traefik is asked anything.
	if err := refuseRedeploy(current, o); err != nil {
		return err
	}
	if r.atomicForUnprobed(current) {
		o = r.o
	}
	// Traefik must answer before anything is changed, also on a first
	// deploy, when there is nothing to look up in it yet.
	services, err := r.e.Router.Services(ctx)
	if err != nil {
		return unreachable("Traefik", err)
	}
	// The route containers, for an atomic switch, for a first deploy
	// (planFirst) and for a rollback (which switches back the way the app
	// is routed now).
	var routes []Container
	if !r.scale && (len(current) > 0 || o.Reuse == "") && (o.Switch == SwitchAtomic || o.Reuse != "") {
		if routes, err = r.routeContainers(ctx); err != nil {
			return err
		}
		if !r.dryRun {
			if err := r.removeHelpers(ctx); err != nil {
				return err
			}
			if routes, err = r.removeUnstarted(ctx, routes); err != nil {
				return err
			}
		}
	}
	if o.Reuse != "" && o.MaxSurge == nil {
		// A gradual switch back starts the retained containers as a
		// gradual rollout starts new ones; an atomic one (when a route
		// container routes the app and the retained containers are in a
		// service of their own) starts them all before the switch.
		surge := DefaultMaxSurge
		atomic, err := r.rollbackSwitchesAtomically(ctx, routes, current)
		if err != nil {
			return err
		}
		if atomic {
			surge = Amount{N: 100, Percent: true}
		}
		o.MaxSurge, r.o.MaxSurge = &surge, &surge
	}
	d, err := decide(facts{image: r.image, current: current, services: services, endpoint: r.e.Router.Endpoint, noDrain: r.e.drainer() == nil}, o, r.dryRun)
	var sw *SwitchPlan
	if err == nil {
		var w *Warning
		sw, w, err = r.planSwitch(ctx, d, routes)
		if err == nil && sw == nil && o.Switch == SwitchAtomic && o.Reuse == "" {
			modes := make([]DrainMode, len(d.olds))
			for i, old := range d.olds {
				modes[i] = old.drain
			}
			err = watchNeedsProbes(containersOf(d.olds), modes, o)
		}
		if sw != nil {
			// Old containers leave by the switch, probe or not.
			d.warnings = slices.DeleteFunc(d.warnings, func(w Warning) bool { return w.Code == WarnNoProbeOnCurrent })
		}
		if w != nil {
			d.warnings = append(d.warnings, *w)
		}
	}
	for _, w := range d.warnings {
		r.warning(PhasePlan, w) // also those that came before a refusal
	}
	if err != nil {
		return err
	}
	if r.scale {
		if err := r.scaleDecision(d); err != nil {
			return err
		}
	}
	r.decision = d
	r.olds, r.template, r.services, r.baseline, r.network = d.olds, d.template, d.services, d.baseline, d.network
	r.probe, r.probeBin = d.probe, d.probeBin
	if sw != nil {
		r.sw, r.services = sw, sw.Services
		for _, old := range r.olds {
			old.drain = DrainSwitch
		}
	}
	switch {
	case o.Reuse != "" && d.budget.Replicas > 1:
		if err := r.rollbackReplicas(ctx); err != nil {
			return err
		}
	case o.Reuse != "" && r.probe:
		if err := r.reuseProbe(ctx); err != nil {
			return err
		}
	}
	msg := fmt.Sprintf("app %s: %s -> %s", o.App, describeCurrent(r.olds), o.Version)
	if len(r.services) > 0 {
		msg += "; service " + strings.Join(r.services, ", ")
	}
	r.done(PhasePlan, Event{Message: msg})
	return nil
}

// findCurrent lists the app's running containers, oldest first.
func (r *rollout) findCurrent(ctx context.Context) ([]Container, error) {
	byID := map[string]Container{}
	selectors := []map[string]string{{LabelApp: r.o.App}}
	if len(r.o.Select) > 0 {
		selectors = append(selectors, r.o.Select)
	}
	for _, sel := range selectors {
		cs, err := r.e.Runtime.List(ctx, sel)
		if err != nil {
			return nil, unreachable("Docker", err)
		}
		for _, c := range cs {
			// A route container is none of the app's containers, even
			// when it carries the labels --select names.
			if c.Running() && c.Labels[LabelRouteOf] == "" {
				byID[c.ID] = c
			}
		}
	}
	current := make([]Container, 0, len(byID))
	for _, c := range byID {
		current = append(current, c)
	}
	sort.Slice(current, func(i, j int) bool { return current[i].Created.Before(current[j].Created) })
	return current, nil
}

// ensureImage inspects the image, pulling it as the pull policy says.
func (r *rollout) ensureImage(ctx context.Context) (Image, error) {
	ref := r.o.ImageRef()
	if r.o.Pull != PullAlways {
		img, err := r.e.Runtime.Image(ctx, ref)
		if err == nil || !errors.Is(err, ErrImageNotFound) {
			return img, wrapDocker(err)
		}
		if r.o.Pull == PullNever {
			return Image{}, &Error{Phase: PhasePlan, Kind: KindFailed, Err: fmt.Errorf("image %s is not on the Docker host", ref),
				Hint: "build or load the image on the Docker host first, or allow pulling with --pull=missing"}
		}
	}
	if r.dryRun {
		r.wouldPull = true
		return Image{}, nil
	}
	r.info(PhasePlan, Event{Message: "pulling " + ref})
	if err := r.e.Runtime.Pull(ctx, ref); err != nil {
		return Image{}, &Error{Phase: PhasePlan, Kind: KindFailed, Err: fmt.Errorf("image %s is not on the Docker host and could not be pulled: %w", ref, err),
			Hint: "check that --image and --version name an image that was pushed (or built on the Docker host), and that the Docker host is logged in to its registry"}
	}
	img, err := r.e.Runtime.Image(ctx, ref)
	return img, wrapDocker(err)
}

// reuseProbe chooses the probe for the retained container a rollback
// restarts, by its image's platform, if it has the probe at all.
func (r *rollout) reuseProbe(ctx context.Context) error {
	c, err := r.e.Runtime.Inspect(ctx, r.o.Reuse)
	if err != nil {
		return classifyDocker(err)
	}
	if c.Labels[LabelDrain] != "probe" {
		return nil // restart says so
	}
	ref := c.ImageID
	if ref == "" {
		ref = c.Image
	}
	img, err := r.e.Runtime.Image(ctx, ref)
	if err != nil {
		return classifyDocker(fmt.Errorf("inspecting the image of %s: %w", c.Short(), err))
	}
	r.probeBin, err = selectProbe(r.o.Probes, "container "+c.Short(), img)
	return err
}

// selectProbe returns the probe for img's platform, or the refusal that
// says which platform, which ones deployctl has, and what to do.
func selectProbe(probes ProbeSource, what string, img Image) ([]byte, error) {
	platform := img.OS + "/" + img.Arch
	if img.OS == "" || img.Arch == "" {
		platform = "of an unknown platform (Docker reports no OS/architecture for it)"
	}
	var have []string
	var err error
	if probes == nil {
		err = ErrNoProbe
	} else {
		have = probes.Platforms()
		var bin []byte
		if bin, err = probes.Probe(img.OS, img.Arch); err == nil {
			return bin, nil
		}
	}
	if !errors.Is(err, ErrNoProbe) {
		// Not a missing platform: the embedded probe is broken.
		return nil, &Error{Phase: PhasePlan, Kind: KindFailed, State: "nothing was changed",
			Err:  fmt.Errorf("the drain probe for %s cannot be used: %w", platform, err),
			Hint: "this deployctl build is damaged: reinstall it"}
	}
	return nil, &Error{Phase: PhasePlan, Kind: KindUsage, State: "nothing was changed",
		Err: &wrapped{err: ErrNoProbe, msg: fmt.Sprintf("%s is %s, and this deployctl carries its drain probe only for %s: "+
			"without the probe, old containers cannot be taken out of Traefik before they are stopped, so a rollout may fail requests",
			what, platform, joinOr(have, "no platform"))},
		Hint: "deploy an image built for one of those platforms, or pass --drain=signal to deploy anyway with the lossy stop-then-wait drain"}
}

// wrapped is an error with its own message that still matches err.
type wrapped struct {
	err error
	msg string
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// joinOr joins s with ", ", or is none when s is empty.
func joinOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	return strings.Join(s, ", ")
}

// createOne creates one new container, installs the probe and starts it.
// created is called as soon as Docker has made it (before anything can
// fail after that), so the caller can undo it.
func (r *rollout) createOne(ctx context.Context, created func(*Container)) (*Container, error) {
	o := r.o
	labels := maps.Clone(o.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	given := o.declared()
	var removeGiven []string
	if given {
		tl, err := r.targetLabels(ctx)
		if err != nil {
			return nil, err
		}
		maps.Copy(labels, tl)
		if base := r.routedOld(); r.sw == nil && base != nil {
			// A gradual rollout of an app a route container routes: the
			// new containers join the service the route's router uses,
			// as the copy of a routed old container would; the user's
			// routers stay the route container's (two definitions of a
			// router would disable both).
			removeGiven = traefikKeys(o.Target.Config.Labels)
			for _, k := range traefikKeys(labels) {
				delete(labels, k)
			}
			for _, k := range traefikKeys(base.Labels) {
				labels[k] = base.Labels[k]
			}
			labels[LabelRoutingBase] = base.Labels[LabelRoutingBase]
		}
	}
	if t := o.Target; !given && t != nil && t.NumberLabel != "" {
		// A rollback's container made from a retained one: a number of
		// its own, not the copy's.
		n, err := r.nextNumber(ctx)
		if err != nil {
			return nil, err
		}
		labels[t.NumberLabel] = strconv.Itoa(n)
	}
	if r.sw != nil {
		// The user's routers (of the template and of --label) are the
		// route containers'.
		for _, k := range r.sw.RemoveLabels {
			delete(labels, k)
		}
		maps.Copy(labels, r.sw.Labels)
	}
	if r.sw == nil && r.template != nil && r.template.Labels[LabelRoutingBase] != "" {
		// The copy of the template's configuration leaves deployctl's
		// labels out; a later atomic rollout needs this one.
		labels[LabelRoutingBase] = r.template.Labels[LabelRoutingBase]
	}
	labels[LabelApp] = o.App
	labels[LabelVersion] = o.Version
	labels[LabelImage] = o.Image
	labels[LabelReplicas] = strconv.Itoa(max(r.decision.budget.Replicas, 1))
	spec := CreateSpec{
		Name:        containerName(o.App, o.Version, randomSuffix()),
		Image:       cmp.Or(r.createImage, o.ImageRef()),
		Labels:      labels,
		Env:         o.Env,
		Volumes:     o.Volumes,
		Healthcheck: o.Healthcheck,
		StopTimeout: o.StopTimeout,
		Restart:     o.Restart,
	}
	if o.Network != "" {
		spec.Networks = []string{o.Network}
	}
	if r.template != nil {
		spec.From = r.template.ID
	}
	if given {
		spec.Config, spec.From = o.Target.Config, ""
	}
	if r.sw != nil {
		spec.RemoveLabels = r.sw.RemoveLabels
	}
	if removeGiven != nil {
		spec.RemoveLabels = removeGiven
	}
	if r.probe {
		own, err := r.ownHealthcheck()
		if err != nil {
			return nil, err
		}
		effective := own
		if effective == nil {
			effective = r.image.Healthcheck
		}
		port, err := r.newPort(labels)
		if err != nil {
			return nil, err
		}
		h := drainAwareHealthcheck(effective, port, o.DrainInterval)
		spec.Healthcheck = &h
		labels[LabelDrain] = "probe"
		labels[LabelHealthcheck] = encodeHealthcheck(own)
	} else {
		delete(labels, LabelDrain)
		delete(labels, LabelHealthcheck)
		if spec.Healthcheck == nil && r.template != nil && r.template.Labels[LabelDrain] == "probe" {
			// The copied configuration's healthcheck runs the probe, which
			// this container will not have: it would never turn healthy.
			// Give it the app's own check instead.
			h, err := r.appHealthcheck()
			if err != nil {
				return nil, err
			}
			spec.Healthcheck = h
		}
	}

	c, warnings, err := r.e.Runtime.Create(ctx, spec)
	if err != nil {
		return nil, classifyDocker(fmt.Errorf("creating container from %s: %w", spec.Image, err))
	}
	created(&c)
	for _, w := range warnings {
		r.warn(PhaseCreate, WarnDockerCreate, "%s", w)
	}
	// Before it starts, and so before Traefik can route to it: the network
	// Traefik must reach it on has to be one it is attached to, or Traefik
	// would route to an address that does not answer.
	if err := checkNetwork(r.e.Router.Endpoint, c, r.network); err != nil {
		return nil, &Error{Kind: KindFailed, Err: err,
			Hint: "attach the container to that network (--network), or fix the traefik.docker.network label"}
	}
	if err := r.e.Runtime.Start(ctx, c.ID); err != nil {
		return nil, classifyDocker(fmt.Errorf("starting %s: %w", c.Short(), err))
	}
	// The probe is copied in while the app boots: Docker first runs the
	// healthcheck one drain interval after the start, and failures within
	// the start period do not count. A container that cannot get it is
	// removed like any new container that fails before the cutover.
	if r.probe {
		files := []File{
			{Path: ProbeDir + "/", Mode: 0o1777},
			{Path: ProbePath, Mode: 0o755, Data: r.probeBin},
			{Path: MarkerPath, Mode: 0o644, Data: []byte(MarkerServe)},
		}
		if err := r.e.Runtime.CopyFiles(ctx, c.ID, files); err != nil {
			return nil, classifyDocker(fmt.Errorf("copying the drain probe into %s: %w (use --drain=signal to deploy without it)", c.Short(), err))
		}
	}
	if given {
		if err := r.runHooks(ctx, "post_start", c, o.Target.PostStart); err != nil {
			return nil, &Error{Kind: KindFailed, Err: err, Hint: "fix the hook or what it needs; the old version serves on"}
		}
	}
	return &c, nil
}

// ownHealthcheck is the healthcheck the user asked for: flags, else the
// current container's own (not its image's), else nil (the image's).
func (r *rollout) ownHealthcheck() (*Healthcheck, error) {
	if r.o.Healthcheck != nil {
		return r.o.Healthcheck, nil
	}
	if r.template == nil {
		return nil, nil
	}
	if r.template.Labels[LabelDrain] == "probe" {
		return decodeHealthcheck(r.template.Labels[LabelHealthcheck])
	}
	return r.template.OwnHealthcheck, nil
}

// appHealthcheck is the app's own healthcheck for a container without the
// probe: the user's (flags, else the current container's), else the new
// image's, else none at all ("NONE": nothing is copied from the current
// container).
func (r *rollout) appHealthcheck() (*Healthcheck, error) {
	own, err := r.ownHealthcheck()
	switch {
	case err != nil:
		return nil, err
	case own != nil:
		return own, nil
	case r.image.Healthcheck != nil:
		return r.image.Healthcheck, nil
	}
	return &Healthcheck{Test: []string{"NONE"}}, nil
}

// newPort is the port Traefik will use for the new container, known before
// it exists: from labels, else the image's lowest exposed port, else the
// current container's.
func (r *rollout) newPort(labels map[string]string) (int, error) {
	ep, err := r.newEndpoint(r.template, labels)
	return ep.Port, err
}

// newEndpoint is the endpoint Traefik will use for a new container made
// from tmpl (nil on a first deploy) with labels.
func (r *rollout) newEndpoint(tmpl *Container, labels map[string]string) (Endpoint, error) {
	merged := map[string]string{}
	var ports []int
	if tmpl != nil {
		for k, v := range tmpl.Labels {
			merged[k] = v
		}
		ports = tmpl.Ports
	}
	for k, v := range labels {
		merged[k] = v
	}
	if len(r.image.ExposedPorts) > 0 {
		ports = r.image.ExposedPorts
	}
	ep, err := r.e.Router.Endpoint(Container{Name: r.o.App, Labels: merged, Ports: ports})
	if err != nil {
		return Endpoint{}, &Error{Phase: PhaseCreate, Kind: KindUsage, Err: err,
			Hint: "EXPOSE the port in the image, or add the label traefik.http.services.<name>.loadbalancer.server.port=<port>"}
	}
	return ep, nil
}

// newContainerFailed reports a new container that exited, restarted or
// turned unhealthy, with its last log lines.
func (r *rollout) newContainerFailed(ctx context.Context, c Container, restarts int) error {
	switch {
	case c.State == "exited" || c.State == "dead":
		return &Error{Kind: KindFailed, Err: fmt.Errorf("container %s exited with code %d", c.Short(), c.ExitCode),
			Observed: "last log lines:\n" + r.logs(ctx, c.ID), Hint: "the app's logs above; run the image by hand to reproduce"}
	case c.RestartCount > restarts || c.State == "restarting":
		code := ""
		if c.ExitCode != 0 {
			code = fmt.Sprintf(" (last exit code %d)", c.ExitCode)
		}
		return &Error{Kind: KindFailed, Err: fmt.Errorf("container %s keeps exiting: its restart policy restarted it %d times%s", c.Short(), c.RestartCount, code),
			Observed: "last log lines:\n" + r.logs(ctx, c.ID), Hint: "the app's logs above"}
	case c.Health == "unhealthy":
		return &Error{Kind: KindFailed, Err: fmt.Errorf("container %s is unhealthy", c.Short()),
			Observed: fmt.Sprintf("last probe output: %s; last log lines:\n%s", r.probeOutput(c), r.logs(ctx, c.ID)),
			Hint:     "the app's healthcheck and logs; Traefik never routes to an unhealthy container"}
	}
	return nil
}

// notRoutable explains why Traefik never listed healthy new container c
// at any of urls: what the app's services listed (seen), or the router's
// last error.
func (r *rollout) notRoutable(c Container, urls map[string]string, seen map[string]Service, lastErr error) error {
	want := strings.Join(sortedValues(urls), " or ")
	e := &Error{Kind: KindFailed}
	if len(r.services) == 0 {
		e.Err = fmt.Errorf("container %s is running but its URL %s never appeared in any %s service after %s", c.Short(), want, r.e.routerName(), r.o.RegisterTimeout)
	} else {
		e.Err = fmt.Errorf("container %s is running but its URL %s never appeared in service %s after %s", c.Short(), want, strings.Join(r.services, ", "), r.o.RegisterTimeout)
	}
	var obs []string
	for _, name := range sortedKeys(seen) {
		var servers []string
		for _, s := range seen[name].Servers {
			servers = append(servers, s.URL+statusSuffix(s.Status))
		}
		obs = append(obs, fmt.Sprintf("service %s has servers [%s]", name, strings.Join(servers, ", ")))
	}
	if r.network != "" {
		obs = append(obs, fmt.Sprintf("%s reaches the app on network %s; the container is on %s", r.e.routerName(), r.network, strings.Join(sortedKeys(c.Networks), ", ")))
	} else {
		obs = append(obs, "the container is on network(s) "+strings.Join(sortedKeys(c.Networks), ", "))
	}
	e.Observed = strings.Join(obs, "; ")
	e.Hint = "that the container has traefik.enable=true (unless Traefik exposes containers by default), that it is on the network Traefik uses (--network or the traefik.docker.network label), and that its labels put it in the same Traefik service as the current version"
	if lastErr != nil {
		// The last answers were errors, not a list without the server:
		// Traefik could not be asked.
		e.Kind = KindUnreachable
		e.Err = fmt.Errorf("%s's API did not answer whether it routes to container %s (%s) within %s: %w", r.e.routerName(), c.Short(), want, r.o.RegisterTimeout, lastErr)
		e.Observed = ""
		if len(seen) > 0 {
			e.Observed = strings.Join(obs[:len(seen)], "; ") // what it answered before it stopped
		}
		e.Hint = "--traefik-url (or DEPLOYCTL_TRAEFIK_URL), that Traefik is up and its API answers; then run the rollout again"
	}
	return e
}

// oldURLs are the URLs under which Traefik may route to old: the one it
// listed at the plan, else every one it could use. A container it did not
// list then (left starting by a killed run) may have turned healthy and
// joined the service since.
func (r *rollout) oldURLs(old *oldContainer) []string {
	if old.url != "" {
		return []string{old.url}
	}
	urls, err := candidateURLs(r.e.Router.Endpoint, old.Container, r.network)
	if err != nil {
		return nil
	}
	// An old container that was exiting at the plan (a killed run had
	// signalled it) may be gone by now, and Docker may have given its IP
	// to a new container: that URL is the new one's, not old's (seen in
	// e2e/soak: the wait for it to leave Traefik never ended).
	news := r.newURLs()
	var out []string
	for _, u := range sortedValues(urls) {
		if !slices.ContainsFunc(news, func(n string) bool { return sameURL(u, n) }) {
			out = append(out, u)
		}
	}
	return out
}

// newURLs are the URLs the run's new containers are routed at so far.
func (r *rollout) newURLs() []string {
	var out []string
	if s := r.stepRun; s != nil {
		for _, t := range s.news {
			if t.url != "" {
				out = append(out, t.url)
			}
		}
	}
	return out
}

// prune removes stopped containers of the app beyond the newest o.Keep,
// counting the old containers being stopped as the newest. Failures are
// warnings: the rollout itself has succeeded.
func (r *rollout) prune(ctx context.Context) []string {
	if ctx.Err() != nil {
		return nil
	}
	cs, err := r.e.Runtime.List(ctx, map[string]string{LabelApp: r.o.App})
	if err != nil {
		r.warn(PhasePrune, WarnPruneFailed, "listing old containers to prune: %v", err)
		return nil
	}
	var pruned []string
	for _, c := range pruneList(cs, containersOf(r.olds), halfMadeIDs(r.olds), r.newC.ID, r.o.Version, r.o.Keep) {
		if err := r.e.Runtime.Remove(ctx, c.ID); err != nil {
			r.warnAbout(PhasePrune, c.Short(), WarnPruneFailed, "removing old container %s: %v", c.Short(), err)
			continue
		}
		pruned = append(pruned, c.Short())
	}
	if len(pruned) > 0 {
		r.info(PhasePrune, Event{Message: fmt.Sprintf("removed %d old or never started container(s) beyond --keep %d: %s", len(pruned), r.o.Keep, strings.Join(pruned, ", "))})
	}
	return pruned
}

func (r *rollout) result(pruned []string) *Result {
	res := &Result{
		App: r.o.App, Image: r.o.Image, Version: r.o.Version, Service: r.services,
		New:    ContainerRef{ID: r.newC.ID, Name: r.newC.Short(), Version: r.o.Version, URL: r.newURL},
		Phases: r.phases, Pruned: pruned, Total: Duration(r.e.now().Sub(r.start)),
	}
	res.NewContainers = []ContainerRef{res.New}
	res.Switch = SwitchGradual
	if r.lifted != nil {
		at := r.switchedAt
		res.Switch, res.SwitchedAt = SwitchAtomic, &at
	}
	for _, old := range r.olds {
		res.Old = append(res.Old, OldRef{ContainerRef: ContainerRef{ID: old.ID, Name: old.Short(), Version: old.Labels[LabelVersion], URL: old.url}, Drain: old.drain, Gone: old.gone, HalfMade: old.halfMade, InFlightAtSignal: old.inFlight})
	}
	r.e.emit(Event{Phase: PhaseDone, Status: StatusDone, Container: r.newC.Short(), URL: r.newURL,
		Message: fmt.Sprintf("%s %s is serving", r.o.App, r.o.Version), Elapsed: time.Duration(res.Total)})
	return res
}
