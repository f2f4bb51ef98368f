package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Scale (issue 11): the app's serving version to o.Replicas containers,
// with the steps of a rollout (replicas.go), not a procedure of its own.
// Up, the steps only start containers of the serving version, created
// from the configuration of its newest container (the image it runs, its
// version and image labels); the current ones are not touched. Down, the
// steps only drain, stop and remove the oldest containers. The budget of
// --max-surge and --max-unavailable holds, with Replicas the new count.

// ScalePlan is what a scale will do: from how many containers to how many
// of which version.
type ScalePlan struct {
	App     string `json:"app"`
	Version string `json:"version"`
	From    int    `json:"from"`
	To      int    `json:"to"`
	// NoOp: the app already runs To containers; nothing was changed.
	NoOp bool `json:"no_op,omitempty"`
}

// ScaleSteps are the steps of a scale from current running containers to
// b.Replicas: up, start the missing ones, as many per step as the surge
// allows; down, drain the oldest surplus ones, as many per step as
// availability allows once the rest serve. Pure.
func ScaleSteps(current int, b Budget) ([]Step, error) {
	if b.Replicas < 1 || b.MaxSurge < 0 || b.MaxUnavailable < 0 || (b.MaxSurge == 0 && b.MaxUnavailable == 0) {
		return nil, fmt.Errorf("invalid budget %+v", b)
	}
	var steps []Step
	running := current
	for running < b.Replicas {
		n := min(b.Replicas-running, b.MaxRunning()-running)
		steps = append(steps, Step{Start: n})
		running += n
	}
	next := 0
	for running > b.Replicas {
		// Every running one serves: drain down to the floor, but not
		// below Replicas.
		d := min(running-b.Replicas, running-b.MinRouted())
		if d <= 0 {
			return nil, fmt.Errorf("budget %+v makes no progress with %d containers", b, current)
		}
		var s Step
		for range d {
			s.Drain = append(s.Drain, next)
			next++
			running--
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// Scale scales o.App to o.Replicas containers of the version it serves,
// under the app's deploy lock, recorded in the history as "scale". A plan
// with NoOp set means the app already had that many; Result is nil.
func (e *Engine) Scale(ctx context.Context, o Options) (*ScalePlan, *Result, error) {
	r := &rollout{e: e, o: o, operation: "scale", scale: true}
	r.start = e.now()
	r.phaseStart = r.start
	r.o.PollInterval, r.o.HistoryKeep = max(o.PollInterval, time.Millisecond), max(o.HistoryKeep, DefaultHistoryKeep)
	template, err := r.scaleTemplate(ctx)
	if err != nil {
		return nil, nil, r.fail(ctx, PhasePlan, err)
	}
	if err := r.lock(ctx, template.ImageID); err != nil {
		return nil, nil, r.fail(ctx, PhasePlan, err)
	}
	// Again under the lock: a rollout that held it may have changed the
	// app.
	if template, err = r.scaleTemplate(ctx); err != nil {
		r.release(ctx)
		return nil, nil, r.fail(ctx, PhasePlan, err)
	}
	p, err := r.scaleOptions(template)
	if err != nil || p.NoOp {
		r.release(ctx)
		if err != nil {
			return p, nil, r.fail(ctx, PhasePlan, err)
		}
		return p, nil, nil
	}
	e.emit(Event{Phase: PhasePlan, Status: StatusInfo, Message: fmt.Sprintf("scaling %s %s from %d to %d container(s)", p.App, p.Version, p.From, p.To)})
	res, err := r.run(ctx)
	return p, res, err
}

// PlanScale is the dry run of Scale: the plan its steps follow, without
// locking or changing anything.
func (e *Engine) PlanScale(ctx context.Context, o Options) (*ScalePlan, *Plan, error) {
	quiet := *e
	quiet.Reporter = nil
	r := &rollout{e: &quiet, o: o, operation: "scale", scale: true, dryRun: true}
	r.start = e.now()
	r.o.PollInterval = max(o.PollInterval, time.Millisecond)
	template, err := r.scaleTemplate(ctx)
	if err != nil {
		return nil, nil, err
	}
	p, err := r.scaleOptions(template)
	if err != nil || p.NoOp {
		return p, nil, err
	}
	if err := r.plan(ctx); err != nil {
		return p, nil, err
	}
	return p, r.dryRunPlan(ctx), nil
}

// scaleTemplate checks the scale's own options and finds the container
// whose configuration new replicas copy: the newest running one.
func (r *rollout) scaleTemplate(ctx context.Context) (Container, error) {
	o := r.o
	if o.App == "" {
		return Container{}, usageError("--app is required for a scale (deployctl status lists the apps)")
	}
	if o.Replicas < 1 {
		return Container{}, usageError("--replicas must be at least 1 (got %d); to stop an app, docker stop its containers", o.Replicas)
	}
	if !namePattern().MatchString(o.App) {
		return Container{}, usageError("--app %q is not a valid app name: letters, digits, '_', '.' and '-', starting with a letter or digit", o.App)
	}
	cs, err := r.e.Runtime.List(ctx, map[string]string{LabelApp: o.App})
	if err != nil {
		return Container{}, unreachable("Docker", err)
	}
	var running []Container
	for _, c := range cs {
		if c.Running() {
			running = append(running, c)
		}
	}
	if len(running) == 0 {
		return Container{}, usageError("app %s has no running containers on this Docker host: a scale copies the configuration of the running ones; deploy it first with deployctl rollout (deployctl status lists the apps)", o.App)
	}
	sort.Slice(running, func(i, j int) bool { return running[i].Created.After(running[j].Created) })
	r.scaleCurrent = len(running)
	return running[0], nil
}

// scaleOptions makes the scale's options those of a rollout of the
// template's version onto itself.
func (r *rollout) scaleOptions(template Container) (*ScalePlan, error) {
	o := r.o
	version := template.Labels[LabelVersion]
	if version == "" {
		return nil, usageError("container %s of app %s has no %s label: deployctl did not create it, so it does not know its version; roll a version out first (deployctl rollout --select ...)", template.Short(), o.App, LabelVersion)
	}
	p := &ScalePlan{App: o.App, Version: version, From: r.scaleCurrent, To: o.Replicas, NoOp: r.scaleCurrent == o.Replicas}
	o.Image, o.Version, o.Reuse, o.Force = imageRepo(template), version, "", true
	o.Watch = 0
	n, err := o.normalize()
	if err != nil {
		return p, err
	}
	r.o = n
	r.scaleFrom = template
	return p, nil
}

// scaleImage is the plan's image for a scale: the one the newest
// container runs, by its reference when that still names the same image
// (so new replicas show the same image in docker ps), else by its ID.
func (r *rollout) scaleImage(ctx context.Context) error {
	return r.imageOf(ctx, r.scaleFrom)
}

// imageOf makes the image t runs the one new containers are created from:
// by its reference when that still names the same image, else by its ID.
func (r *rollout) imageOf(ctx context.Context, t Container) error {
	img, err := r.e.Runtime.Image(ctx, t.Image)
	if err == nil && (t.ImageID == "" || img.ID == t.ImageID) {
		r.image, r.createImage = img, t.Image
		return nil
	}
	if t.ImageID == "" {
		return classifyDocker(fmt.Errorf("inspecting the image %s of %s: %w", t.Image, t.Short(), err))
	}
	img, err = r.e.Runtime.Image(ctx, t.ImageID)
	if err != nil {
		return classifyDocker(fmt.Errorf("inspecting the image of %s: %w", t.Short(), err))
	}
	r.image, r.createImage = img, t.ImageID
	return nil
}

// scaleDecision makes the rollout's decision a scale's: the new
// containers copy the newest one, the budget is the new count's, and the
// steps only start or only drain.
func (r *rollout) scaleDecision(d *decision) error {
	for _, old := range d.olds {
		if old.ID == r.scaleFrom.ID {
			d.template = &old.Container
		}
	}
	b, err := NewBudget(r.o.Replicas, r.o.surge(), r.o.unavailable())
	if err != nil {
		return err
	}
	// The current containers, not the plan's first count: a rollout
	// may have run between the first look and the lock.
	if len(d.olds) == r.o.Replicas {
		return usageError("app %s already runs %d container(s)", r.o.App, r.o.Replicas)
	}
	d.budget = b
	d.steps, err = ScaleSteps(len(d.olds), b)
	return err
}

// removeStopped removes the containers a scale down stopped: they are of
// the serving version, so no rollback needs them. A failure is a warning:
// the app runs the count asked for.
func (s *stepRun) removeStopped(ctx context.Context, idx []int) {
	r := s.r
	ctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	for _, i := range idx {
		t := s.olds[i]
		if t.state != TargetStopped {
			continue
		}
		if err := r.e.Runtime.Remove(ctx, t.c.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
			r.warnAbout(PhaseStop, t.short(), WarnPruneFailed, "removing container %s after scaling down: %v", t.short(), err)
			continue
		}
		t.state = TargetGone
		r.info(PhaseStop, Event{Container: t.short(), Message: s.say("removed")})
	}
}

// scaleResult is a finished scale: the containers that serve (those kept,
// oldest first, then the new ones) and those removed.
func (s *stepRun) scaleResult() *Result {
	r := s.r
	var serving []ContainerRef
	for _, t := range s.olds {
		if t.state == TargetRouted {
			serving = append(serving, ContainerRef{ID: t.c.ID, Name: t.short(), Version: t.c.Labels[LabelVersion], URL: t.url})
		}
	}
	for _, t := range s.news {
		serving = append(serving, ContainerRef{ID: t.c.ID, Name: t.short(), Version: r.o.Version, URL: t.url})
	}
	res := &Result{App: r.o.App, Image: r.o.Image, Version: r.o.Version, Service: r.services,
		NewContainers: serving, Phases: r.phases, Steps: s.report(), Total: Duration(r.e.now().Sub(r.start))}
	if len(serving) > 0 {
		res.New = serving[len(serving)-1]
	}
	for _, t := range s.olds {
		if t.state == TargetGone || t.state == TargetStopped {
			res.Old = append(res.Old, OldRef{ContainerRef: ContainerRef{ID: t.c.ID, Name: t.short(), Version: t.c.Labels[LabelVersion], URL: t.url},
				Drain: t.old.drain, Gone: t.old.gone, HalfMade: t.old.halfMade})
		}
	}
	r.emit(Event{Phase: PhaseDone, Status: StatusDone, Container: res.New.Name, URL: res.New.URL,
		Message: fmt.Sprintf("%s %s runs %d container(s)", r.o.App, r.o.Version, len(serving)), Elapsed: time.Duration(res.Total)})
	return res
}
