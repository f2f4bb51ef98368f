package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// What a run does when something goes wrong: undo, clean up, explain.

// fail turns err, a failure before any step ran (the plan), into an
// *Error for phase p: nothing was changed.
func (r *rollout) fail(ctx context.Context, p Phase, err error) error {
	de := r.classify(ctx, p, err)
	r.e.emit(Event{Phase: de.Phase, Status: StatusFail, Message: de.Err.Error(), Elapsed: r.e.now().Sub(r.phaseStart)})
	if de.State == "" && de.Kind != KindNeedsHuman {
		de.State = "nothing was changed"
		if len(r.olds) > 0 {
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
