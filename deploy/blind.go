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

// servingAgainWitness: each container running and healthy by a health
// check that began after its drain marker was set back to serve. Call it
// only after that write returned: the first look at each container is the
// reference.
//
// Healthy alone is not enough after a drain that is undone. A check that
// read the drain marker just before the restore wrote serve may still be
// running, or have just failed: Docker then reports the container
// unhealthy for one check interval, Traefik drops it a throttle later, and
// a Traefik API that lists it as up still shows the state before that. A
// new container drained on that answer leaves nothing in rotation (e2e
// TestSignalsInEachPhase/SIGINT_while_draining, 170 of 763 requests
// failed). Docker runs one check at a time and logs it when it ends, so of
// the checks that began after the reference look, the first may have begun
// before it (and read drain); the second began after the first ended,
// which is after that look, which is after the marker said serve. Its
// having passed, with Docker reporting healthy, is the proof; Docker's log
// times are compared only with one another, never with this host's clock.
func (r *rollout) servingAgainWitness(ids ...string) *healthWitness {
	ref := map[string]time.Time{}
	return &healthWitness{r: r, ids: ids, want: func(c Container) bool {
		if c.State != "running" {
			return false
		}
		if c.Healthcheck.Disabled() {
			return true // no health to wait for: Traefik routes it when running
		}
		last, seen := ref[c.ID]
		if !seen {
			ref[c.ID] = newestRun(c)
			return false
		}
		return c.Health == "healthy" && passedSince(c, last)
	}}
}

// newestRun is when c's most recent logged health check began (zero: none).
func newestRun(c Container) time.Time {
	var t time.Time
	for _, run := range c.HealthLog {
		if run.Start.After(t) {
			t = run.Start
		}
	}
	return t
}

// passedSince reports whether at least two of c's logged health checks
// began after ref, the latest of them passed.
func passedSince(c Container, ref time.Time) bool {
	n := 0
	var latest HealthRun
	for _, run := range c.HealthLog {
		if !run.Start.After(ref) {
			continue
		}
		n++
		if run.Start.After(latest.Start) {
			latest = run
		}
	}
	return n >= 2 && latest.ExitCode == 0
}

// settled reports whether every container has been in the wanted state for
// longer than Traefik's throttle (plus a margin).
func (w *healthWitness) settled(ctx context.Context) bool {
	return w.settledIf(w.holds(ctx))
}

// settledIf is settled, given what holds (or observe) reported just now.
func (w *healthWitness) settledIf(holds bool) bool {
	if !holds {
		return false
	}
	bound, ok := w.r.e.propagation()
	return ok && w.r.e.now().Sub(w.since) >= bound+blindMargin
}

// holds reports whether every container is in the wanted state now, and
// notes since when they all have been.
func (w *healthWitness) holds(ctx context.Context) bool {
	cs := make([]Container, 0, len(w.ids))
	for _, id := range w.ids {
		c, err := w.r.e.Runtime.Inspect(ctx, id)
		if errors.Is(err, ErrContainerNotFound) {
			c = Container{ID: id, State: "removed"}
		} else if err != nil {
			w.since = time.Time{}
			return false
		}
		cs = append(cs, c)
	}
	return w.observe(cs)
}

// observe is holds for containers the caller has just inspected: cs are
// w's containers, in the order of w.ids.
func (w *healthWitness) observe(cs []Container) bool {
	for _, c := range cs {
		if !w.want(c) {
			w.since = time.Time{}
			return false
		}
	}
	if w.since.IsZero() {
		w.since = w.r.e.now()
	}
	return true
}

// propagatedIf reports whether the router has had time to apply the wanted
// state, given what holds (or observe) reported just now: it has held for
// the router's propagation bound (plus a margin), or, for a router without
// one, it holds.
func (w *healthWitness) propagatedIf(holds bool) bool {
	if _, ok := w.r.e.propagation(); !ok {
		return holds
	}
	return w.settledIf(holds)
}
