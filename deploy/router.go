package deploy

import (
	"context"
	"errors"
	"time"
)

// The router protocol (docs/design.md, "The router protocol"): what the
// engine asks of whatever routes requests to the app's containers. Every
// router observes (Observer) and says how it reaches a container
// (Router.Endpoint); what only some routers can do is a capability, an
// interface of its own that the engine looks for with a type assertion
// (as io.WriterTo is found on an io.Reader): Drainer, Propagator. A router
// without a capability gets the engine's fallback, never a branch on
// which router it is.

// Observer is the half of the router protocol every router has: its
// services and their servers, with their status.
type Observer interface {
	// Services lists all HTTP services that have servers.
	Services(ctx context.Context) ([]Service, error)
	// Service returns one service; ErrServiceNotFound when the router has
	// none of that name (for Traefik v1, when the backend has no servers
	// left).
	Service(ctx context.Context, name string) (Service, error)
}

// Router is what routes requests to the app's containers (Traefik's
// docker provider, implemented in traefikapi): it observes, and says how
// it reaches a container. Capabilities beyond that are Drainer and
// Propagator.
type Router interface {
	Observer
	// Name names the router in the engine's messages, e.g. "Traefik".
	Name() string
	// Endpoint says how the router reaches a container of c's
	// configuration: its labels and exposed ports (c.Ports, ascending),
	// not its addresses, so it also works for a container not started
	// yet. On an error (no port it could use), Network and Services are
	// still filled in.
	Endpoint(c Container) (Endpoint, error)
}

// Endpoint is how a router reaches a container: a scheme and a port on one
// of its networks. The engine makes the server URLs from it and the
// container's addresses (candidateURLs).
type Endpoint struct {
	Scheme string
	Port   int
	// Network is the network the container's configuration says the router
	// reaches it on; "" when it does not say (the engine then uses
	// --network, else any network the container is on).
	Network string
	// Services are the router's services the configuration names, as the
	// router lists them (e.g. web@docker), sorted; none when it names none.
	Services []string
}

// Drainer is a router that can take a server out of rotation while its
// container still runs, before it gets any signal, and put it back. Both
// return once the change is made, not once the router shows it: the engine
// waits for that by observing (or, when the router cannot be asked, for
// Propagator's bound). A router without it gets every old container
// stopped by its signal first (DrainSignal).
//
// Drain and Restore are only asked of containers that carry deployctl's
// drain-aware probe (LabelDrain), which is how Traefik's docker provider
// drains (through Docker's health); a router that drains through its own
// API ignores that.
type Drainer interface {
	Drain(ctx context.Context, c Container) error
	// Restore undoes Drain; the container may be stopped (it is then back
	// in rotation once it is started and healthy).
	Restore(ctx context.Context, c Container) error
	// Drained reports whether c was drained and not restored (for status:
	// a drained container still running was left by an interrupted run).
	Drained(ctx context.Context, c Container) (bool, error)
}

// Propagator is a router whose changes show in its routing within a known
// bound after the world changed (Traefik's providersThrottleDuration).
// While the router's API cannot be asked, the engine takes Docker's health,
// held for longer than that bound, as the router's answer (blind.go); a
// router without it is never assumed to have applied anything.
type Propagator interface {
	Propagation() time.Duration
}

// Switcher is a router that can move every new request from the app's old
// containers to its new ones at one instant, and back (docs/design.md,
// "Routing cutover"): the routers are labels of a route container, a
// container of the engine's own whose start or removal is one change of
// the router's configuration. The engine creates, starts and removes
// route containers; the router says what their labels and the new
// containers' are, and whether the routers it named route as wanted.
type Switcher interface {
	// PlanSwitch splits the app's routing, read from template (a container
	// that serves now, ep its endpoint) with labels (the rollout's
	// --label, which win over the template's), for the containers of
	// version. An error wrapping ErrNotAtomic says why the app cannot be
	// switched atomically; the rollout then switches gradually.
	PlanSwitch(ctx context.Context, template Container, labels map[string]string, ep Endpoint, version string) (SwitchPlan, error)
	// Routes reports whether every one of routers is enabled and routes to
	// a service that lists every one of urls, UP. With no urls: whether
	// none of routers is listed any more.
	Routes(ctx context.Context, routers, urls []string) (bool, error)
}

// SwitchPlan is the routing of an atomic switch to one version.
type SwitchPlan struct {
	// RemoveLabels are labels of the template, or of the rollout's
	// --label, the new containers do not get (the user's routers); Labels
	// are set on them (their service, under a name of their version).
	RemoveLabels []string
	Labels       map[string]string
	// Services are the router's services the new containers are in.
	Services []string
	// Lifted routes to the new version above the user's routers: starting
	// it is the switch. User routes to it under the user's router names
	// and priorities: the steady state once the old version is stopped.
	Lifted, User Route
}

// Route is a route container's labels and the routers they define, as the
// router lists them.
type Route struct {
	Labels  map[string]string
	Routers []string
}

// ErrNotAtomic is wrapped by Switcher.PlanSwitch's errors that mean "switch
// gradually".
var ErrNotAtomic = errors.New("cannot switch atomically")

// LiftedLeftError is Switcher.PlanSwitch's error when the only routers in
// the way of the lifted ones are lifted routers of the app itself, of
// other versions, that the router still lists: routes an interrupted
// rollout left, whose route container is gone or going while the router
// has yet to drop them. The engine waits for the router to drop them and
// plans again; if they stay, Err (wrapping ErrNotAtomic) says why the
// rollout switches gradually. The plan comes with it, whole: its
// user-level routes (a settle's, a switch back's) tie with nothing.
type LiftedLeftError struct {
	Routers []string
	Err     error
}

func (e *LiftedLeftError) Error() string { return e.Err.Error() }
func (e *LiftedLeftError) Unwrap() error { return e.Err }

// switcher is the router's Switcher capability, nil when it has none.
func (e *Engine) switcher() Switcher {
	s, _ := e.Router.(Switcher)
	return s
}

// drainer is the router's Drainer capability, nil when it has none.
func (e *Engine) drainer() Drainer {
	d, _ := e.Router.(Drainer)
	return d
}

// propagation is the router's propagation bound, ok false when it gives
// none.
func (e *Engine) propagation() (time.Duration, bool) {
	p, ok := e.Router.(Propagator)
	if !ok {
		return 0, false
	}
	return p.Propagation(), true
}

// routerName names the router in messages ("Traefik").
func (e *Engine) routerName() string { return e.Router.Name() }
