package deploy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// RollbackPlan is what a rollback will do and why.
type RollbackPlan struct {
	App   string `json:"app"`
	From  string `json:"from,omitempty"` // the version serving now ("" when nothing runs)
	To    string `json:"to,omitempty"`
	Reuse string `json:"reuse,omitempty"` // the retained container to restart, "" to create one
	// ReuseAll are all retained containers of To, newest first (Reuse is
	// the first): a rollback of N > 1 replicas restarts up to N of them.
	ReuseAll []string `json:"reuse_all,omitempty"`
	Image    string   `json:"image,omitempty"`  // the repository
	Reason   string   `json:"reason,omitempty"` // why this version: "--to", "the version before ..."
	NoOp     bool     `json:"no_op,omitempty"`  // nothing to do (Reason says why)
	Retains  []string `json:"retains,omitempty"`
	// Recreate says why To's retained containers are not restarted and a
	// new one is created from its image instead ("" when they are, or
	// there are none).
	Recreate string `json:"recreate,omitempty"`
}

// PlanRollback works out the target of a rollback of o.App: o.Version when
// set (--to), else the version the app was deployed from most recently
// (from the history), else the newest retained version. It changes
// nothing.
func (e *Engine) PlanRollback(ctx context.Context, o Options) (*RollbackPlan, error) {
	if o.App == "" {
		return nil, usageError("--app is required for a rollback (deployctl status lists the apps)")
	}
	cs, err := e.Runtime.List(ctx, map[string]string{LabelApp: o.App})
	if err != nil {
		return nil, unreachable("Docker", err)
	}
	if len(cs) == 0 {
		return nil, usageError("no containers of app %s on this Docker host (deployctl status lists the apps)", o.App)
	}
	sort.Slice(cs, func(i, j int) bool { return lastServed(cs[i]).After(lastServed(cs[j])) }) // newest first
	p := &RollbackPlan{App: o.App}
	var running, retained []Container
	for _, c := range cs {
		if c.Running() {
			running = append(running, c)
		} else {
			retained = append(retained, c)
		}
	}
	if len(running) > 0 {
		p.From = running[0].Labels[LabelVersion]
	}
	seen := map[string]bool{}
	for _, c := range retained {
		if v := c.Labels[LabelVersion]; v != "" && !seen[v] && v != p.From {
			seen[v] = true
			p.Retains = append(p.Retains, v)
		}
	}

	var records []Record
	if e.Journal != nil {
		if records, err = e.Journal.Records(ctx, o.App); err != nil {
			return nil, unreachable("Docker", fmt.Errorf("reading the deploy history of %s: %w", o.App, err))
		}
	}
	switch {
	case o.Version != "":
		p.To, p.Reason = o.Version, "--to"
	default:
		// Right after a failed rollout the version before it is still
		// serving: there is nothing to undo.
		if len(records) > 0 && records[0].Result != "ok" && records[0].From == p.From && p.From != "" {
			p.NoOp = true
			p.Reason = fmt.Sprintf("the last %s (%s -> %s) %s and %s, the version before it, is still serving: nothing to roll back (use --to to pick another version%s)",
				records[0].Operation, records[0].From, records[0].To, records[0].Result, p.From, retainedHint(p.Retains))
			return p, nil
		}
		for _, rec := range records {
			if rec.Result == "ok" && rec.To == p.From && rec.From != "" && rec.From != p.From && !strings.Contains(rec.From, ",") {
				p.To = rec.From
				p.Reason = fmt.Sprintf("the version before the %s of %s", rec.Operation, rec.Started.Local().Format("2006-01-02 15:04:05"))
				break
			}
		}
		if p.To == "" && len(p.Retains) > 0 {
			p.To, p.Reason = p.Retains[0], "the newest retained version"
		}
		if p.To == "" {
			return nil, usageError("no earlier version of %s is known: no history and no retained container; use --to VERSION with an image that exists", o.App)
		}
	}
	if p.To == p.From {
		p.NoOp = true
		p.Reason = fmt.Sprintf("%s is already serving", p.To)
		return p, nil
	}
	var own []Container // retained containers of To with routers of their own
	for _, c := range retained {
		if c.Labels[LabelVersion] == p.To {
			if p.Reuse == "" {
				p.Reuse = c.ID
				p.Image = imageRepo(c)
			}
			p.ReuseAll = append(p.ReuseAll, c.ID)
			if hasOwnRouters(c) {
				own = append(own, c)
			}
		}
	}
	if len(own) > 0 {
		// Made before the app's first atomic rollout: restarted while a
		// route container routes the app, their routers would be defined
		// twice, and Traefik disables a router defined twice. A container
		// made from their image switches like any rollout's.
		routes, err := e.Runtime.List(ctx, map[string]string{LabelRouteOf: o.App})
		if err != nil {
			return nil, unreachable("Docker", fmt.Errorf("listing the route containers of %s: %w", o.App, err))
		}
		if running := runningOf(routes); len(running) > 0 {
			p.Recreate = fmt.Sprintf("its retained container %s carries Traefik routers of its own, which would conflict with those of route container %s that routes the app now", own[0].Short(), names(running))
			p.Reuse, p.ReuseAll = "", nil
		}
	}
	if p.Image == "" && len(cs) > 0 {
		p.Image = imageRepo(cs[0])
	}
	return p, nil
}

// Rollback rolls o.App back to o.Version, or to the previous version when
// it is "" (see PlanRollback), with the rollout procedure: the retained
// container of that version is restarted (or one is created from the image
// of that version), and the current one is drained and stopped only once
// the target serves. With N > 1 replicas serving (or --replicas), the
// rollback runs the steps of a rollout (stepRun) within --max-surge and
// --max-unavailable: the retained containers of that version, newest
// first, are restarted in the steps' start batches, the rest created from
// its configuration and image. The target is worked out under the app's deploy lock,
// so a rollback that waited for a rollout goes back from what that rollout
// left. A plan with NoOp set means nothing was to be done; Result is nil.
func (e *Engine) Rollback(ctx context.Context, o Options) (*RollbackPlan, *Result, error) {
	r := &rollout{e: e, o: o, operation: "rollback"}
	r.start = e.now()
	r.phaseStart = r.start
	// Until r.run, errors go through r.fail for their phase and state
	// (nothing was changed).
	if o.App == "" {
		return nil, nil, r.fail(ctx, PhasePlan, usageError("--app is required for a rollback (deployctl status lists the apps)"))
	}
	r.o.PollInterval, r.o.HistoryKeep = max(o.PollInterval, time.Millisecond), max(o.HistoryKeep, DefaultHistoryKeep)
	if sw, err := r.swarmServices(ctx); err != nil {
		return nil, nil, r.fail(ctx, PhasePlan, err)
	} else if sw != nil {
		return r.rollbackSwarm(ctx, sw)
	}
	cs, err := e.Runtime.List(ctx, map[string]string{LabelApp: o.App})
	if err != nil {
		return nil, nil, r.fail(ctx, PhasePlan, unreachable("Docker", err))
	}
	if len(cs) == 0 {
		return nil, nil, r.fail(ctx, PhasePlan, usageError("no containers of app %s on this Docker host (deployctl status lists the apps)", o.App))
	}
	r.o.PollInterval, r.o.HistoryKeep = max(o.PollInterval, time.Millisecond), max(o.HistoryKeep, DefaultHistoryKeep)
	if err := r.lock(ctx, cs[0].ImageID); err != nil {
		return nil, nil, r.fail(ctx, PhasePlan, err)
	}
	p, err := e.PlanRollback(ctx, o)
	if err != nil {
		r.release(ctx)
		return p, nil, r.fail(ctx, PhasePlan, err)
	}
	if p.NoOp {
		r.release(ctx)
		return p, nil, nil
	}
	o.App, o.Image, o.Version, o.Reuse = p.App, p.Image, p.To, p.Reuse
	o.Force = true // rolling back to a version that is also running is allowed
	if p.Recreate != "" {
		o.Switch = SwitchAtomic // the way the app is routed now
	}
	if err := o.Validate(); err != nil {
		r.release(ctx)
		return p, nil, r.fail(ctx, PhasePlan, err)
	}
	r.o, _ = o.normalize()
	r.reuseAll = p.ReuseAll
	how := "restarting its retained container"
	if len(p.ReuseAll) > 1 {
		how = fmt.Sprintf("restarting its retained containers (%d kept)", len(p.ReuseAll))
	}
	if p.Reuse == "" {
		how = "creating a container from " + r.o.ImageRef()
		if p.Recreate != "" {
			how += ", configured like the current one: " + p.Recreate
		}
	}
	e.emit(Event{Phase: PhasePlan, Status: StatusInfo, Message: fmt.Sprintf("rolling %s back from %s to %s (%s), %s", p.App, orNone(p.From), p.To, p.Reason, how)})
	res, err := r.run(ctx)
	return p, res, err
}

// PlanRollbackSteps is the dry run of Rollback: its target (PlanRollback)
// and the plan its run would follow (the rollout's plan, with the
// retained containers it restarts named in Plan.Actions), without
// locking or changing anything. The Plan is nil when there is nothing to
// do (RollbackPlan.NoOp).
func (e *Engine) PlanRollbackSteps(ctx context.Context, o Options) (*RollbackPlan, *Plan, error) {
	p, err := e.PlanRollback(ctx, o)
	if err != nil || p.NoOp {
		return p, nil, err
	}
	o.App, o.Image, o.Version, o.Reuse = p.App, p.Image, p.To, p.Reuse
	o.Force = true
	if p.Recreate != "" {
		o.Switch = SwitchAtomic
	}
	if err := o.Validate(); err != nil {
		return p, nil, err
	}
	o, _ = o.normalize()
	quiet := *e
	quiet.Reporter = nil
	r := &rollout{e: &quiet, o: o, operation: "rollback", dryRun: true, reuseAll: p.ReuseAll}
	r.start = e.now()
	if err := r.plan(ctx); err != nil {
		return p, nil, err
	}
	return p, r.dryRunPlan(ctx), nil
}

// imageRepo is the repository a container was deployed from.
func imageRepo(c Container) string {
	if r := c.Labels[LabelImage]; r != "" {
		return r
	}
	ref := c.Image
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

func retainedHint(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return "; retained: " + strings.Join(vs, ", ")
}

func orNone(v string) string {
	if v == "" {
		return "(nothing running)"
	}
	return v
}

// rollbackReplicas prepares a rollback of N > 1 replicas, run by stepRun:
// the retained containers of the target version are restarted first,
// newest first (restartRetained), and the rest are created from the
// configuration of the newest of them and the image it ran, with the probe
// for that image's platform, as a rollout decides it.
func (r *rollout) rollbackReplicas(ctx context.Context) error {
	c, err := r.e.Runtime.Inspect(ctx, r.o.Reuse)
	if err != nil {
		return classifyDocker(err)
	}
	if err := r.imageOf(ctx, c); err != nil {
		return err
	}
	r.template = &c
	o := r.o
	o.Reuse = ""
	probe, bin, w, err := decideProbe(o, r.template, r.image, false)
	if err != nil {
		return err
	}
	if w != nil {
		r.warning(PhasePlan, *w)
	}
	r.probe, r.probeBin = probe, bin
	if len(r.reuseAll) == 0 {
		r.reuseAll = []string{r.o.Reuse}
	}
	return nil
}

// restartRetained starts the retained container t.c.ID of a multi-replica
// rollback, as the single-container rollback does (restart): the probe
// copied in again where its healthcheck runs it, its marker set to serve.
// started is called before anything changes, so the caller can undo it
// (stop it again, never remove it: it is a kept version).
func (r *rollout) restartRetained(ctx context.Context, t *target, started func()) error {
	c, err := r.e.Runtime.Inspect(ctx, t.c.ID)
	if err != nil {
		return classifyDocker(err)
	}
	t.c = c
	t.probe = c.Labels[LabelDrain] == "probe"
	started()
	if t.probe {
		// The marker goes back to serve in any case: the healthcheck
		// reads it, and the container was drained when it was stopped.
		files := []File{{Path: MarkerPath, Mode: 0o644, Data: []byte(MarkerServe)}}
		if r.o.Drain != DrainSignal && r.probeBin != nil {
			files = append([]File{{Path: ProbeDir + "/", Mode: 0o1777}, {Path: probePathOf(c), Mode: 0o755, Data: r.probeBin}}, files...)
		}
		if err := r.e.Runtime.CopyFiles(ctx, c.ID, files); err != nil {
			return classifyDocker(fmt.Errorf("installing the drain probe in %s and resetting its marker: %w", c.Short(), err))
		}
	}
	if err := checkNetwork(r.e.Router.Endpoint, c, r.network); err != nil {
		return &Error{Kind: KindFailed, Err: err, Hint: "attach the container to that network (--network), or fix the traefik.docker.network label"}
	}
	if err := r.e.Runtime.Start(ctx, c.ID); err != nil {
		return classifyDocker(fmt.Errorf("starting %s: %w", c.Short(), err))
	}
	// Its restart count as Docker has it now: a start may reset it.
	if c, err = r.e.Runtime.Inspect(ctx, c.ID); err != nil {
		return classifyDocker(err)
	}
	t.c, t.restarts = c, c.RestartCount
	return nil
}
