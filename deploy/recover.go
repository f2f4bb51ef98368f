package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// What a run does when something goes wrong: undo, clean up, explain.

// watch watches the new container for o.Watch after the cutover, the old
// ones drained but running. If the new one fails, the old ones are put back
// in rotation first and the new one is drained and stopped after.
func (r *rollout) watch(ctx context.Context) error {
	if r.o.Watch <= 0 || len(r.olds) == 0 {
		return nil
	}
	r.begin(PhaseWatch, fmt.Sprintf("watching %s for %s; the old version stays ready", r.newC.Short(), r.o.Watch))
	restarts := r.newC.RestartCount
	var reason string
	var lastOldCheck time.Time
	err := r.poll(ctx, r.o.Watch, func() (bool, error) {
		c, err := r.e.Runtime.Inspect(ctx, r.newC.ID)
		if err != nil {
			reason = "it could not be inspected: " + err.Error()
			return true, nil
		}
		*r.newC = c
		switch {
		case c.State != "running" || c.RestartCount > restarts:
			reason = fmt.Sprintf("it exited with code %d", c.ExitCode)
		case c.Health == "unhealthy" && lastProbe(c) == "":
			reason = "it turned unhealthy (its probe could not run: the container is probably exiting)"
		case c.Health == "unhealthy":
			reason = "it turned unhealthy: " + r.probeOutput(c)
		case r.probe && strings.Contains(lastProbe(c), "check failed"):
			// The probe still reports healthy while the app's own check
			// has failed fewer times than its retries allow: act now,
			// while the new container still serves.
			reason = "its health check started failing: " + r.probeOutput(c)
		}
		if reason != "" {
			return true, nil
		}
		// The old version is the way back: say so if it goes (checked
		// about once a second).
		if now := r.e.now(); now.Sub(lastOldCheck) >= time.Second {
			lastOldCheck = now
			for _, old := range r.olds {
				if old.gone {
					continue
				}
				if _, err := r.e.Runtime.Inspect(ctx, old.ID); errors.Is(err, ErrContainerNotFound) {
					old.gone = true
					r.warnAbout(PhaseWatch, old.Short(), WarnOldGone, "old container %s was removed by someone else during the watch window: it can no longer be put back if %s fails", old.Short(), r.o.Version)
				}
			}
		}
		for _, name := range r.services {
			svc, err := r.e.Router.Service(ctx, name)
			if err != nil {
				continue // Traefik's answer is not a verdict on the app
			}
			if srv, ok := svc.Server(r.newURL); !ok || !srv.Registered() {
				reason = r.e.routerName() + " no longer routes to it"
				return true, nil
			}
		}
		return false, nil
	})
	switch {
	case isTimeout(err):
		r.done(PhaseWatch, Event{Container: r.newC.Short(), Message: "stayed healthy for " + r.o.Watch.String()})
		return nil
	case err != nil && ctx.Err() == nil:
		return err
	case ctx.Err() != nil:
		reason = "the rollout was interrupted"
	}
	r.warn(PhaseWatch, WarnWatchFailed, "%s %s failed within the watch window: %s; putting %s back", r.o.App, r.o.Version, reason, names(containersOf(r.olds)))
	cause := fmt.Errorf("%s %s failed within the watch window: %s", r.o.App, r.o.Version, reason)
	if ctx.Err() != nil {
		cause = context.Cause(ctx)
	}
	// The old version is put back first (every moment counts if the new
	// one is down); fail() then drains, stops and removes the new one, as
	// for any failure before the cutover.
	if err := r.revert(ctx, cause); err != nil && !errors.Is(err, cause) {
		return err
	}
	observed := "last log lines of the new container:\n" + r.logs(ctx, r.newC.ID)
	return &Error{Phase: PhaseWatch, Kind: KindFailed, Err: cause, Observed: observed,
		State: fmt.Sprintf("rolled back: %s (%s) is serving again; the new container was removed", describeCurrent(r.olds), names(containersOf(r.olds))),
		Hint:  "the new version's logs above"}
}

// revert undoes a drain that could not be completed: the old containers'
// markers are set back to serve, the engine waits until Traefik routes to
// them again (servingAgainWitness), and only then is the new container
// removed.
func (r *rollout) revert(ctx context.Context, cause error) error {
	ctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	r.e.emit(Event{Phase: PhaseRevert, Status: StatusStart, Message: "putting the old version back in rotation"})
	var restored []*oldContainer
	for _, old := range r.olds {
		if !old.drained {
			continue
		}
		err := r.e.drainer().Restore(ctx, old.Container)
		if errors.Is(err, ErrContainerNotFound) {
			continue // removed by someone else: nothing to restore
		}
		if err != nil {
			return r.needsHuman(PhaseDrain, cause, fmt.Errorf("restoring %s: %w", old.Short(), err))
		}
		old.drained = false
		restored = append(restored, old)
	}
	if len(restored) == 0 {
		// Every drained old container is gone: the new one is all that
		// serves, so it stays.
		return &Error{Phase: PhaseDrain, Kind: KindNeedsHuman, Err: cause,
			State: fmt.Sprintf("the old container(s) were removed by someone else; the new container %s (%s) is serving", r.newC.Short(), r.o.Version),
			Hint:  "deployctl status; rerun the rollout if the new version should not stay"}
	}
	// Back once Docker reports each healthy by a check that read the
	// serve marker, for as long as the router takes to apply that, and the
	// router lists it: not before, or a listing from before the router
	// dropped it would let the new container go with nothing in rotation.
	back := r.servingAgainWitness(idsOf(restored)...)
	var apiErr error
	bound, _ := r.e.propagation()
	err := r.poll(ctx, r.o.DeregisterTimeout+r.o.RegisterTimeout+bound+blindMargin, func() (bool, error) {
		apiErr = nil
		if !back.propagated(ctx) {
			return false, nil
		}
		for _, name := range r.services {
			svc, err := r.e.Router.Service(ctx, name)
			if err != nil {
				// Traefik's API did not answer: Docker's health stands in,
				// when the router has a propagation bound.
				apiErr = err
				_, bounded := r.e.propagation()
				return bounded, nil
			}
			for _, old := range restored {
				if srv, ok := svc.Server(old.url); old.url != "" && (!ok || !srv.Registered()) {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return r.needsHuman(PhaseDrain, cause, fmt.Errorf("old container(s) did not come back into %s: %w", r.e.routerName(), err))
	}
	if apiErr != nil {
		r.warn(PhaseRevert, WarnTraefikBlind, "%s's API stopped answering (%v); Docker has reported %s healthy for longer than it takes to apply that, so it is taken to be back in rotation", r.e.routerName(), apiErr, names(containersOf(restored)))
	}
	r.cutover = false
	return cause
}

func (r *rollout) needsHuman(p Phase, cause, err error) error {
	return &Error{Phase: p, Kind: KindNeedsHuman, Err: cause,
		Observed: err.Error(),
		State:    fmt.Sprintf("both the new container %s and the old one(s) %s are running; the old ones may be out of %s", r.newC.Short(), names(containersOf(r.olds)), r.e.routerName()),
		Hint:     "deployctl status, docker ps; remove the new container or rerun the rollout"}
}

// fail turns err into an *Error for phase p, removing the new container when
// the cutover had not begun, so the old version keeps serving untouched.
func (r *rollout) fail(ctx context.Context, p Phase, err error) error {
	de := r.classify(ctx, p, err)
	elapsed := r.e.now().Sub(r.phaseStart)

	r.e.emit(Event{Phase: de.Phase, Status: StatusFail, Message: de.Err.Error(), Elapsed: elapsed})
	if de.Kind == KindNeedsHuman {
		return de
	}
	if r.newC != nil && !r.cutover {
		cctx, cancel := r.cleanupContext(ctx)
		defer cancel()
		rmErr := r.removeNew(cctx)
		if rmErr != nil && r.reused {
			// Never docker rm: it is the retained version rolled back to.
			de.Kind = KindNeedsHuman
			de.State = fmt.Sprintf("the old version is untouched, but the retained container %s could not be stopped again: %v", r.newC.Short(), rmErr)
			de.Hint = "docker stop " + r.newC.Short()
			return de
		}
		if rmErr != nil {
			de.Kind = KindNeedsHuman
			de.State = fmt.Sprintf("the old version is untouched, but the new container %s could not be removed: %v", r.newC.Short(), rmErr)
			de.Hint = "docker rm -f " + r.newC.Short()
			return de
		}
		msg := "new container removed"
		if r.reused {
			msg = "retained container stopped again"
		}
		r.e.emit(Event{Phase: PhaseRevert, Status: StatusDone, Container: r.newC.Short(), Message: msg})
	}
	if de.State == "" {
		switch {
		case len(r.olds) == 0 && r.newC != nil:
			de.State = "first deploy: the new container was removed; nothing of the app is running"
		case len(r.olds) == 0:
			de.State = "nothing was changed"
		case r.newC != nil && r.reused:
			de.State = fmt.Sprintf("the old version (%s) is untouched and still serving; the retained container %s was stopped again", names(containersOf(r.olds)), r.newC.Short())
		case r.newC != nil:
			de.State = fmt.Sprintf("the old version (%s) is untouched and still serving; the new container was removed", names(containersOf(r.olds)))
		default:
			de.State = fmt.Sprintf("nothing was changed; the old version (%s) is still serving", names(containersOf(r.olds)))
		}
	}
	return de
}

// classify turns err into an *Error for phase p: its kind, and the
// cause of a cancelled run (a signal, --timeout).
func (r *rollout) classify(ctx context.Context, p Phase, err error) *Error {
	var de *Error
	if !errors.As(classifyDocker(err), &de) { // Docker unreachable while polling: KindUnreachable
		de = &Error{Kind: KindFailed, Err: err}
	}
	if de.Phase == "" || de.Phase == PhasePlan && p != PhasePlan {
		de.Phase = p
	}
	if ctx.Err() != nil && de.Kind != KindNeedsHuman {
		cause := context.Cause(ctx)
		// What the cancelled call made of it (e.g. "is the engine
		// running?") is not the cause.
		if errors.Is(cause, ErrInterrupted) {
			de.Kind, de.Err, de.Hint = KindInterrupted, cause, ""
		} else if errors.Is(cause, context.DeadlineExceeded) {
			de.Kind = KindFailed
			de.Err = fmt.Errorf("the rollout did not finish within --timeout")
			de.Hint = "the phase that took longest in the progress above; raise --timeout if it only needs more time"
		}
	}
	return de
}

// removeNew removes the new container after a failure. If it may already be
// in Traefik's rotation (running and healthy), it is drained first, like an
// old container, so removing it fails no request that Traefik sent it.
func (r *rollout) removeNew(ctx context.Context) error {
	c, err := r.e.Runtime.Inspect(ctx, r.newC.ID)
	if errors.Is(err, ErrContainerNotFound) {
		return nil
	}
	if err != nil {
		// Its state is unknown: as last seen, and maybe serving.
		c = *r.newC
		c.State = "running"
	}
	if c.Running() {
		// Every network: wherever Traefik may have picked the address.
		urls := serverURLs(r.e.Router.Endpoint, c)
		dropped := r.dropWitness(c.ID)
		listed := func() bool {
			all, err := r.e.Router.Services(ctx)
			if err != nil {
				// Traefik's API did not answer: Docker's health stands in.
				return !dropped.settled(ctx)
			}
			for _, svc := range all {
				for _, srv := range svc.Servers {
					if !srv.Registered() {
						continue
					}
					for _, u := range urls {
						if sameURL(srv.URL, u) {
							return true
						}
					}
					// A server that joined the app's service since the plan
					// is the new container under an address deployctl did not
					// expect (e.g. Traefik picked another network).
					if slices.Contains(r.services, svc.Name) && !r.baseline[normalizeURL(srv.URL)] {
						return true
					}
				}
			}
			return false
		}
		// Whatever its health: Traefik may still route to an unhealthy
		// container until it applies the change (its throttle).
		// Without the probe a healthy container cannot leave Traefik before
		// its signal; an unhealthy one leaves on its own.
		if (r.probe || c.Health != "healthy") && listed() {
			r.e.emit(Event{Phase: PhaseRevert, Status: StatusInfo, Container: c.Short(), Message: "draining the new container before removing it"})
			if d := r.e.drainer(); r.probe && d != nil {
				_ = d.Drain(ctx, c)
			}
			_ = r.poll(ctx, r.o.DeregisterTimeout, func() (bool, error) { return !listed(), nil })
		}
		timeout := r.o.StopTimeout
		if timeout == 0 {
			timeout = DefaultStopTimeout
		}
		err := r.e.Runtime.Stop(ctx, c.ID, timeout)
		if r.reused && err != nil && !errors.Is(err, ErrContainerNotFound) {
			return fmt.Errorf("stopping %s: %w", c.Short(), err)
		}
	}
	if r.reused {
		return nil // stopped above: it goes back to being a retained version
	}
	return r.e.Runtime.Remove(ctx, r.newC.ID)
}

// cleanupContext is a context for undoing work that survives the rollout's
// own cancellation, bounded by CleanupTimeout.
func (r *rollout) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.cleanupTimeout())
}

func (r *rollout) cleanupTimeout() time.Duration {
	if r.e.CleanupTimeout == 0 {
		return 60 * time.Second
	}
	return r.e.CleanupTimeout
}
