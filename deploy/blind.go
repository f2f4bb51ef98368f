package deploy

import (
	"context"
	"errors"
	"time"
)

// When Traefik's API stops answering in the middle of a rollout, Traefik
// itself usually still routes: it watches Docker's events and applies a
// container's health change within its providersThrottleDuration. While
// the API cannot be asked, Docker's health stands in for Traefik's answer:
// a container Docker has reported unhealthy (or that has stopped) for
// longer than that bound is one Traefik has dropped; a running container
// reported healthy for that long is one Traefik routes to (if its labels
// put it in the service, which deployctl has seen Traefik confirm before).

// blindMargin is added to the router's propagation bound (Propagator:
// Traefik's throttle): Traefik's processing of the event and the poll that
// noticed Docker's change.
const blindMargin = 500 * time.Millisecond

// healthWitness decides from Docker's health whether Traefik has had time to
// apply a change to containers ids.
type healthWitness struct {
	r     *rollout
	ids   []string
	want  func(Container) bool // the state whose effect on Traefik is awaited
	since time.Time            // when every container was first seen in it
}

// dropped: each container stopped, gone, or with a health other than
// healthy (Traefik routes only to containers without a healthcheck or
// healthy ones).
func (r *rollout) dropWitness(ids ...string) *healthWitness {
	return &healthWitness{r: r, ids: ids, want: func(c Container) bool {
		return !c.Running() || (c.Health != "" && c.Health != "healthy")
	}}
}

// restored: each container running and healthy (Traefik routes to it).
func (r *rollout) restoreWitness(ids ...string) *healthWitness {
	return &healthWitness{r: r, ids: ids, want: func(c Container) bool {
		return c.State == "running" && (c.Health == "healthy" || c.Healthcheck.Disabled())
	}}
}

// settled reports whether every container has been in the wanted state for
// longer than Traefik's throttle (plus a margin).
func (w *healthWitness) settled(ctx context.Context) bool {
	for _, id := range w.ids {
		c, err := w.r.e.Runtime.Inspect(ctx, id)
		if errors.Is(err, ErrContainerNotFound) {
			c = Container{ID: id, State: "removed"}
		} else if err != nil {
			w.since = time.Time{}
			return false
		}
		if !w.want(c) {
			w.since = time.Time{}
			return false
		}
	}
	now := w.r.e.now()
	if w.since.IsZero() {
		w.since = now
	}
	bound, ok := w.r.e.propagation()
	return ok && now.Sub(w.since) >= bound+blindMargin
}

func idsOf(olds []*oldContainer) []string {
	ids := make([]string, len(olds))
	for i, o := range olds {
		ids[i] = o.ID
	}
	return ids
}
