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
// the output of --dry-run.
type Plan struct {
	App       string       `json:"app"`
	Image     string       `json:"image"`
	Version   string       `json:"version"`
	WouldPull bool         `json:"would_pull,omitempty"`
	Services  []string     `json:"services"`
	Network   string       `json:"network,omitempty"`
	Port      int          `json:"port,omitempty"`
	Probe     bool         `json:"probe"` // the new container gets the drain-aware probe
	Current   []PlannedOld `json:"current"`
	Prune     []string     `json:"prune,omitempty"`
	Lock      *Holder      `json:"lock,omitempty"`
	Warnings  []string     `json:"warnings,omitempty"`
}

// PlannedOld is a current container and how it would be drained.
type PlannedOld struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	URL     string    `json:"url,omitempty"`
	Drain   DrainMode `json:"drain"`
}

// Plan works out what Rollout(o) would do and what it would warn about,
// without pulling, locking or changing anything. A rollout that would be
// refused returns its error, as Rollout would.
func (e *Engine) Plan(ctx context.Context, o Options) (*Plan, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o, _ = o.normalize()
	var warnings []string
	quiet := *e
	quiet.Reporter = ReporterFunc(func(ev Event) {
		if ev.Status == StatusWarn {
			warnings = append(warnings, ev.Message)
		}
	})
	r := &rollout{e: &quiet, o: o, operation: "rollout", dryRun: true}
	r.start = e.now()
	if err := r.plan(ctx); err != nil {
		return nil, err
	}
	p := &Plan{App: o.App, Image: o.Image, Version: o.Version, WouldPull: r.wouldPull, Services: r.services,
		Network: r.network, Probe: r.probe, Warnings: warnings}
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	if port, err := r.newPort(labels); err == nil {
		p.Port = port
	}
	for _, old := range r.olds {
		p.Current = append(p.Current, PlannedOld{Name: old.Short(), Version: old.Labels[LabelVersion], URL: old.url, Drain: old.drain})
	}
	if e.Journal != nil {
		if h, err := e.Journal.LockHolder(ctx, o.App); err == nil && h != nil {
			p.Lock = h
		}
	}
	// What --keep would prune once the current containers are stopped.
	cs, err := e.Runtime.List(ctx, map[string]string{LabelApp: o.App})
	if err == nil {
		var stopped []Container
		for _, c := range cs {
			if !c.Running() {
				stopped = append(stopped, c)
			}
		}
		sort.Slice(stopped, func(i, j int) bool { return lastServed(stopped[i]).After(lastServed(stopped[j])) })
		for i, c := range stopped {
			if i+len(r.olds) >= o.Keep {
				p.Prune = append(p.Prune, c.Short())
			}
		}
	}
	return p, nil
}

// Finding is one thing `deployctl check` found that would make a rollout
// fail or drop requests, with how to fix it. Code is stable (scripts and
// tests read it, not the message).
type Finding struct {
	Code    string `json:"code"`
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

// Finding codes.
const (
	FindingNotListed              = "not-listed-by-traefik"
	FindingNoProbeOnCurrent       = "current-without-drain-probe"
	FindingSlowDrainProbe         = "slow-drain-probe"
	FindingAmbiguousNetwork       = "ambiguous-network"
	FindingNoServiceLabel         = "no-service-label"
	FindingNoProbe                = "no-drain-probe"
	FindingLockHeld               = "lock-held"
	FindingPlanWarning            = "plan-warning"
	FindingTraefikTooOldForDocker = "traefik-too-old-for-docker"
)

// Check reports what would make a rollout of app fail or drop requests,
// for its current deployment: a dry run of redeploying the serving version,
// plus checks of the labels and networks.
func (e *Engine) Check(ctx context.Context, o Options) ([]Finding, error) {
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
	o.Image, o.Version, o.Force = imageRepo(newest), newest.Labels[LabelVersion], true
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
	for _, old := range p.Current {
		if old.URL == "" {
			out = append(out, Finding{FindingNotListed, fmt.Sprintf("Traefik does not list %s: the app is not served through Traefik, or deployctl looks on the wrong network", old.Name),
				"check traefik.enable and the service labels; pass --network (or set the traefik.docker.network label) to the network Traefik uses"})
		}
		if old.Drain == DrainSignal {
			out = append(out, Finding{FindingNoProbeOnCurrent, fmt.Sprintf("%s cannot be taken out of Traefik before it is stopped (it has no deployctl probe): the next rollout may fail some requests once", old.Name),
				"nothing to do: containers deployctl creates have the probe, so later rollouts drain cleanly"})
		}
	}
	if hc := newest.Healthcheck; newest.Labels[LabelDrain] == "probe" && hc != nil && hc.Interval > 5*time.Second {
		out = append(out, Finding{FindingSlowDrainProbe, fmt.Sprintf("%s's drain probe runs every %s, so taking it out of Traefik will take about that long", newest.Short(), hc.Interval),
			"nothing now; the next rollout's container gets --drain-interval (default 1s)"})
	}
	if len(newest.Networks) > 1 && newest.Labels[labelTraefikNetwork] == "" && o.Network == "" {
		out = append(out, Finding{FindingAmbiguousNetwork, fmt.Sprintf("%s is on several networks (%s) and nothing says which one Traefik uses: Traefik then picks one at random", newest.Short(), strings.Join(sortedKeys(newest.Networks), ", ")),
			"set the traefik.docker.network label (--label traefik.docker.network=NET) or Traefik's providers.docker.network"})
	}
	if len(v2ServiceNames(newest.Labels)) == 0 && newest.Labels[labelV1Backend] == "" {
		out = append(out, Finding{FindingNoServiceLabel, "the labels name no Traefik service: Traefik names the service after each container, so two versions would be two services behind one router",
			"add --label traefik.http.services.<app>.loadbalancer.server.port=<port>"})
	}
	if !p.Probe {
		out = append(out, Finding{FindingNoProbe, "the new container could not get deployctl's drain probe, so it would be stopped by signal on the next rollout",
			"give the container a writable root filesystem (no --read-only)"})
	}
	if p.Lock != nil {
		out = append(out, Finding{FindingLockHeld, "the deploy lock is held by " + p.Lock.String(), "wait, or deployctl unlock --app " + o.App + " if that run is dead"})
	}
	for _, w := range p.Warnings {
		if !strings.Contains(w, "not created by deployctl") && !strings.Contains(w, "Traefik does not list") && !strings.Contains(w, "drain probe") {
			out = append(out, Finding{FindingPlanWarning, w, "see the message"})
		}
	}
	return out, nil
}
