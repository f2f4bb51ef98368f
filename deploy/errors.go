package deploy

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors the adapters return so the engine can decide.
var (
	// ErrImageNotFound: the image is not present on the Docker host.
	ErrImageNotFound = errors.New("image not found")
	// ErrContainerNotFound: the container does not exist (any more).
	ErrContainerNotFound = errors.New("container not found")
	// ErrServiceNotFound: Traefik has no service of that name.
	ErrServiceNotFound = errors.New("service not found")
	// ErrUnreachable: Docker or Traefik could not be reached.
	ErrUnreachable = errors.New("unreachable")
	// ErrInterrupted: the rollout was cancelled by a signal.
	ErrInterrupted = errors.New("interrupted")
	// ErrTraefikCredentials: Traefik's API refused the credentials (401/403).
	ErrTraefikCredentials = errors.New("traefik API refused the credentials")
	// ErrTraefikTLS: Traefik's API certificate could not be verified.
	ErrTraefikTLS = errors.New("traefik API certificate not trusted")
)

// Kind classifies a failed rollout for the exit code.
type Kind int

// Kinds of failure, each with its own exit code (see cmd).
const (
	// KindFailed: the rollout failed and the old version is still serving.
	KindFailed Kind = iota + 1
	// KindUsage: the request itself is wrong; nothing was changed.
	KindUsage
	// KindNeedsHuman: deployctl could not bring things back to a known good
	// state on its own; the message says what is running.
	KindNeedsHuman
	// KindUnreachable: Docker or Traefik could not be reached; nothing changed.
	KindUnreachable
	// KindInterrupted: cancelled by a signal; the old version keeps serving.
	KindInterrupted
	// KindLocked: another run holds the app's deploy lock; nothing changed.
	KindLocked
)

// Error is a failed rollout: which phase, why, what was observed, in what
// state things were left and what to check.
type Error struct {
	Phase    Phase
	Kind     Kind
	Err      error
	Observed string
	// State says what is running now, e.g. "v1 (web-v1-x) untouched and
	// still serving; the new container was removed".
	State string
	Hint  string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v (phase: %s)", e.Err, e.Phase)
	if e.Observed != "" {
		fmt.Fprintf(&b, "\n  observed: %s", e.Observed)
	}
	if e.State != "" {
		fmt.Fprintf(&b, "\n  state:    %s", e.State)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "\n  check:    %s", e.Hint)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// usageError is a rollout request that cannot be carried out as asked.
func usageError(format string, args ...any) *Error {
	return &Error{Phase: PhasePlan, Kind: KindUsage, Err: fmt.Errorf(format, args...)}
}
