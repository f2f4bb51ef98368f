package deploy

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeProcesses is a process table: PIDs of this PID namespace with their
// start times.
type fakeProcesses struct {
	self    ProcessID
	started map[int]uint64
	err     error
}

func (f fakeProcesses) Self() ProcessID { return f.self }

func (f fakeProcesses) Lookup(pid int) (uint64, bool, error) {
	if f.err != nil {
		return 0, false, f.err
	}
	start, ok := f.started[pid]
	return start, ok, nil
}

// Which lock is stale, and when at once: only a holder of this host name,
// boot and PID namespace whose PID is free or now another process. Every
// other lock waits for its expiry, however dead its PID looks from here.
func TestHolderStale(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ours := ProcessID{BootID: "boot-1", PIDNS: "4:4026531836", Start: 9000}
	self := Holder{User: "ci", Host: "runner", PID: 100, ProcessID: ours}
	procs := fakeProcesses{self: ours, started: map[int]uint64{100: 9000, 42: 5000}}
	live := func(mod func(*Holder)) Holder {
		h := Holder{User: "ci", Host: "runner", PID: 42, Since: now.Add(-time.Minute), Expires: now.Add(time.Hour),
			ProcessID: ProcessID{BootID: "boot-1", PIDNS: "4:4026531836", Start: 5000}}
		if mod != nil {
			mod(&h)
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		holder Holder
		procs  Processes
		stale  bool
		why    string
	}{
		{"alive, same namespace", live(nil), procs, false, ""},
		{"expired", live(func(h *Holder) { h.Expires = now.Add(-time.Second) }), procs, true, "expired"},
		{"expired, other namespace", live(func(h *Holder) { h.Expires, h.PIDNS = now.Add(-time.Second), "4:1" }), procs, true, "expired"},
		{"dead, same namespace", live(func(h *Holder) { h.PID = 43 }), procs, true, "process 43 no longer exists"},
		{"PID reused, same namespace", live(func(h *Holder) { h.Start = 4000 }), procs, true, "now another process"},
		// The bug of issue 10: same host name, another PID namespace (CI
		// jobs in containers): its PID means nothing here.
		{"dead-looking PID, other PID namespace", live(func(h *Holder) { h.PID, h.PIDNS = 43, "4:4026532999" }), procs, false, ""},
		{"dead-looking PID, other boot (other machine of that name, or before a reboot)", live(func(h *Holder) { h.PID, h.BootID = 43, "boot-2" }), procs, false, ""},
		{"dead PID, other host", live(func(h *Holder) { h.PID, h.Host = 43, "runner-2" }), procs, false, ""},
		// Locks written before deployctl recorded boot and namespace: the
		// holder may be a live run in a container next door.
		{"dead-looking PID, lock of an older deployctl", live(func(h *Holder) { h.PID, h.ProcessID = 43, ProcessID{} }), procs, false, ""},
		{"older deployctl, expired", live(func(h *Holder) { h.PID, h.ProcessID, h.Expires = 43, ProcessID{}, now.Add(-time.Second) }), procs, true, "expired"},
		// This process cannot tell its own namespace (not Linux, a /proc of
		// another namespace): nothing is certain.
		{"own identity unknown", live(func(h *Holder) { h.PID = 43 }), fakeProcesses{started: procs.started}, false, ""},
		{"lookup fails", live(func(h *Holder) { h.PID = 43 }), fakeProcesses{self: ours, err: errors.New("permission denied")}, false, ""},
		{"no process table", live(func(h *Holder) { h.PID = 43 }), nil, false, ""},
		{"start time unknown, PID alive", live(func(h *Holder) { h.Start = 0 }), procs, false, ""},
		{"holder's start unreadable here, PID alive", live(nil), fakeProcesses{self: ours, started: map[int]uint64{42: 0}}, false, ""},
		{"no PID", live(func(h *Holder) { h.PID = 0 }), procs, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			me := self
			if fp, ok := tc.procs.(fakeProcesses); ok {
				me.ProcessID = fp.self
			}
			stale, why := tc.holder.Stale(now, me, tc.procs)
			if stale != tc.stale || !strings.Contains(why, tc.why) {
				t.Errorf("Stale = %v %q, want %v %q", stale, why, tc.stale, tc.why)
			}
		})
	}
}

// The rollout records its process identity in the lock, and through the
// engine: a lock of another PID namespace is not broken (exit 5, nothing
// changed), one of a dead process of ours is, with the reason.
func TestLockRecordsProcessAndBreaksOnlyCertainlyDeadHolders(t *testing.T) {
	host, _ := os.Hostname()
	ours := ProcessID{BootID: "boot-1", PIDNS: "4:4026531836", Start: 9000}
	procs := fakeProcesses{self: ours, started: map[int]uint64{os.Getpid(): 9000}}
	other := Holder{User: "ci", Host: host, PID: 31337, Since: time.Now(), Expires: time.Now().Add(time.Hour),
		ProcessID: ProcessID{BootID: "boot-1", PIDNS: "4:4026532999", Start: 100}}

	t.Run("records", func(t *testing.T) {
		s := rolloutScenario()
		var taken Holder
		e, _ := engine(s.w)
		e.Journal, e.Processes = recordingJournal{s.j, &taken}, procs
		if _, err := e.Rollout(context.Background(), faultOptions()); err != nil {
			t.Fatal(err)
		}
		if taken.ProcessID != ours || taken.Host != host || taken.PID != os.Getpid() {
			t.Errorf("lock taken by %+v, want host %s, pid %d and %+v", taken, host, os.Getpid(), ours)
		}
	})
	t.Run("other PID namespace", func(t *testing.T) {
		s := rolloutScenario()
		s.j.holders["web"] = other
		e, ev := engine(s.w)
		e.Journal, e.Processes = s.j, procs
		_, err := e.Rollout(context.Background(), faultOptions())
		assertKind(t, err, KindLocked)
		noChange(t, s)
		if h := s.j.holders["web"]; !h.Same(other) {
			t.Errorf("lock now held by %v, want %v", h, other)
		}
		for _, w := range ev.warnings() {
			if strings.Contains(w, "breaking") {
				t.Errorf("warned %q", w)
			}
		}
	})
	t.Run("dead process of this namespace", func(t *testing.T) {
		s := rolloutScenario()
		dead := other
		dead.PIDNS = ours.PIDNS
		s.j.holders["web"] = dead
		e, ev := engine(s.w)
		e.Journal, e.Processes = s.j, procs
		if _, err := e.Rollout(context.Background(), faultOptions()); err != nil {
			t.Fatal(err)
		}
		if w := ev.warnings(); len(w) != 1 || !strings.Contains(w[0], "breaking a stale deploy lock") || !strings.Contains(w[0], "process 31337 no longer exists") {
			t.Errorf("warnings %q, want one saying the stale lock was broken and why", w)
		}
	})
}

// recordingJournal remembers the holder of the last lock taken.
type recordingJournal struct {
	*memJournal
	taken *Holder
}

func (j recordingJournal) Lock(ctx context.Context, app, image string, h Holder) error {
	*j.taken = h
	return j.memJournal.Lock(ctx, app, image, h)
}
