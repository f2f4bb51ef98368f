package probe

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, cfg Config, now time.Time) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := Run(context.Background(), cfg, now, &out)
	return code, out.String()
}

func TestDrainMarkerFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "drain")
	cfg := Config{Marker: marker, State: filepath.Join(dir, "state"), Command: []string{"CMD", "true"}, Interval: time.Minute, Retries: 3}
	now := time.Now()
	if code, out := run(t, cfg, now); code != 0 {
		t.Fatalf("no marker: code %d %s", code, out)
	}
	os.WriteFile(marker, []byte("serve\n"), 0o644)
	if code, _ := run(t, cfg, now.Add(time.Second)); code != 0 {
		t.Errorf("marker serve: code %d", code)
	}
	os.WriteFile(marker, []byte("drain\n"), 0o644)
	if code, out := run(t, cfg, now.Add(2*time.Second)); code != 1 || !strings.Contains(out, "draining") {
		t.Errorf("marker drain: code %d %q", code, out)
	}
	os.WriteFile(marker, []byte("serve\n"), 0o644)
	if code, _ := run(t, cfg, now.Add(3*time.Second)); code != 0 {
		t.Errorf("restored: code %d", code)
	}
}

func TestKeepsTheAppsRetriesAndInterval(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "fail")
	// The check fails while the file exists.
	check := []string{"CMD-SHELL", "test ! -e " + flag}
	cfg := Config{State: filepath.Join(dir, "state"), Command: check, Interval: 10 * time.Second, Retries: 2}
	t0 := time.Now()

	os.WriteFile(flag, nil, 0o644)
	if code, _ := run(t, cfg, t0); code != 1 {
		t.Errorf("never passed yet and failing: want 1, got %d", code)
	}
	os.Remove(flag)
	if code, _ := run(t, cfg, t0.Add(time.Second)); code != 0 {
		t.Errorf("first pass: want 0, got %d", code)
	}
	// Within the app's interval the result is cached: the failing check
	// is not even run.
	os.WriteFile(flag, nil, 0o644)
	if code, out := run(t, cfg, t0.Add(5*time.Second)); code != 0 || !strings.Contains(out, "cached") {
		t.Errorf("cached: code %d %q", code, out)
	}
	// One failure of two allowed: still healthy.
	if code, out := run(t, cfg, t0.Add(12*time.Second)); code != 0 || !strings.Contains(out, "1 of 2") {
		t.Errorf("first failure: code %d %q", code, out)
	}
	// The next check is one app interval later, as Docker would run it.
	if code, out := run(t, cfg, t0.Add(13*time.Second)); code != 0 || !strings.Contains(out, "cached") {
		t.Errorf("between failures: code %d %q", code, out)
	}
	// The second consecutive failure turns it unhealthy.
	if code, _ := run(t, cfg, t0.Add(23*time.Second)); code != 1 {
		t.Errorf("second failure: want 1, got %d", code)
	}
	// Once unhealthy, every call runs the check, so recovery shows at once.
	os.Remove(flag)
	if code, out := run(t, cfg, t0.Add(24*time.Second)); code != 0 || strings.Contains(out, "cached") {
		t.Errorf("recovered: code %d %q", code, out)
	}
}

func TestWithoutStateTheCheckDecides(t *testing.T) {
	cfg := Config{State: filepath.Join(t.TempDir(), "missing-dir", "state"), Command: []string{"CMD", "false"}, Retries: 3}
	if code, _ := run(t, cfg, time.Now()); code != 1 {
		t.Errorf("want 1, got %d", code)
	}
	cfg.Command = []string{"CMD", "true"}
	if code, _ := run(t, cfg, time.Now()); code != 0 {
		t.Errorf("want 0, got %d", code)
	}
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	cfg := Config{TCP: addr, Timeout: time.Second}
	if code, out := run(t, cfg, time.Now()); code != 0 {
		t.Errorf("listening: code %d %q", code, out)
	}
	ln.Close()
	if code, out := run(t, cfg, time.Now()); code != 1 || !strings.Contains(out, "refused") {
		t.Errorf("closed: code %d %q", code, out)
	}
}

func TestCheckTimeoutAndBadForms(t *testing.T) {
	cfg := Config{Command: []string{"CMD", "sleep", "5"}, Timeout: 100 * time.Millisecond}
	start := time.Now()
	code, out := run(t, cfg, start)
	if code != 1 || !strings.Contains(out, "timed out") || time.Since(start) > 3*time.Second {
		t.Errorf("timeout: code %d %q after %s", code, out, time.Since(start))
	}
	for _, cmd := range [][]string{{"CMD"}, {"CMD-SHELL"}, {"WHAT", "x"}} {
		if code, _ := run(t, Config{Command: cmd}, start); code != 1 {
			t.Errorf("%q: want 1, got %d", cmd, code)
		}
	}
	code, out = run(t, Config{Command: []string{"CMD-SHELL", "echo nope; exit 3"}}, start)
	if code != 1 || !strings.Contains(out, "nope") {
		t.Errorf("output not reported: %d %q", code, out)
	}
}
