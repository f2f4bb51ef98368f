package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Plan is what a rollout would do, worked out without changing anything:
// the output of --dry-run. It is the rollout's own plan (decide), with the
// facts the dry run adds (the lock holder, what --keep would prune).
type Plan struct {
	App       string   `json:"app"`
	Image     string   `json:"image"`
	Version   string   `json:"version"`
	WouldPull bool     `json:"would_pull,omitempty"`
	Services  []string `json:"services"`
	Network   string   `json:"network,omitempty"`
	Port      int      `json:"port,omitempty"`
	Probe     bool     `json:"probe"` // the new container gets the drain-aware probe
	// Switch is how traffic will move to the new version; SwitchRouters
	// are the routers of the atomic switch (its lifted route container).
	// A fallback to gradual is one of the Warnings (switch-gradual).
	Switch        SwitchMode `json:"switch"`
	SwitchRouters []string   `json:"switch_routers,omitempty"`
	// RouteRouters are the routers of a first deploy's route container,
	// at the user's names and priorities, to the new version's service
	// (the routing split from the start: deploy.planFirst); empty when
	// the new containers carry their routers themselves.
	RouteRouters []string     `json:"route_routers,omitempty"`
	Current      []PlannedOld `json:"current"`
	// Steps are the rollout's steps: each starts Start new containers,
	// then drains and stops the current containers it names (indexes into
	// Current). The single-container rollout is one step.
	Steps []Step `json:"steps"`
	// Actions are the same steps spelled out with names (PlannedStep).
	Actions  []PlannedStep `json:"actions,omitempty"`
	Prune    []string      `json:"prune,omitempty"`
	Lock     *Holder       `json:"lock,omitempty"`
	Warnings []Warning     `json:"warnings,omitempty"`
}

// PlannedOld is a current container and how it would be drained.
type PlannedOld struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	URL     string    `json:"url,omitempty"`
	Drain   DrainMode `json:"drain"`
}

// PlannedStep is one step of a plan with its containers named: the new
// containers it creates ("new #1", "new #2", ... numbered across the
// steps in the order the run starts them), the retained containers a
// rollback restarts (by name; they start before any is created), then
// the current containers it takes out of Traefik through their drain
// probe, and every current container it stops (drained or by signal;
// Remove: and then removes, a scale down).
type PlannedStep struct {
	Step    int      `json:"step"`
	Start   []string `json:"start,omitempty"`
	Restart []string `json:"restart,omitempty"`
	Drain   []string `json:"drain,omitempty"`
	Stop    []string `json:"stop,omitempty"`
	Remove  []string `json:"remove,omitempty"`
}

// startsOf is how many containers steps start in all.
func startsOf(steps []Step) int {
	n := 0
	for _, st := range steps {
		n += st.Start
	}
	return n
}

// planActions names the containers of steps: current are the current
// containers the steps' Drain indexes into, reuse the retained
// containers a rollback restarts (newest first), remove whether what is
// stopped is then removed.
func planActions(steps []Step, current []PlannedOld, reuse []string, remove bool) []PlannedStep {
	var out []PlannedStep
	created := 0
	for i, st := range steps {
		a := PlannedStep{Step: i + 1}
		for range st.Start {
			if len(reuse) > 0 {
				a.Restart, reuse = append(a.Restart, reuse[0]), reuse[1:]
				continue
			}
			created++
			a.Start = append(a.Start, fmt.Sprintf("new #%d", created))
		}
		for _, j := range st.Drain {
			if j < 0 || j >= len(current) {
				continue
			}
			old := current[j]
			if old.Drain == DrainHealth {
				a.Drain = append(a.Drain, old.Name)
			}
			a.Stop = append(a.Stop, old.Name)
			if remove {
				a.Remove = append(a.Remove, old.Name)
			}
		}
		out = append(out, a)
	}
	return out
}

// Plan works out what Rollout(o) would do and what it would warn about,
// without pulling, locking or changing anything. A rollout that would be
// refused returns its error, as Rollout would.
func (e *Engine) Plan(ctx context.Context, o Options) (*Plan, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o, _ = o.normalize()
	quiet := *e
	quiet.Reporter = nil // the plan is the value returned, not progress
	r := &rollout{e: &quiet, o: o, operation: "rollout", dryRun: true}
	r.start = e.now()
	if err := r.plan(ctx); err != nil {
		return nil, err
	}
	if r.swarm != nil {
		return nil, usageError("%s is a Swarm service: a dry run of a Swarm rollout is not built yet (docs/design.md, \"Swarm services\")", o.App)
	}
	return r.dryRunPlan(ctx), nil
}

// dryRunPlan is the Plan of a dry run r has planned.
func (r *rollout) dryRunPlan(ctx context.Context) *Plan {
	e, o := r.e, r.o
	d := r.decision
	p := &Plan{App: o.App, Image: o.Image, Version: o.Version, WouldPull: r.wouldPull, Services: r.services,
		Network: d.network, Probe: d.probe, Steps: d.steps, Warnings: d.warnings, Switch: SwitchGradual}
	switch {
	case r.sw != nil && len(d.olds) == 0:
		p.RouteRouters = r.sw.User.Routers
	case r.sw != nil:
		p.Switch, p.SwitchRouters = SwitchAtomic, r.sw.Lifted.Routers
	}
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	if port, err := r.newPort(labels); err == nil {
		p.Port = port
	}
	for _, old := range d.olds {
		p.Current = append(p.Current, PlannedOld{Name: old.Short(), Version: old.Labels[LabelVersion], URL: old.url, Drain: old.drain})
	}
	if e.Journal != nil {
		if h, err := e.Journal.LockHolder(ctx, o.App); err == nil && h != nil {
			p.Lock = h
		}
	}
	listed, err := e.Runtime.List(ctx, map[string]string{LabelApp: o.App})
	// A rollback's retained containers, by name, in the order it
	// restarts them.
	reuse := r.reuseAll
	if len(reuse) == 0 && o.Reuse != "" {
		reuse = []string{o.Reuse}
	}
	var reuseNames []string
	for _, id := range reuse {
		name := Container{ID: id}.Short()
		for _, c := range listed {
			if c.ID == id {
				name = c.Short()
			}
		}
		reuseNames = append(reuseNames, name)
	}
	p.Actions = planActions(d.steps, p.Current, reuseNames, r.scale)
	// What --keep would prune once the current containers are stopped:
	// the rollout's own decision (pruneList), on today's containers, as
	// they will be: the retained ones a rollback restarts run again. A
	// scale prunes nothing.
	if err == nil && !r.scale {
		restarted := map[string]bool{}
		for _, id := range reuse[:min(len(reuse), startsOf(d.steps))] {
			restarted[id] = true
		}
		var after []Container
		for _, c := range listed {
			if !restarted[c.ID] {
				after = append(after, c)
			}
		}
		for _, c := range pruneList(after, containersOf(d.olds), halfMadeIDs(d.olds), "", o.Version, o.Keep) {
			p.Prune = append(p.Prune, c.Short())
		}
	}
	return p
}

// Finding is one thing `deployctl check` found that would make a rollout
// fail or drop requests, with how to fix it. Code is stable (scripts and
// tests read it, not the message).
type Finding struct {
	Code    string `json:"code"`
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

// Finding codes. A plan warning is the finding of the same code (the
// first group); the others are check's own.
const (
	FindingNotListed         = WarnNotListed
	FindingNoServerURL       = WarnNoServerURL
	FindingNoProbeOnCurrent  = WarnNoProbeOnCurrent
	FindingNoProbe           = WarnNoProbe
	FindingLeftOutOfRotation = WarnLeftOutOfRotation
	FindingAmbiguousNetwork  = WarnAmbiguousNetwork

	FindingSlowDrainProbe         = "slow-drain-probe"
	FindingNoServiceLabel         = "no-service-label"
	FindingLockHeld               = "lock-held"
	FindingTraefikTooOldForDocker = "traefik-too-old-for-docker"
	FindingSwarmNotRouted         = "swarm-not-routed"
	FindingSwarmSeveralServing    = "swarm-several-serving"
	// FindingPlanWarning is a plan warning whose code check has no fix for
	// (none today).
	FindingPlanWarning = "plan-warning"
)

// warningFixes are the fixes check gives for the plan's warnings, by code.
var warningFixes = map[string]string{
	WarnSwitchGradual:     "what the message names; meanwhile rollouts switch gradually (both versions answer for a moment)",
	WarnNotListed:         "check traefik.enable and the service labels; pass --network (or set the traefik.docker.network label) to the network Traefik uses",
	WarnNoServerURL:       "pass --network (or set the traefik.docker.network label) to the network Traefik uses, and attach the container to it",
	WarnNoProbeOnCurrent:  "nothing to do: containers deployctl creates have the probe, so later rollouts drain cleanly",
	WarnNoProbe:           "give the container a writable root filesystem (no --read-only)",
	WarnLeftOutOfRotation: "nothing to do: the next rollout stops it; or docker stop it now if it is left over",
}

// findingOf is check's finding for a plan warning: its code and message,
// with the fix for that code.
func findingOf(w Warning) Finding {
	if fix, ok := warningFixes[w.Code]; ok {
		return Finding{Code: w.Code, Problem: w.Message, Fix: fix}
	}
	return Finding{Code: FindingPlanWarning, Problem: w.Message, Fix: "see the message"}
}

// Check reports what would make a rollout of app fail or drop requests,
// for its current deployment: a dry run of redeploying the serving version,
// plus checks of the labels and networks.
func (e *Engine) Check(ctx context.Context, o Options) ([]Finding, error) {
	if sw, err := (&rollout{e: e, o: o}).swarmServices(ctx); err != nil {
		return nil, err
	} else if sw != nil {
		return e.swarmCheck(ctx, o.App, sw)
	}
	cs, err := e.Runtime.List(ctx, map[string]string{LabelApp: o.App})
	if err != nil {
		return nil, unreachable("Docker", err)
	}
	var current []Container
	for _, c := range cs {
		if c.Running() {
			current = append(current, c)
		}
	}
	if len(current) == 0 {
		return nil, usageError("no running container of app %s (deployctl status lists the apps)", o.App)
	}
	sort.Slice(current, func(i, j int) bool { return current[i].Created.After(current[j].Created) })
	newest := current[0]
	o.Image, o.Version, o.Force, o.forNext = imageRepo(newest), newest.Labels[LabelVersion], true, true
	// A Traefik that cannot talk to this Docker engine explains every
	// other finding (it lists nothing): it comes first.
	out := e.versionFindings(ctx)
	if o.Version == "" {
		return nil, usageError("container %s has no %s label", newest.Short(), LabelVersion)
	}
	p, err := e.Plan(ctx, o)
	if errors.Is(err, ErrNoProbe) {
		var de *Error
		errors.As(err, &de)
		return append(out, Finding{FindingNoProbe, de.Err.Error(), de.Hint}), nil
	}
	if err != nil {
		return nil, err
	}
	// What the plan warns about, by code: the same decisions the rollout
	// makes, so check and the rollout cannot disagree.
	for _, w := range p.Warnings {
		out = append(out, findingOf(w))
	}
	if hc := newest.Healthcheck; newest.Labels[LabelDrain] == "probe" && hc != nil && hc.Interval > 5*time.Second {
		out = append(out, Finding{FindingSlowDrainProbe, fmt.Sprintf("%s's drain probe runs every %s, so taking it out of Traefik will take about that long", newest.Short(), hc.Interval),
			"nothing now; the next rollout's container gets --drain-interval (default 1s)"})
	}
	ep, _ := e.Router.Endpoint(newest) // Network and Services even on an error
	if len(newest.Networks) > 1 && ep.Network == "" && o.Network == "" {
		out = append(out, Finding{FindingAmbiguousNetwork, fmt.Sprintf("%s is on several networks (%s) and nothing says which one Traefik uses: Traefik then picks one at random", newest.Short(), strings.Join(sortedKeys(newest.Networks), ", ")),
			"set the traefik.docker.network label (--label traefik.docker.network=NET) or Traefik's providers.docker.network"})
	}
	if len(ep.Services) == 0 {
		out = append(out, Finding{FindingNoServiceLabel, "the labels name no Traefik service: Traefik names the service after each container, so two versions would be two services behind one router",
			"add --label traefik.http.services.<app>.loadbalancer.server.port=<port>"})
	}
	if p.Lock != nil {
		out = append(out, Finding{FindingLockHeld, "the deploy lock is held by " + p.Lock.String(), "wait, or deployctl unlock --app " + o.App + " if that run is dead"})
	}
	return out, nil
}
