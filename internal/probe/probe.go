// Package probe is deployctl's drain-aware health probe. It is built as a
// small static program (cmd/deployctl-probe, embedded in deployctl) that
// deployctl copies into every container it creates and makes the
// container's Docker healthcheck (see Main). The probe fails
// as soon as the drain marker says "drain", which makes Docker report the
// container unhealthy and Traefik's docker provider drop it, before the
// container gets any signal. Otherwise it runs the app's own healthcheck
// with the app's own interval and retries, or, without one, checks that the
// server port accepts connections.
//
// Docker runs the probe often (deployctl's --drain-interval) with retries=1,
// so the probe keeps the app's semantics itself, in a small state file:
// the original check runs at most once per original interval once it has
// passed, and the probe reports failure only after the original number of
// consecutive failures, or while the check has never passed.
package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Config is one probe invocation.
type Config struct {
	Marker   string        // drain marker file: "drain" in it fails the probe
	State    string        // state file; "" or unwritable: no memory between runs
	Interval time.Duration // the app's own health interval
	Timeout  time.Duration // bound on one run of the app's check
	Retries  int           // the app's own retries
	TCP      string        // host:port to connect to when there is no check
	Command  []string      // the app's check: CMD args... or CMD-SHELL cmd
}

// state is what the probe remembers between runs.
type state struct {
	Failures int
	Passed   bool      // the check has passed at least once
	LastRun  time.Time // when the check last ran
}

// Run runs the probe once and returns the exit code for Docker: 0 healthy,
// 1 unhealthy. It writes one short line of explanation to out.
func Run(ctx context.Context, cfg Config, now time.Time, out io.Writer) int {
	if draining(cfg.Marker) {
		fmt.Fprintln(out, "deployctl: draining")
		return 1
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 1
	}
	st, remembered := load(cfg.State)
	if remembered && st.Passed && st.Failures < cfg.Retries && now.Sub(st.LastRun) < cfg.Interval {
		fmt.Fprintln(out, "deployctl: ok (cached)")
		return 0
	}
	err := check(ctx, cfg)
	st.LastRun = now
	if err == nil {
		st.Failures, st.Passed = 0, true
	} else {
		st.Failures++
	}
	saved := save(cfg.State, st)
	healthy := err == nil || (saved && st.Passed && st.Failures < cfg.Retries)
	switch {
	case err == nil:
		fmt.Fprintln(out, "deployctl: ok")
	case healthy:
		fmt.Fprintf(out, "deployctl: check failed (%d of %d allowed): %v\n", st.Failures, cfg.Retries, err)
	default:
		fmt.Fprintf(out, "deployctl: unhealthy: %v\n", err)
	}
	if healthy {
		return 0
	}
	return 1
}

func draining(marker string) bool {
	if marker == "" {
		return false
	}
	b, err := os.ReadFile(marker)
	return err == nil && bytes.HasPrefix(b, []byte("drain"))
}

// check runs the app's own check once.
func check(ctx context.Context, cfg Config) error {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if len(cfg.Command) == 0 {
		if cfg.TCP == "" {
			return errors.New("no check configured")
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", cfg.TCP)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	var cmd *exec.Cmd
	switch cfg.Command[0] {
	case "CMD-SHELL":
		if len(cfg.Command) != 2 {
			return fmt.Errorf("CMD-SHELL takes one command string, got %d", len(cfg.Command)-1)
		}
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", cfg.Command[1])
	case "CMD":
		if len(cfg.Command) < 2 {
			return errors.New("CMD without a command")
		}
		cmd = exec.CommandContext(ctx, cfg.Command[1], cfg.Command[2:]...)
	default:
		return fmt.Errorf("unknown healthcheck form %q", cfg.Command[0])
	}
	var buf limitedBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("check timed out after %s", timeout)
	}
	if err != nil {
		if msg := strings.TrimSpace(buf.String()); msg != "" {
			return fmt.Errorf("%v: %s", err, lastLine(msg))
		}
		return err
	}
	return nil
}

func load(path string) (state, bool) {
	if path == "" {
		return state{}, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return state{}, false
	}
	var st state
	var passed int
	var last int64
	if _, err := fmt.Sscan(string(b), &st.Failures, &passed, &last); err != nil {
		return state{}, false
	}
	st.Passed, st.LastRun = passed == 1, time.Unix(0, last)
	return st, true
}

func save(path string, st state) bool {
	if path == "" {
		return false
	}
	passed := 0
	if st.Passed {
		passed = 1
	}
	data := strconv.Itoa(st.Failures) + " " + strconv.Itoa(passed) + " " + strconv.FormatInt(st.LastRun.UnixNano(), 10) + "\n"
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o666); err != nil {
		return false
	}
	return os.Rename(tmp, path) == nil
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// limitedBuffer keeps the last 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	if len(l.b) > 4096 {
		l.b = l.b[len(l.b)-4096:]
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
