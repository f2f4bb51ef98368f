package deploy

import (
	"testing"
	"time"
)

// A lock is stale when it has expired, or when its holder was a process of
// this host that no longer exists; a lock of another host is only ever
// broken by expiry (its PID means nothing here).
func TestHolderStale(t *testing.T) {
	now := time.Date(2025, 11, 20, 12, 0, 0, 0, time.UTC)
	alive := func(pid int) bool { return pid == 100 }
	cases := []struct {
		name string
		h    Holder
		want bool
	}{
		{"live process of this host", Holder{Host: "ci-1", PID: 100, Expires: now.Add(time.Hour)}, false},
		{"dead process of this host", Holder{Host: "ci-1", PID: 200, Expires: now.Add(time.Hour)}, true},
		{"process of another host", Holder{Host: "ci-2", PID: 200, Expires: now.Add(time.Hour)}, false},
		{"expired, another host", Holder{Host: "ci-2", PID: 200, Expires: now.Add(-time.Second)}, true},
		{"expired, live process of this host", Holder{Host: "ci-1", PID: 100, Expires: now.Add(-time.Second)}, true},
		{"no host recorded", Holder{PID: 200, Expires: now.Add(time.Hour)}, false},
		{"no expiry recorded, another host", Holder{Host: "ci-2", PID: 200}, false},
	}
	for _, tc := range cases {
		if got := tc.h.Stale(now, "ci-1", alive); got != tc.want {
			t.Errorf("%s: Stale = %v, want %v", tc.name, got, tc.want)
		}
	}
}
