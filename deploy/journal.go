package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"
)

// Journal keeps, on the Docker host itself, what must outlive the deployctl
// process (CI runners are thrown away): the per-app deploy lock and the
// history of rollouts and rollbacks. Implemented by dockerutil with Docker
// objects, so it needs no extra service and works through DOCKER_HOST.
type Journal interface {
	// Lock takes the app's deploy lock atomically, recording holder; when
	// another run holds it, the error is a *LockedError. image is any image
	// present on the host (the lock is a container that never runs).
	Lock(ctx context.Context, app, image string, holder Holder) error
	// Unlock releases the app's lock if it is held by held (nil: whoever
	// holds it), removing that very lock: a lock another run took after
	// held's was removed is never touched. No lock, or a lock of another
	// holder, is no error.
	Unlock(ctx context.Context, app string, held *Holder) error
	// LockHolder returns who holds the app's lock, nil when it is free.
	LockHolder(ctx context.Context, app string) (*Holder, error)
	// AddRecord stores a history record, keeping the newest keep records
	// of its app.
	AddRecord(ctx context.Context, rec Record, keep int) error
	// Records returns the history of app ("" for all apps), newest first.
	Records(ctx context.Context, app string) ([]Record, error)
}

// Holder says who runs a rollout: for the lock and the history.
type Holder struct {
	User  string    `json:"user,omitempty"`
	Host  string    `json:"host,omitempty"`
	PID   int       `json:"pid,omitempty"`
	CI    string    `json:"ci,omitempty"` // CI job, e.g. a GitHub Actions run URL
	Since time.Time `json:"since"`
	// Expires is when the lock counts as stale: the holder's --timeout plus
	// the cleanup time, after which no live run can still hold it.
	Expires time.Time `json:"expires"`
	// ProcessID says which kernel and PID namespace PID belongs to (zero
	// in a lock written by deployctl before it recorded them).
	ProcessID
}

// ProcessID identifies a process beyond its host name and PID. A host name
// names no machine (CI jobs in containers often share one), and a PID is a
// process only within one PID namespace of one boot: two runners in
// containers with one host name see each other's PIDs as free or as some
// other process.
type ProcessID struct {
	// BootID is the kernel's boot ID (/proc/sys/kernel/random/boot_id):
	// different on another machine, and after a reboot.
	BootID string `json:"boot_id,omitempty"`
	// PIDNS is the PID namespace, as the device and inode of
	// /proc/self/ns/pid ("dev:ino").
	PIDNS string `json:"pid_ns,omitempty"`
	// Start is when the process started, in clock ticks after boot (field
	// 22 of /proc/<pid>/stat): a PID used again later has another.
	Start uint64 `json:"start,omitempty"`
}

// Processes looks at the processes of the machine deployctl runs on, to
// tell at once that the holder of a lock is gone (see Holder.Stale).
type Processes interface {
	// Self identifies this process. A field it cannot establish for
	// certain is zero (not Linux, a /proc of another PID namespace).
	Self() ProcessID
	// Lookup finds process pid in this process's PID namespace: found is
	// false only when there is certainly no such live process (a zombie
	// counts as gone); start is its start time, 0 when unreadable.
	Lookup(pid int) (start uint64, found bool, err error)
}

// Same reports whether h and o are the same holder (times compared as
// instants, so a holder read back from the journal matches the original).
func (h Holder) Same(o Holder) bool {
	return h.User == o.User && h.Host == o.Host && h.PID == o.PID && h.CI == o.CI &&
		h.Since.Equal(o.Since) && h.Expires.Equal(o.Expires) && h.ProcessID == o.ProcessID
}

func (h Holder) String() string {
	s := h.User
	if h.Host != "" {
		s += "@" + h.Host
	}
	if h.PID != 0 {
		s += fmt.Sprintf(" (pid %d)", h.PID)
	}
	if h.CI != "" {
		s += ", " + h.CI
	}
	if !h.Since.IsZero() {
		s += ", since " + h.Since.Local().Format("2006-01-02 15:04:05")
	}
	return strings.TrimPrefix(s, "@")
}

// LockedError: another run holds the app's deploy lock.
type LockedError struct {
	App    string
	Holder Holder
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("app %s is being deployed by %s", e.App, e.Holder)
}

// ErrLocked matches *LockedError with errors.Is.
var ErrLocked = errors.New("deploy lock held")

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Record is one rollout or rollback in the history.
type Record struct {
	App       string      `json:"app"`
	Operation string      `json:"operation"` // rollout, rollback, auto-rollback
	From      string      `json:"from,omitempty"`
	To        string      `json:"to"`
	Result    string      `json:"result"` // ok, failed, interrupted
	Phase     Phase       `json:"phase,omitempty"`
	Error     string      `json:"error,omitempty"`
	Started   time.Time   `json:"started"`
	Total     Duration    `json:"total"`
	Phases    []PhaseTime `json:"phases,omitempty"`
	By        Holder      `json:"by"`
	// Replicas is how many containers the run was to leave the app
	// running, FromReplicas how many of its containers ran before it (not
	// counting one an interrupted run left half-made). 0: not known (the
	// run failed before its plan, or deployctl did not record it yet).
	Replicas     int `json:"replicas,omitempty"`
	FromReplicas int `json:"from_replicas,omitempty"`
}

// DefaultHistoryKeep is how many records of an app the history keeps.
const DefaultHistoryKeep = 100

// CurrentHolder describes this process, with the CI job taken from the
// environment variables of common CI systems.
func CurrentHolder(now time.Time) Holder {
	h := Holder{PID: os.Getpid(), Since: now}
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	} else {
		h.User = os.Getenv("USER")
	}
	h.Host, _ = os.Hostname()
	h.CI = ciJob(os.Getenv)
	return h
}

// ciJob names the CI job running deployctl, from well-known variables.
func ciJob(env func(string) string) string {
	switch {
	case env("GITHUB_RUN_ID") != "":
		if env("GITHUB_SERVER_URL") != "" && env("GITHUB_REPOSITORY") != "" {
			return fmt.Sprintf("%s/%s/actions/runs/%s", env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID"))
		}
		return "GitHub Actions run " + env("GITHUB_RUN_ID")
	case env("CI_JOB_URL") != "":
		return env("CI_JOB_URL")
	case env("CI_PIPELINE_ID") != "":
		return "GitLab pipeline " + env("CI_PIPELINE_ID")
	case env("BUILDKITE_BUILD_URL") != "":
		return env("BUILDKITE_BUILD_URL")
	case env("CIRCLE_BUILD_URL") != "":
		return env("CIRCLE_BUILD_URL")
	case env("BUILD_URL") != "":
		return env("BUILD_URL") // Jenkins
	}
	return ""
}

// Stale reports whether a lock held by h can be broken at now, and why:
// it has expired, or its holder is certainly gone. self is this run's
// holder (host and ProcessID); procs nil means only expiry counts.
//
// Gone at once needs certainty: the same host name, boot and PID namespace
// as this process (so the PID names the same process table), and that PID
// free or now another process (another start time). Anything else waits
// for expiry: a lock of another PID namespace or machine with this host
// name, and a lock written before deployctl recorded its boot and PID
// namespace, whose holder could be a live run in a container next door.
func (h Holder) Stale(now time.Time, self Holder, procs Processes) (bool, string) {
	if !h.Expires.IsZero() && now.After(h.Expires) {
		return true, "it expired at " + h.Expires.Local().Format("15:04:05")
	}
	if procs == nil || h.PID <= 0 || h.Host == "" || h.Host != self.Host ||
		h.BootID == "" || h.PIDNS == "" || h.BootID != self.BootID || h.PIDNS != self.PIDNS {
		return false, ""
	}
	start, found, err := procs.Lookup(h.PID)
	switch {
	case err != nil:
		return false, ""
	case !found:
		return true, fmt.Sprintf("its process %d no longer exists", h.PID)
	case h.Start != 0 && start != 0 && start != h.Start:
		return true, fmt.Sprintf("its process %d has exited (that PID is now another process)", h.PID)
	}
	return false, ""
}
