package deploy

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A rollout's plan is worked out in two halves (issue 11): rollout.plan
// gathers the facts (I/O: the image, the app's containers, the router's
// services), and the functions of this file decide from those facts and
// the options alone (no I/O): how each old container is drained, whether
// the new one gets the probe, the steps, what to warn about, and what
// --keep prunes. The dry run (Engine.Plan) and the rollout run the same
// functions, so --dry-run shows the plan the rollout executes.

// Warning is something the user should know about a rollout that goes on
// anyway. Code is stable (check, scripts and tests read it, not Message).
type Warning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func warningf(code, format string, args ...any) Warning {
	return Warning{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Warning codes, kebab-case. Those of the plan also appear in --dry-run's
// plan, and check turns them into findings of the same code; the others
// come during the run, on warning events only.
const (
	// WarnNotListed: Traefik lists no current container's URL in any
	// (or the --service) service: the app is not served through Traefik,
	// or deployctl looks on the wrong network.
	WarnNotListed = "not-listed-by-traefik"
	// WarnNoServerURL: a current container has no address on the network
	// Traefik reaches it on, so it cannot be looked up in Traefik at all.
	WarnNoServerURL = "no-server-url"
	// WarnLeftOutOfRotation: a current container has the probe but is out
	// of Traefik (drained or unhealthy), probably left by an interrupted
	// run; it is stopped with the other old containers.
	WarnLeftOutOfRotation = "left-out-of-rotation"
	// WarnHalfMade: a current container is the new container of a run
	// killed before Traefik routed to it (out of Traefik, newer than the
	// serving version); it is drained, stopped and removed.
	WarnHalfMade = "half-made-by-interrupted-run"
	// WarnNoProbeOnCurrent: a current container has no deployctl probe, so
	// it gets its stop signal before Traefik drops it.
	WarnNoProbeOnCurrent = "current-without-drain-probe"
	// WarnNoProbe: the new container cannot get the drain probe (a
	// read-only root filesystem): the next rollout stops it by signal.
	WarnNoProbe = "no-drain-probe"
	// WarnStaleLockBroken: the deploy lock of a run that is gone (expired,
	// or its process died) was broken.
	WarnStaleLockBroken = "stale-lock-broken"

	// WarnDockerCreate: Docker's own warnings on creating the container
	// (e.g. host port bindings that were not copied).
	WarnDockerCreate = "docker-create-warning"
	// WarnAmbiguousNetwork: the new container is on several networks and
	// nothing says which one Traefik uses.
	WarnAmbiguousNetwork = "ambiguous-network"
	// WarnInspectFailed: inspecting the new container failed while Traefik
	// already listed it; the rollout went on.
	WarnInspectFailed = "inspect-failed"
	// WarnOldGone: an old container was removed by someone else during
	// the rollout.
	WarnOldGone = "old-container-gone"
	// WarnTraefikBlind: Traefik's API stopped answering and the run went
	// on by Docker's health and Traefik's throttle (deploy/blind.go).
	WarnTraefikBlind = "traefik-api-blind"
	// WarnStopNotConfirmed: Traefik did not confirm that it dropped an old
	// container stopped by signal.
	WarnStopNotConfirmed = "stop-not-confirmed"
	// WarnWatchFailed: the new version failed within --watch; the old one
	// is put back.
	WarnWatchFailed = "watch-failed"
	// WarnPruneFailed: an old version could not be listed or removed by
	// --keep's pruning (the rollout itself succeeded).
	WarnPruneFailed = "prune-failed"
	// WarnInterrupted: a signal came after the cutover; the rollout was
	// finished, pruning may not have been.
	WarnInterrupted = "interrupted-after-cutover"
	// WarnHistoryNotWritten: the history record could not be written.
	WarnHistoryNotWritten = "history-not-written"
	// WarnTraefikInsecure: --traefik-insecure: the API's TLS certificate
	// is not verified (warned by the command, before the engine runs).
	WarnTraefikInsecure = "traefik-tls-unverified"
	// WarnCredentialsInClear: Traefik API credentials go over plain http
	// to a host that is not loopback (warned by the command).
	WarnCredentialsInClear = "traefik-credentials-in-clear"
	// WarnLockNotReleased: the deploy lock could not be released.
	WarnLockNotReleased = "lock-not-released"
)

// facts is what a rollout finds out before it changes anything: the I/O
// half of its plan. (The dry run adds the lock holder and the app's
// stopped containers; the rollout lists those when it prunes.)
type facts struct {
	image Image // the new version's image; zero in a dry run of one to pull
	// current are the app's running containers and those --select adopts,
	// oldest first.
	current []Container
	// services is the router's view: every service with its servers.
	services []Service
	// endpoint is the router's Router.Endpoint; noDrain: the router is
	// no Drainer, so every old container is stopped by signal first.
	endpoint endpointOf
	noDrain  bool
}

// decision is what a rollout decided from its facts and options: pure.
type decision struct {
	olds     []*oldContainer // with their URL and drain method
	template *Container      // the container whose configuration is copied
	services []string        // the router services the new container must join
	baseline map[string]bool // server URLs those services have now
	network  string          // the network the router reaches the app on, if known
	probe    bool            // the new container gets the drain-aware probe
	probeBin []byte          // its probe, when known now
	budget   Budget          // of the steps: currentBudget for one replica
	steps    []Step
	warnings []Warning
}

// refuseRedeploy refuses a version that already serves, without --force.
func refuseRedeploy(current []Container, o Options) error {
	if len(current) > 0 && !o.Force && allVersion(current, o.Version) {
		return usageError("version %s is already serving (%s); use --force to redeploy it with the same zero-downtime procedure", o.Version, names(current))
	}
	return nil
}

// decide works out the rollout from its facts: the old containers' URLs
// and drain methods, the router services, the template, the probe, the
// steps, and the warnings, in the order the user reads them. A rollout it
// refuses returns the error, with the warnings decided until then. A rollback (o.Reuse) decides its probe from
// the retained container instead (rollout.reuseProbe).
func decide(f facts, o Options, dryRun bool) (*decision, error) {
	d := &decision{}
	for _, c := range f.current {
		d.olds = append(d.olds, &oldContainer{Container: c})
	}
	d.route(f.services, f.endpoint, o)
	switch {
	case o.declared():
		// A declared service: its new containers are configured from the
		// declaration, whatever runs now.
		d.template = o.Target.templateOf()
	case len(d.olds) > 0:
		d.template = d.chooseTemplate()
	}
	d.leftovers()
	// The new container gets the probe unless it cannot run it; a reused
	// container has it or not already, and gets it again (its copy may be
	// one of an earlier deployctl).
	if o.Reuse != "" {
		d.probe = o.Drain != DrainSignal
	} else {
		probe, bin, w, err := decideProbe(o, d.template, f.image, dryRun)
		if err != nil {
			return d, err
		}
		d.probe, d.probeBin = probe, bin
		if w != nil {
			d.warnings = append(d.warnings, *w)
		}
	}
	modes, ws, err := drainModes(containersOf(d.olds), o, !f.noDrain)
	d.warnings = append(d.warnings, ws...)
	if err != nil {
		return d, err
	}
	for i, old := range d.olds {
		old.drain = modes[i]
	}
	d.budget, err = decideBudget(d.olds, o)
	if err != nil {
		return d, err
	}
	d.steps, err = PlanSteps(len(d.olds), d.budget)
	if err != nil {
		return d, err
	}
	return d, nil
}

// leftovers finds the containers an interrupted run left running out of
// Traefik: a container with the probe, not listed. One newer than a
// container Traefik routes to is the new container of a run killed
// before Traefik routed to it (a drained old container is older than what
// serves): half-made, it is drained, stopped and removed, not kept as a
// version. The others, unhealthy or still starting, are old containers
// left drained: stopped with the rest.
func (d *decision) leftovers() {
	var oldestServing time.Time
	for _, old := range d.olds {
		if old.url != "" && (oldestServing.IsZero() || old.Created.Before(oldestServing)) {
			oldestServing = old.Created
		}
	}
	for _, old := range d.olds {
		if old.url != "" || old.Labels[LabelDrain] != "probe" {
			continue
		}
		// Newer and not listed: healthy too. An atomic rollout's new
		// containers are in a service of their version that no router
		// uses until the switch, so one its killed run left is healthy
		// and out of Traefik (the SIGKILL soak: kept as a version).
		if !oldestServing.IsZero() && old.Created.After(oldestServing) {
			old.halfMade = true
			d.warn(WarnHalfMade, "container %s (%s) is running but out of Traefik and newer than the serving version: left half-made by an interrupted run, it will be drained, stopped and removed", old.Short(), old.Labels[LabelVersion])
			continue
		}
		if old.Health != "unhealthy" && old.Health != "starting" {
			continue
		}
		d.warn(WarnLeftOutOfRotation, "container %s is running but out of Traefik (drained, unhealthy or still starting), probably left by an interrupted run: it will be drained and stopped with the other old containers", old.Short())
	}
}

func (d *decision) warn(code, format string, args ...any) {
	d.warnings = append(d.warnings, warningf(code, format, args...))
}

// route looks up the old containers in the router's services: the
// services whose servers include their URLs are the ones the new container
// must join, and the network of those URLs the one the router reaches the
// app on. With no old container (a first deploy) nothing is known yet:
// the new container's registration finds it.
func (d *decision) route(all []Service, endpoint endpointOf, o Options) {
	if o.Service != "" {
		d.services = []string{o.Service}
	}
	d.network = o.Network
	if len(d.olds) == 0 {
		return
	}
	found := map[string]bool{}
	for _, old := range d.olds {
		urls, err := candidateURLs(endpoint, old.Container, o.Network)
		if err != nil {
			d.warn(WarnNoServerURL, "%v", err)
			continue
		}
		for _, svc := range all {
			if o.Service != "" && !sameService(svc.Name, o.Service) {
				continue
			}
			for netName, u := range urls {
				if _, ok := svc.Server(u); ok {
					old.url = u
					found[svc.Name] = true
					if d.network == "" {
						d.network = netName
					}
				}
			}
		}
		if old.url == "" {
			d.warn(WarnNotListed, "Traefik does not list container %s (looked for %s in %s): it is not being served through Traefik now", old.Short(), strings.Join(sortedValues(urls), ", "), serviceScope(o.Service))
		}
	}
	if o.Service == "" {
		d.services = sortedKeys(found)
	}
	d.baseline = map[string]bool{}
	for _, svc := range all {
		if slices.Contains(d.services, svc.Name) {
			for _, srv := range svc.Servers {
				d.baseline[normalizeURL(srv.URL)] = true
			}
		}
	}
}

// chooseTemplate picks the configuration to copy: the newest old container
// Traefik serves, since a newer one it does not (left by an interrupted
// run) may be broken; else the newest.
func (d *decision) chooseTemplate() *Container {
	for i := len(d.olds) - 1; i >= 0; i-- {
		if d.olds[i].url != "" {
			return &d.olds[i].Container
		}
	}
	return &d.olds[len(d.olds)-1].Container
}

// decideProbe decides whether the new container gets the drain-aware
// probe, and chooses the probe for the image's platform. A platform
// deployctl has no probe for is refused before anything changes: without
// the probe the next rollout could only stop this container before Traefik
// drops it. Only --drain=signal, which accepts that, goes on without it.
func decideProbe(o Options, template *Container, img Image, dryRun bool) (bool, []byte, *Warning, error) {
	if o.Drain == DrainSignal {
		return false, nil, nil, nil
	}
	if template != nil && template.ReadOnlyRootfs {
		const why = "the container has a read-only root filesystem"
		if o.Drain == DrainHealth {
			return false, nil, nil, usageError("--drain=health: the new container cannot get deployctl's drain probe: %s", why)
		}
		w := warningf(WarnNoProbe, "the new container cannot get deployctl's drain probe (%s): the next rollout will stop it by signal before Traefik drops it", why)
		return false, nil, &w, nil
	}
	if dryRun && img.OS == "" {
		// Not pulled yet: the rollout chooses once it knows the platform.
		return o.Probes != nil, nil, nil, nil
	}
	bin, err := selectProbe(o.Probes, "image "+o.ImageRef(), img)
	if err != nil {
		return false, nil, nil, err
	}
	return true, bin, nil, nil
}

// drainModes decides how each old container is taken out of Traefik: by
// its probe (health) when it has one and the router can drain (canDrain:
// it is a Drainer), else by its stop signal, which --drain=health and
// --watch refuse.
func drainModes(olds []Container, o Options, canDrain bool) ([]DrainMode, []Warning, error) {
	modes := make([]DrainMode, len(olds))
	var warnings []Warning
	for i, old := range olds {
		modes[i] = DrainSignal
		switch {
		case o.Drain == DrainSignal:
		case !canDrain:
			// Not a branch on the router: what a router without the
			// Drainer capability gets.
			if o.Drain == DrainHealth || o.Watch > 0 {
				return nil, nil, usageError("--drain=health and --watch need a router that can take a server out of rotation before it is stopped, and this one cannot: use --drain=signal")
			}
		case old.Labels[LabelDrain] == "probe" && !old.ReadOnlyRootfs:
			modes[i] = DrainHealth
		case o.Drain == DrainHealth:
			return nil, nil, usageError("--drain=health: container %s has no deployctl probe (it was not created by deployctl, or has a read-only root filesystem); use --drain=auto to stop it by signal once, after which containers made by deployctl drain cleanly", old.Short())
		default:
			warnings = append(warnings, warningf(WarnNoProbeOnCurrent, "container %s was not created by deployctl, so it cannot be taken out of Traefik before it is stopped: it gets its stop signal first, and requests Traefik sends it until Traefik notices may fail. Later rollouts drain cleanly.", old.Short()))
		}
	}
	if o.Switch != SwitchAtomic { // else after planSwitch, when it falls back to gradual
		if err := watchNeedsProbes(olds, modes, o); err != nil {
			return nil, nil, err
		}
	}
	return modes, warnings, nil
}

// watchNeedsProbes refuses --watch when the switch is gradual and an old
// container cannot be taken out of Traefik by its probe: the old version
// would have to stop to leave, and could not take over again. An atomic
// switch takes any old container out by routing, and back in.
func watchNeedsProbes(olds []Container, modes []DrainMode, o Options) error {
	if o.Watch <= 0 {
		return nil
	}
	for i, old := range olds {
		if modes[i] != DrainHealth {
			return usageError("--watch keeps the old version ready to take over, which, when the switch is gradual, needs deployctl's drain probe in it; container %s has none (it was not created by deployctl, or --drain=signal): roll out once without --watch", old.Short())
		}
	}
	return nil
}

// currentBudget is the budget the single-container engine keeps: one new
// container, started while every old one still serves (a surge of all of
// them), and no old one drained before it is routed to. Its plan is one
// step: start 1, then drain and stop every old container.
func currentBudget(olds int) Budget {
	return Budget{Replicas: 1, MaxSurge: max(olds, 1), MaxUnavailable: 0}
}

// defaultReplicas is --replicas when not given: the size the app was
// meant to have by the run that made its newest container (its
// deployctl.replicas label), at most as many as run now (but those an
// interrupted run left half-made); for containers without the label, as
// many as Traefik routes to now (when it lists none, as many as run); 1 on
// a first deploy. (Counting what Traefik routes to alone is not enough: an
// interrupted rollout leaves an old container that Traefik may still list
// for a moment after its drain began, beside the new one.)
func defaultReplicas(olds []*oldContainer) int {
	routed, kept := 0, 0
	var newest *oldContainer // the newest with a replicas label
	for _, old := range olds {
		if old.url != "" {
			routed++
		}
		if !old.halfMade {
			kept++
		}
		if _, err := strconv.Atoi(old.Labels[LabelReplicas]); err == nil && (newest == nil || old.Created.After(newest.Created)) {
			newest = old
		}
	}
	if newest != nil {
		// The size the newest run meant the app to have, but never more
		// than run now: an interrupted run leaves its old and its new
		// containers running side by side (which must not double the
		// app), and a scale-down keeps containers labelled with the size
		// they were made for.
		n, _ := strconv.Atoi(newest.Labels[LabelReplicas])
		return max(min(n, kept), 1)
	}
	// Containers made by deployctl before it recorded the size, or adopted
	// with --select: as many as Traefik routes to now, else as run.
	if routed == 0 {
		routed = kept
	}
	return max(routed, 1)
}

// decideBudget is the budget of the rollout's steps. One replica keeps
// the single-container engine's budget (start the new one, then drain
// every old one), so that an N=1 rollout is what it always was; more run
// within --max-surge and --max-unavailable, a rollback (o.Reuse) too: its
// steps restart retained containers before they create any
// (rollout.rollbackReplicas).
func decideBudget(olds []*oldContainer, o Options) (Budget, error) {
	n := o.Replicas
	if n == 0 {
		n = defaultReplicas(olds)
	}
	if n == 1 {
		return currentBudget(len(olds)), nil
	}
	return NewBudget(n, o.surge(), o.unavailable())
}

// pruneList decides which stopped containers of the app --keep removes.
// --keep counts versions, not containers: the stopped containers of one
// version (its replicas) are kept or removed together. listed are the
// app's containers by its label (running or not); olds the ones being
// replaced (stopped by this run, so their versions are the newest of the
// kept: only those among listed count, since a container --select adopted
// without the app's label is no rollback target); halfMade those of olds
// the run removes itself (never served: no version to keep); newID the new
// container ("" in a dry run) and newVersion its version. The versions
// that served most recently are the likeliest rollback targets: kept by
// when they last stopped, not when they were created. Removed always:
// stopped containers of the version being deployed (it serves: they are
// no way back; a rollback restarted the ones it needed), and containers
// never started (a run killed between creating and starting them; this
// run holds the lock, so no run is making them now: they never served).
// A container without a version label is a version of its own.
func pruneList(listed []Container, olds []Container, halfMade map[string]bool, newID, newVersion string, keep int) []Container {
	versionOf := func(c Container) string {
		if v := c.Labels[LabelVersion]; v != "" {
			return "v:" + v
		}
		return "id:" + c.ID
	}
	kept := map[string]bool{} // the versions of the old containers
	for _, c := range listed {
		if !halfMade[c.ID] && slices.ContainsFunc(olds, func(o Container) bool { return o.ID == c.ID }) {
			kept[versionOf(c)] = true
		}
	}
	var prune, neverStarted []Container
	byVersion := map[string][]Container{}
	var versions []string
	for _, c := range listed {
		isOld := slices.ContainsFunc(olds, func(o Container) bool { return o.ID == c.ID })
		v := versionOf(c)
		switch {
		case halfMade[c.ID], c.ID == newID, isOld:
		case c.State == "created":
			neverStarted = append(neverStarted, c)
		case c.Running():
		case newVersion != "" && v == "v:"+newVersion:
			prune = append(prune, c)
		case kept[v]:
			// A stopped replica of a version being stopped now: kept with it.
		default:
			if byVersion[v] == nil {
				versions = append(versions, v)
			}
			byVersion[v] = append(byVersion[v], c)
		}
	}
	lastOf := func(v string) time.Time {
		var last time.Time
		for _, c := range byVersion[v] {
			if t := lastServed(c); t.After(last) {
				last = t
			}
		}
		return last
	}
	sort.SliceStable(versions, func(i, j int) bool { return lastOf(versions[i]).After(lastOf(versions[j])) })
	keep = min(max(keep-len(kept), 0), len(versions))
	for _, v := range versions[keep:] {
		cs := byVersion[v]
		sort.SliceStable(cs, func(i, j int) bool { return lastServed(cs[i]).After(lastServed(cs[j])) })
		prune = append(prune, cs...)
	}
	return append(prune, neverStarted...)
}

// halfMadeIDs are the IDs of the olds an interrupted run left half-made.
func halfMadeIDs(olds []*oldContainer) map[string]bool {
	ids := map[string]bool{}
	for _, old := range olds {
		if old.halfMade {
			ids[old.ID] = true
		}
	}
	return ids
}
