package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The deploy lock and the history record of a run.

// lock takes the app's deploy lock, waiting up to LockWait, breaking a
// stale one.
func (r *rollout) lock(ctx context.Context, image string) error {
	j := r.e.Journal
	if j == nil {
		return nil
	}
	holder := CurrentHolder(r.e.now())
	if r.e.Processes != nil {
		holder.ProcessID = r.e.Processes.Self()
	}
	holder.Expires = holder.Since.Add(time.Hour)
	if d, ok := ctx.Deadline(); ok {
		holder.Expires = d.Add(r.cleanupTimeout() + time.Minute)
	}
	deadline := r.e.now().Add(r.o.LockWait)
	waited := false
	for {
		err := j.Lock(ctx, r.o.App, image, holder)
		var le *LockedError
		if err == nil {
			r.locked, r.holder = true, holder
			return nil
		}
		if !errors.As(err, &le) {
			return lockError(fmt.Errorf("taking the deploy lock of %s: %w", r.o.App, err), "then rerun")
		}
		if stale, why := le.Holder.Stale(r.e.now(), holder, r.e.Processes); stale {
			r.warn(PhasePlan, WarnStaleLockBroken, "breaking a stale deploy lock on %s held by %s: %s", r.o.App, le.Holder, why)
			// Only that stale lock: another run breaking it at the same
			// time may already have taken a fresh one.
			if err := j.Unlock(ctx, r.o.App, &le.Holder); err != nil {
				return lockError(fmt.Errorf("breaking the stale deploy lock of %s: %w", r.o.App, err),
					"or remove the lock by hand: deployctl unlock --app "+r.o.App)
			}
			continue
		}
		if !r.e.now().Before(deadline) {
			return &Error{Kind: KindLocked, Err: le,
				Hint: fmt.Sprintf("wait for that run to finish (--lock-wait to wait up to a duration); if it was killed, the lock expires at %s, or run: deployctl unlock --app %s", le.Holder.Expires.Local().Format("2006-01-02 15:04:05"), r.o.App)}
		}
		if !waited {
			r.info(PhasePlan, Event{Message: fmt.Sprintf("waiting for the deploy lock: %v", le)})
			waited = true
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// lockError explains a deploy lock that could not be taken or broken:
// nothing was changed yet. Docker answering with an error (disk full,
// permission denied) is no connection failure: the hint says what to fix.
func lockError(err error, then string) error {
	de, _ := unreachable("Docker", err).(*Error)
	if de.Kind == KindUnreachable {
		de.Hint += "; " + then
	} else {
		de.Hint = "the Docker engine's error above: the deploy lock is kept on the Docker host (a container that never runs), so it needs free disk space there (docker system df) and a user allowed to create containers (docker info); " + then
	}
	return de
}

// finish records the run in the history and releases the lock, also after
// a failure or a signal.
func (r *rollout) finish(ctx context.Context, err error) {
	r.stepRun = nil // the history and the lock are of the run, not a step
	j := r.e.Journal
	if j == nil || !r.locked {
		return
	}
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	rec := Record{App: r.o.App, Operation: r.operation, From: versionsOf(r.olds), To: r.o.Version,
		Result: "ok", Started: r.start, Total: Duration(r.e.now().Sub(r.start)), Phases: r.phases, By: CurrentHolder(r.start)}
	if sw := r.swarm; sw != nil && sw.from != "" {
		rec.From, rec.Replicas, rec.FromReplicas = sw.from, sw.replicas, sw.fromReplicas
	}
	if r.decision != nil {
		rec.Replicas = max(r.decision.budget.Replicas, 1)
		for _, old := range r.decision.olds {
			if !old.halfMade {
				rec.FromReplicas++
			}
		}
	}
	var de *Error
	switch {
	case errors.As(err, &de) && de.Kind == KindInterrupted:
		rec.Result, rec.Phase, rec.Error = "interrupted", de.Phase, firstLine(de.Err.Error())
	case errors.As(err, &de):
		rec.Result, rec.Phase, rec.Error = "failed", de.Phase, firstLine(de.Err.Error())
	case err != nil:
		rec.Result, rec.Error = "failed", firstLine(err.Error())
	}
	if werr := j.AddRecord(cctx, rec, r.o.HistoryKeep); werr != nil {
		r.warn(PhaseDone, WarnHistoryNotWritten, "could not write the history record: %v", werr)
	}
	r.release(cctx)
}

// release gives the deploy lock back.
func (r *rollout) release(ctx context.Context) {
	if r.e.Journal == nil || !r.locked {
		return
	}
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	if err := r.e.Journal.Unlock(cctx, r.o.App, &r.holder); err != nil {
		r.warn(PhaseDone, WarnLockNotReleased, "could not release the deploy lock: %v (deployctl unlock --app %s)", err, r.o.App)
	}
	r.locked = false
}
