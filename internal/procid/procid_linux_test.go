package procid

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		start      uint64
		zombie     bool
		err        bool
	}{
		{"plain", "1234 (deployctl) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 8 0 98765 1000 200 18446744073709551615", 98765, false, false},
		// The command name is the process's to choose: spaces and
		// parentheses must not shift the fields.
		{"name with spaces and parens", "1234 (a) b (c ) d) R 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 8 0 555 1000", 555, false, false},
		{"zombie", "77 (deployctl) Z 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0", 4242, true, false},
		{"dead", "77 (deployctl) X 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0", 4242, true, false},
		{"truncated", "77 (deployctl) S 1 77", 0, false, true},
		{"no name", "77 S 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0", 0, false, true},
		{"start not a number", "77 (deployctl) S 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 x 0 0", 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, zombie, err := parseStat([]byte(tc.stat))
			if (err != nil) != tc.err || start != tc.start || zombie != tc.zombie {
				t.Errorf("parseStat = %d %v %v, want %d %v error %v", start, zombie, err, tc.start, tc.zombie, tc.err)
			}
		})
	}
}

// This process, a live child, a zombie child and a reaped child, as the
// lock sees them.
func TestSelfAndLookup(t *testing.T) {
	var l Local
	self := l.Self()
	if len(self.BootID) != 36 || !strings.Contains(self.PIDNS, ":") || self.Start == 0 {
		t.Fatalf("Self() = %+v: want a boot ID, a PID namespace and a start time", self)
	}
	if start, found, err := l.Lookup(os.Getpid()); err != nil || !found || start != self.Start {
		t.Errorf("Lookup(self) = %d %v %v, want %d true", start, found, err, self.Start)
	}

	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	pid := child.Process.Pid
	start, found, err := l.Lookup(pid)
	if err != nil || !found || start < self.Start {
		t.Errorf("Lookup(live child) = %d %v %v, want found, started after us (%d)", start, found, err, self.Start)
	}

	// Killed, not yet reaped: a zombie has exited, it holds nothing.
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, found, err = l.Lookup(pid)
		if !found || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || found {
		t.Errorf("Lookup(zombie child) = found %v, %v: want gone", found, err)
	}
	child.Wait()
	if _, found, err := l.Lookup(pid); err != nil || found {
		t.Errorf("Lookup(reaped child) = found %v, %v: want gone", found, err)
	}
}
