package deploy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Swarm services (docs/design.md, "Swarm services"). When the engine is a
// Swarm manager and a service is the app, a rollout is a plan of its own:
// the new version is a second service with the old one's spec, the same
// router labels and the new image; once all its tasks run and the router
// lists them, the old service leaves the router by a service-label change
// (tasks keep running: Swarm changes service labels in place), and once the
// router has dropped its tasks and their requests had the drain timeout to
// finish, it is scaled to 0 and kept for rollback.

// Labels on Swarm services.
const (
	// LabelRouted is "false" on a service deployctl took out of the
	// router (traefik.enable=false); LabelRoutedWas holds the value its
	// traefik.enable label had before ("" when it had none).
	LabelRouted    = "deployctl.routed"
	LabelRoutedWas = "deployctl.traefik-enable-was"
	// LabelReplacedBy names the service that replaced a retained one: a
	// rollback goes back to the service the serving one replaced.
	LabelReplacedBy = "deployctl.replaced-by"
)

const labelTraefikEnable = "traefik.enable"

// SwarmService is what the engine knows of a Swarm service.
type SwarmService struct {
	ID       string
	Name     string
	Image    string // the task template's image reference
	Replicas int    // -1: global mode
	Labels   map[string]string
	Created  time.Time
}

// Routed reports whether deployctl has not taken the service out of the
// router.
func (s SwarmService) Routed() bool { return s.Labels[LabelRouted] != "false" }

// Version is the version deployctl recorded on the service, else the tag
// of its image.
func (s SwarmService) Version() string {
	if v := s.Labels[LabelVersion]; v != "" {
		return v
	}
	ref, _, _ := strings.Cut(s.Image, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return ""
}

// Task is one task of a Swarm service.
type Task struct {
	ID           string
	Slot         int
	Node         string // the node's hostname, else its ID
	State        string // Swarm's task state: new, pending, assigned, ..., running, failed, rejected, shutdown, ...
	DesiredState string
	// Err is Swarm's error for the task (rejected, failed); Message its
	// last status message.
	Err     string
	Message string
	// Addrs maps the names of the task's networks onto its IP there.
	Addrs map[string]string
}

// ServiceRuntime is a runtime capability: an engine that runs Swarm
// services (a Swarm manager). The engine looks for it with a type
// assertion, as for the router's capabilities.
type ServiceRuntime interface {
	// SwarmRole is "manager", "worker", or "" when the engine is not in
	// an active swarm.
	SwarmRole(ctx context.Context) (string, error)
	// AppServices lists the services named app or labelled LabelApp=app.
	AppServices(ctx context.Context, app string) ([]SwarmService, error)
	// CloneService creates a service of from's spec with another name,
	// image and number of replicas, labels set on top of from's (a ""
	// value removes the label).
	CloneService(ctx context.Context, from SwarmService, name, image string, replicas int, labels map[string]string) (SwarmService, error)
	// SetServiceLabels changes service labels (a "" value removes one);
	// Swarm keeps the tasks running.
	SetServiceLabels(ctx context.Context, id string, labels map[string]string) error
	// ScaleService sets the number of replicas.
	ScaleService(ctx context.Context, id string, replicas int) error
	RemoveService(ctx context.Context, id string) error
	// ServiceTasks lists the service's tasks whose desired state is
	// running, and those that failed or were rejected most recently.
	ServiceTasks(ctx context.Context, id string) ([]Task, error)
}

// ServiceRouter is a router capability: it routes to Swarm services
// (Traefik's swarm provider) and says how, from a service's labels.
type ServiceRouter interface {
	ServiceEndpoint(ctx context.Context, labels map[string]string) (Endpoint, error)
}

// swarmApp is an app that is a Swarm service: the engine's runtime as a
// ServiceRuntime, and the app's services.
type swarmApp struct {
	sr   ServiceRuntime
	svcs []SwarmService
	// For the history record: the version that served and its replicas,
	// and the new version's.
	from                   string
	fromReplicas, replicas int
}

// swarmServices finds whether the rollout is of a Swarm service: the
// engine is a Swarm manager and a service is the app. It returns nil
// otherwise.
func (r *rollout) swarmServices(ctx context.Context) (*swarmApp, error) {
	sr, ok := r.e.Runtime.(ServiceRuntime)
	if !ok {
		return nil, nil
	}
	role, err := sr.SwarmRole(ctx)
	if err != nil || role != "manager" {
		return nil, unreachable("Docker", err)
	}
	svcs, err := sr.AppServices(ctx, r.o.App)
	if err != nil || len(svcs) == 0 {
		return nil, unreachable("Docker", err)
	}
	return &swarmApp{sr: sr, svcs: svcs}, nil
}

// swarmRun is one Swarm rollout.
type swarmRun struct {
	r      *rollout
	sr     ServiceRuntime
	rt     ServiceRouter
	old    SwarmService
	newSvc SwarmService
	made   bool // newSvc was created by this run
	ep     Endpoint
	n      int
	// revive: the new version is a retained service scaled back up (a
	// rollback), not a new one; past are its tasks from before.
	revive bool
	past   map[string]bool
	// out: the old service was taken out of the router.
	out bool
	// phase is the phase being run.
	phase Phase
}

func (s *swarmRun) begin(p Phase, msg string) {
	s.phase = p
	s.r.begin(p, msg)
}

// runSwarm rolls the app's serving Swarm service to the new version.
func (r *rollout) runSwarm(ctx context.Context) (*Result, error) {
	o, sr := r.o, r.swarm.sr
	rt, ok := r.e.Router.(ServiceRouter)
	if !ok {
		return nil, r.fail(ctx, PhasePlan, usageError("%s cannot route to Swarm services", r.e.routerName()))
	}
	svcs, err := r.swarmLock(ctx)
	if err != nil {
		return nil, r.fail(ctx, PhasePlan, err)
	}
	old, err := servingService(o.App, svcs)
	if err != nil {
		return nil, r.fail(ctx, PhasePlan, err)
	}
	s := &swarmRun{r: r, sr: sr, rt: rt, old: old, n: old.Replicas, phase: PhasePlan}
	if o.Replicas > 0 {
		s.n = o.Replicas
	}
	name := o.App + "-" + nameVersion(o.Version)
	switch {
	case !o.Force && s.old.Version() == o.Version:
		return nil, r.fail(ctx, PhasePlan, usageError("version %s is already serving (service %s); use --force to redeploy it", o.Version, s.old.Name))
	case name == s.old.Name:
		return nil, r.fail(ctx, PhasePlan, usageError("version %s is already serving as service %s: redeploying it under the same name is not supported yet; roll out another version, or roll back", o.Version, s.old.Name))
	}
	if err := s.endpoint(ctx); err != nil {
		return nil, r.fail(ctx, PhasePlan, err)
	}
	ep := s.ep
	r.swarm.from, r.swarm.fromReplicas, r.swarm.replicas = s.old.Version(), s.old.Replicas, s.n
	r.info(PhasePlan, Event{Message: fmt.Sprintf("Swarm rollout: service %s (%d replicas, %s) -> service %s (%d replicas, %s), through %s",
		s.old.Name, s.old.Replicas, s.old.Image, name, s.n, o.ImageRef(), strings.Join(ep.Services, ", "))})
	for _, x := range svcs {
		if x.Name == name && x.ID != s.old.ID {
			// A version deployed before and retained: made afresh from
			// the serving spec.
			if err := sr.RemoveService(ctx, x.ID); err != nil {
				return nil, r.fail(ctx, PhasePlan, err)
			}
		}
	}
	r.done(PhasePlan, Event{})

	res, err := s.run(ctx, name)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return res, nil
}

// rollbackSwarm rolls the app's serving Swarm service back to a retained
// one: the service of --to's version, else the one the serving service
// replaced, else the newest retained one. It is scaled back up and put
// back into the router the way a rollout's new service is made and
// routed.
func (r *rollout) rollbackSwarm(ctx context.Context, sw *swarmApp) (_ *RollbackPlan, _ *Result, err error) {
	defer func() { r.finish(ctx, err) }()
	r.swarm = sw
	o := r.o
	r.begin(PhasePlan, "")
	rt, ok := r.e.Router.(ServiceRouter)
	if !ok {
		return nil, nil, r.fail(ctx, PhasePlan, usageError("%s cannot route to Swarm services", r.e.routerName()))
	}
	if sw.svcs, err = r.swarmLock(ctx); err != nil {
		return nil, nil, r.fail(ctx, PhasePlan, err)
	}
	old, err := servingService(o.App, sw.svcs)
	if err != nil {
		return nil, nil, r.fail(ctx, PhasePlan, err)
	}
	var idle []SwarmService
	for _, x := range sw.svcs {
		if x.Replicas == 0 && x.ID != old.ID && (o.Version == "" || x.Version() == o.Version) {
			idle = append(idle, x)
		}
	}
	slices.SortStableFunc(idle, func(a, b SwarmService) int { return b.Created.Compare(a.Created) })
	if len(idle) == 0 {
		if o.Version != "" {
			return nil, nil, r.fail(ctx, PhasePlan, usageError("no retained service of %s runs version %s (retained: %s)", o.App, o.Version, serviceNames(retained(sw.svcs, old))))
		}
		return nil, nil, r.fail(ctx, PhasePlan, usageError("no retained service of %s to roll back to: only %s, which serves", o.App, old.Name))
	}
	target, reason := idle[0], "the newest retained service"
	if o.Version != "" {
		reason = "--to"
	} else {
		for _, x := range idle {
			if x.Labels[LabelReplacedBy] == old.Name {
				target, reason = x, "the service "+old.Name+" replaced"
				break
			}
		}
	}
	p := &RollbackPlan{App: o.App, From: old.Version(), To: target.Version(), Reuse: target.Name, Image: target.Labels[LabelImage], Reason: reason}
	r.o.Version, r.o.Image = target.Version(), target.Labels[LabelImage]
	s := &swarmRun{r: r, sr: sw.sr, rt: rt, old: old, newSvc: target, revive: true, n: old.Replicas, phase: PhasePlan}
	if o.Replicas > 0 {
		s.n = o.Replicas
	}
	if err := s.endpoint(ctx); err != nil {
		return p, nil, r.fail(ctx, PhasePlan, err)
	}
	sw.from, sw.fromReplicas, sw.replicas = old.Version(), old.Replicas, s.n
	r.info(PhasePlan, Event{Message: fmt.Sprintf("Swarm rollback of %s from %s to %s (%s): service %s back to %d replicas, then service %s out of %s",
		o.App, orNone(p.From), p.To, reason, target.Name, s.n, old.Name, r.e.routerName())})
	r.done(PhasePlan, Event{})
	res, err := s.run(ctx, target.Name)
	if err != nil {
		return p, nil, s.fail(ctx, err)
	}
	return p, res, nil
}

func retained(svcs []SwarmService, serving SwarmService) []SwarmService {
	var out []SwarmService
	for _, x := range svcs {
		if x.ID != serving.ID {
			out = append(out, x)
		}
	}
	return out
}

// swarmLock takes the app's deploy lock and lists its services again,
// under the lock: what another run held the lock for has settled.
func (r *rollout) swarmLock(ctx context.Context) ([]SwarmService, error) {
	if err := r.lock(ctx, r.o.ImageRef()); err != nil {
		return nil, err
	}
	svcs, err := r.swarm.sr.AppServices(ctx, r.o.App)
	if err != nil {
		return nil, unreachable("Docker", err)
	}
	return svcs, nil
}

// servingService is the one service of app that serves: replicas above 0
// and not taken out of the router by deployctl.
func servingService(app string, svcs []SwarmService) (SwarmService, error) {
	var serving []SwarmService
	for _, s := range svcs {
		if s.Replicas != 0 && s.Routed() {
			serving = append(serving, s)
		}
	}
	switch {
	case len(serving) == 0:
		return SwarmService{}, usageError("no service of %s serves (found %s, none with replicas and routed)", app, serviceNames(svcs))
	case len(serving) > 1:
		return SwarmService{}, usageError("several services of %s serve: %s; deployctl rolls one service at a time", app, serviceNames(serving))
	case serving[0].Replicas < 0:
		return SwarmService{}, usageError("service %s runs in global mode: not supported yet (one task per node cannot run twice)", serving[0].Name)
	}
	return serving[0], nil
}

// endpoint is how the router reaches the old service's tasks, from its
// labels.
func (s *swarmRun) endpoint(ctx context.Context) error {
	ep, err := s.rt.ServiceEndpoint(ctx, s.old.Labels)
	if err != nil {
		return usageError("service %s: %v", s.old.Name, err)
	}
	if len(ep.Services) == 0 {
		return usageError("service %s names no router service (traefik.http.services.<name>.loadbalancer.server.port): add one, the swarm provider needs it", s.old.Name)
	}
	s.ep = ep
	return nil
}

func (s *swarmRun) run(ctx context.Context, name string) (*Result, error) {
	r, o := s.r, s.r.o
	if s.revive {
		// A rollback: the retained service back into the router, and
		// scaled up.
		s.begin(PhaseCreate, fmt.Sprintf("scaling service %s back to %d", name, s.n))
		// Its tasks from before it was scaled to 0 are history.
		s.past = map[string]bool{}
		if tasks, err := s.sr.ServiceTasks(ctx, s.newSvc.ID); err == nil {
			for _, t := range tasks {
				s.past[t.ID] = true
			}
		} else {
			return nil, err
		}
		if err := s.sr.SetServiceLabels(ctx, s.newSvc.ID, map[string]string{
			labelTraefikEnable: s.newSvc.Labels[LabelRoutedWas], LabelRouted: "", LabelRoutedWas: "", LabelReplacedBy: "",
		}); err != nil {
			return nil, err
		}
		s.made = true
		if err := s.sr.ScaleService(ctx, s.newSvc.ID, s.n); err != nil {
			return nil, err
		}
		r.done(PhaseCreate, Event{Message: "service " + name})
	} else {
		s.begin(PhaseCreate, "service "+name)
		labels := maps.Clone(o.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelApp] = o.App
		labels[LabelVersion] = o.Version
		labels[LabelImage] = o.Image
		labels[LabelRouted] = ""
		labels[LabelRoutedWas] = ""
		labels[LabelReplacedBy] = ""
		n, err := s.sr.CloneService(ctx, s.old, name, o.ImageRef(), s.n, labels)
		if err != nil {
			return nil, err
		}
		s.newSvc, s.made = n, true
		r.done(PhaseCreate, Event{Message: "service " + name})
	}

	s.begin(PhaseHealthy, fmt.Sprintf("waiting for %d tasks of %s to run", s.n, name))
	tasks, err := s.waitTasks(ctx)
	if err != nil {
		return nil, err
	}
	r.done(PhaseHealthy, Event{Message: fmt.Sprintf("%d tasks running (%s)", len(tasks), taskNodes(tasks))})

	s.begin(PhaseRegister, "waiting for "+r.e.routerName()+" to list the new tasks")
	regStart := r.e.now()
	if err := s.waitRouter(ctx, tasks, true); err != nil {
		return nil, err
	}
	took := r.e.now().Sub(regStart)
	r.done(PhaseRegister, Event{Message: fmt.Sprintf("%s lists the %d new tasks (after %v: its swarm poll period is at least that)", r.e.routerName(), len(tasks), took.Round(100*time.Millisecond))})

	s.begin(PhaseDeregister, "taking service "+s.old.Name+" out of "+r.e.routerName())
	oldTasks, err := s.sr.ServiceTasks(ctx, s.old.ID)
	if err != nil {
		return nil, err
	}
	oldTasks = runningTasks(oldTasks)
	if err := s.sr.SetServiceLabels(ctx, s.old.ID, map[string]string{
		labelTraefikEnable: "false", LabelRouted: "false", LabelRoutedWas: s.old.Labels[labelTraefikEnable], LabelReplacedBy: s.newSvc.Name,
	}); err != nil {
		return nil, err
	}
	s.out = true
	if err := s.waitRouter(ctx, oldTasks, false); err != nil {
		return nil, err
	}
	r.done(PhaseDeregister, Event{Message: fmt.Sprintf("%s no longer lists the %d tasks of %s", r.e.routerName(), len(oldTasks), s.old.Name)})

	// Requests Traefik sent just before it dropped the old tasks: the
	// drain grace, as for containers. (Swarm adds 2 s between scaling down
	// and the stop signal, and the stop grace period after it.) Streams
	// that outlive that are not counted yet: no probe runs in Swarm tasks.
	if d := o.DrainGrace; d > 0 {
		s.begin(PhaseDrain, fmt.Sprintf("%v for requests in flight on %s", d, s.old.Name))
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(d):
		}
		r.done(PhaseDrain, Event{})
	}
	s.begin(PhaseStop, "scaling "+s.old.Name+" to 0 (kept for rollback)")
	if err := s.sr.ScaleService(ctx, s.old.ID, 0); err != nil {
		return nil, err
	}
	r.done(PhaseStop, Event{})
	s.prune(ctx)

	res := &Result{App: o.App, Image: o.ImageRef(), Version: o.Version, Service: s.ep.Services,
		New:   ContainerRef{ID: s.newSvc.ID, Name: s.newSvc.Name, Version: o.Version},
		Old:   []OldRef{{ContainerRef: ContainerRef{ID: s.old.ID, Name: s.old.Name, Version: s.old.Version()}}},
		Total: Duration(r.e.now().Sub(r.start)), Phases: r.phases, Switch: SwitchGradual,
		Swarm: &SwarmResult{Service: s.newSvc.Name, Tasks: len(tasks), Old: s.old.Name}}
	r.e.emit(Event{Phase: PhaseDone, Status: StatusDone, Message: fmt.Sprintf("%s serves %s (Swarm service %s, %d tasks)", o.App, o.Version, s.newSvc.Name, len(tasks)), Elapsed: time.Duration(res.Total)})
	return res, nil
}

// waitTasks waits until the new service has n running tasks; a rejected
// or failed task, or the health timeout, ends the wait with what Swarm
// said.
func (s *swarmRun) waitTasks(ctx context.Context) ([]Task, error) {
	r := s.r
	timeout := r.o.HealthTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	var tasks, running []Task
	err := r.poll(ctx, timeout, func() (bool, error) {
		var err error
		if tasks, err = s.sr.ServiceTasks(ctx, s.newSvc.ID); err != nil {
			return false, err
		}
		if running = runningTasks(tasks); len(running) >= s.n {
			return true, nil
		}
		for _, t := range tasks {
			if s.past[t.ID] {
				continue
			}
			switch t.State {
			case "rejected", "failed":
				return false, fmt.Errorf("task %s.%d of %s on %s %s: %s", s.newSvc.Name, t.Slot, r.o.ImageRef(), t.Node, t.State, cmp.Or(t.Err, t.Message))
			case "complete", "shutdown", "orphaned", "remove":
				// Ended before the service had all its tasks: Swarm
				// shuts down a task whose healthcheck fails (and starts
				// another, which fails the same way).
				return false, fmt.Errorf("task %s.%d of %s on %s ended (%s: %s) before the service ran: a task whose healthcheck fails is shut down by Swarm; the new version did not turn healthy",
					s.newSvc.Name, t.Slot, r.o.ImageRef(), t.Node, t.State, cmp.Or(t.Err, t.Message))
			}
		}
		return false, nil
	})
	if isTimeout(err) {
		return nil, fmt.Errorf("%d of %d tasks of %s running after %v: %s", len(running), s.n, s.newSvc.Name, timeout, describeTasks(tasks))
	}
	if err != nil {
		return nil, err
	}
	return running, nil
}

// waitRouter waits until the router lists every one of tasks (in) or
// none of them (out) in each of the services the labels name.
func (s *swarmRun) waitRouter(ctx context.Context, tasks []Task, in bool) error {
	r := s.r
	timeout := r.o.RegisterTimeout
	if !in {
		timeout = r.o.DeregisterTimeout
	}
	timeout = max(timeout, minSwarmRouterWait)
	var missing string
	err := r.poll(ctx, timeout, func() (ok bool, err error) {
		ok, missing, err = s.routerHas(ctx, tasks, in)
		return ok, err
	})
	switch {
	case isTimeout(err) && in:
		return fmt.Errorf("%s did not list %s within %v", r.e.routerName(), missing, timeout)
	case isTimeout(err):
		return fmt.Errorf("%s still lists %s after %v", r.e.routerName(), missing, timeout)
	}
	return err
}

func (s *swarmRun) routerHas(ctx context.Context, tasks []Task, in bool) (bool, string, error) {
	for _, name := range s.ep.Services {
		svc, err := s.r.e.Router.Service(ctx, name)
		if errors.Is(err, ErrServiceNotFound) {
			if in {
				return false, "service " + name, nil
			}
			continue
		} else if err != nil {
			return false, "", err
		}
		for _, t := range tasks {
			listed := false
			for _, u := range s.taskURLs(t) {
				if st, ok := svc.Server(u); ok && (!in || st.Status == "UP") {
					listed = true
				}
			}
			if listed != in {
				return false, fmt.Sprintf("task %s on %s (%s) in %s", t.ID, t.Node, strings.Join(s.taskURLs(t), ", "), name), nil
			}
		}
	}
	return true, "", nil
}

// taskURLs are the URLs the router may reach the task at: on the
// endpoint's network if the labels name one, else on each of its networks.
func (s *swarmRun) taskURLs(t Task) []string {
	var urls []string
	for _, netw := range slices.Sorted(maps.Keys(t.Addrs)) {
		if s.ep.Network != "" && netw != s.ep.Network {
			continue
		}
		urls = append(urls, s.ep.Scheme+"://"+t.Addrs[netw]+":"+strconv.Itoa(s.ep.Port))
	}
	return urls
}

// fail undoes the run: before the old service left the router, the new
// one is removed; after, the old one is put back and confirmed first.
func (s *swarmRun) fail(ctx context.Context, err error) error {
	r := s.r
	de := r.classify(ctx, s.phase, err)
	r.e.emit(Event{Phase: de.Phase, Status: StatusFail, Message: de.Err.Error(), Elapsed: r.e.now().Sub(r.phaseStart)})
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	state := fmt.Sprintf("service %s still serves, unchanged", s.old.Name)
	if s.out {
		r.begin(PhaseRevert, "putting service "+s.old.Name+" back into "+r.e.routerName())
		if rerr := s.sr.SetServiceLabels(cctx, s.old.ID, map[string]string{
			labelTraefikEnable: s.old.Labels[labelTraefikEnable], LabelRouted: "", LabelRoutedWas: "", LabelReplacedBy: "",
		}); rerr != nil {
			de.Kind, de.State = KindNeedsHuman, fmt.Sprintf("service %s is out of %s and could not be put back (%v): set its service label traefik.enable back to %q (docker service update)", s.old.Name, r.e.routerName(), rerr, s.old.Labels[labelTraefikEnable])
			return de
		}
		tasks, terr := s.sr.ServiceTasks(cctx, s.old.ID)
		if terr == nil {
			terr = s.waitRouter(cctx, runningTasks(tasks), true)
		}
		if terr != nil {
			de.Kind, de.State = KindNeedsHuman, fmt.Sprintf("service %s was put back, but %s did not list it again (%v); service %s is kept", s.old.Name, r.e.routerName(), terr, s.newSvc.Name)
			return de
		}
		r.done(PhaseRevert, Event{})
		state = fmt.Sprintf("service %s serves again", s.old.Name)
	}
	if s.made && s.revive {
		// The retained service goes back to what it was: out of the
		// router, at 0.
		rerr := s.sr.SetServiceLabels(cctx, s.newSvc.ID, map[string]string{
			labelTraefikEnable: "false", LabelRouted: "false", LabelRoutedWas: s.newSvc.Labels[LabelRoutedWas], LabelReplacedBy: s.newSvc.Labels[LabelReplacedBy],
		})
		if rerr == nil {
			rerr = s.sr.ScaleService(cctx, s.newSvc.ID, 0)
		}
		if rerr != nil {
			state += fmt.Sprintf("; service %s could not be scaled back to 0 (%v): docker service scale %s=0", s.newSvc.Name, rerr, s.newSvc.Name)
		} else {
			state += fmt.Sprintf("; service %s is retained again, at 0", s.newSvc.Name)
		}
	} else if s.made {
		if rerr := s.sr.RemoveService(cctx, s.newSvc.ID); rerr != nil {
			state += fmt.Sprintf("; service %s could not be removed (%v): docker service rm %s", s.newSvc.Name, rerr, s.newSvc.Name)
		} else {
			state += fmt.Sprintf("; service %s was removed", s.newSvc.Name)
		}
	}
	de.State = state
	return de
}

// prune removes the app's services at 0 replicas beyond Keep, oldest
// first; never the user's own service (named app), kept as the origin.
func (s *swarmRun) prune(ctx context.Context) {
	r := s.r
	svcs, err := s.sr.AppServices(ctx, r.o.App)
	if err != nil {
		return
	}
	var idle []SwarmService
	for _, x := range svcs {
		if x.Replicas == 0 && x.ID != s.old.ID && x.Name != r.o.App && x.Labels[LabelApp] == r.o.App {
			idle = append(idle, x)
		}
	}
	slices.SortFunc(idle, func(a, b SwarmService) int { return b.Created.Compare(a.Created) })
	keep := max(r.o.Keep-1, 0) // the old service is kept too
	for _, x := range idle[min(keep, len(idle)):] {
		if err := s.sr.RemoveService(ctx, x.ID); err == nil {
			r.info(PhasePrune, Event{Message: "removed service " + x.Name})
		}
	}
}

func runningTasks(tasks []Task) []Task {
	var out []Task
	for _, t := range tasks {
		if t.State == "running" && t.DesiredState == "running" {
			out = append(out, t)
		}
	}
	return out
}

func taskNodes(tasks []Task) string {
	count := map[string]int{}
	for _, t := range tasks {
		count[t.Node]++
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(count)) {
		parts = append(parts, fmt.Sprintf("%d on %s", count[n], n))
	}
	return strings.Join(parts, ", ")
}

func describeTasks(tasks []Task) string {
	var parts []string
	for _, t := range tasks {
		d := fmt.Sprintf("task %d on %s %s", t.Slot, cmp.Or(t.Node, "no node"), t.State)
		if m := cmp.Or(t.Err, t.Message); m != "" {
			d += " (" + m + ")"
		}
		parts = append(parts, d)
	}
	if len(parts) == 0 {
		return "no task yet"
	}
	return strings.Join(parts, "; ")
}

func serviceNames(svcs []SwarmService) string {
	var names []string
	for _, s := range svcs {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

// minSwarmRouterWait bounds the waits for the router from below: Traefik's
// swarm provider polls, every 15 s by default, so a wait shorter than two
// periods could give up on a change about to show.
var minSwarmRouterWait = 45 * time.Second

// nameVersion is version as part of a Swarm service name: letters and
// digits kept, every other run of characters one '-', at most 40
// characters (a service name has at most 63).
func nameVersion(version string) string {
	var b strings.Builder
	dash := false
	for _, c := range version {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	n := strings.Trim(b.String(), "-")
	if len(n) > 40 {
		n = strings.Trim(n[:40], "-")
	}
	return n
}

// swarmCheck is check for an app that is a Swarm service: Traefik and
// Docker's versions, one serving service, a router service in its labels,
// and its running tasks listed UP by the router, all read, nothing changed.
// Traefik's poll period cannot be read from its API: a rollout measures it
// (its register phase says how long Traefik took).
func (e *Engine) swarmCheck(ctx context.Context, app string, sw *swarmApp) ([]Finding, error) {
	out := e.versionFindings(ctx)
	if j := e.Journal; j != nil {
		if h, err := j.LockHolder(ctx, app); err == nil && h != nil {
			out = append(out, Finding{FindingLockHeld, fmt.Sprintf("the deploy lock of %s is held by %s", app, h), "wait for that run; if it was killed: deployctl unlock --app " + app})
		}
	}
	old, err := servingService(app, sw.svcs)
	var de *Error
	if errors.As(err, &de) && strings.HasPrefix(de.Err.Error(), "several services") {
		return append(out, Finding{FindingSwarmSeveralServing, de.Err.Error(), "scale all but one to 0 (docker service scale NAME=0), after a docker stack deploy typically the one deployctl made"}), nil
	}
	if err != nil {
		return nil, err
	}
	rt, ok := e.Router.(ServiceRouter)
	if !ok {
		return nil, usageError("%s cannot route to Swarm services", e.routerName())
	}
	s := &swarmRun{rt: rt, old: old}
	if err := s.endpoint(ctx); err != nil {
		return append(out, Finding{FindingNoServiceLabel, err.Error(), "add the service label traefik.http.services.<name>.loadbalancer.server.port=<port>"}), nil
	}
	tasks, err := sw.sr.ServiceTasks(ctx, old.ID)
	if err != nil {
		return nil, unreachable("Docker", err)
	}
	running := runningTasks(tasks)
	r := &rollout{e: e, o: Options{}}
	s.r = r
	ok, missing, err := s.routerHas(ctx, running, true)
	if err != nil {
		return nil, unreachable(e.routerName(), err)
	}
	if !ok {
		out = append(out, Finding{FindingSwarmNotRouted, fmt.Sprintf("%s does not list %s of service %s: a rollout would wait for it and fail", e.routerName(), missing, old.Name),
			"check the service's traefik.enable and port labels, Traefik's --providers.swarm (v2: --providers.docker.swarmMode) and that Traefik is on the service's network (traefik.swarm.network)"})
	}
	return out, nil
}
