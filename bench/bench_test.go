package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/testenv"
)

// TestSmoke runs the benchmark's smoke version (go run ./bench -smoke): two
// deployctl rollouts for each app kind under 100 req/s per client mode
// through a real Traefik, and requires that no request failed. Like the
// end-to-end tests it skips without a Docker engine, unless CI is set.
func TestSmoke(t *testing.T) {
	testenv.Docker(t) // skip (or, with CI set, fail) without an engine
	cfg := Smoke()
	cfg.Out = "-"
	// A fresh machine builds Traefik first (10+ minutes, maybe waiting for
	// another package's tests building it): not part of the smoke run's time.
	testenv.TraefikBinary(t, cfg.Traefik)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, &testLog{t: t})
	if rep != nil {
		rep.Command = "go test ./bench -run TestSmoke (= go run ./bench -smoke)"
		var out bytes.Buffer
		PrintTables(&out, rep)
		t.Logf("%s", out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, s := range rep.Scenarios {
		ran = append(ran, s.Kind)
		if s.Summary.N != cfg.Rollouts || s.Summary.Errors > 0 {
			t.Errorf("%s: %d rollouts succeeded, %d failed; want %d", s.Kind, s.Summary.N, s.Summary.Errors, cfg.Rollouts)
		}
		for _, l := range s.Load {
			if l.Sent < cfg.Rate {
				t.Errorf("%s/%s: only %d requests sent", s.Kind, l.Mode, l.Sent)
			}
			if l.Failed > 0 {
				t.Errorf("%s/%s: %d of %d requests failed during deployctl rollouts: %v; first: %s",
					s.Kind, l.Mode, l.Failed, l.Sent, l.ByKind, strings.Join(l.FirstFailures, "; "))
			}
		}
	}
	if len(ran) != len(cfg.Kinds) {
		t.Errorf("scenarios ran for %v, want %v", ran, cfg.Kinds)
	}
}

// testLog writes the benchmark's progress lines to t.Log.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func TestParseProgress(t *testing.T) {
	now := time.Date(2026, 11, 22, 21, 10, 0, 0, time.Local)
	ev, ok := parseProgress("21:09:58.123 register   done    web-v2-1a2b3c http://10.0.0.3:8080 in Traefik service web@docker (412ms)", now)
	if !ok || ev.phase != "register" || ev.status != "done" || !strings.HasPrefix(ev.rest, "web-v2-1a2b3c") {
		t.Fatalf("parsed %+v, %v", ev, ok)
	}
	if want := time.Date(2026, 11, 22, 21, 9, 58, 123e6, time.Local); !ev.t.Equal(want) {
		t.Errorf("time %v, want %v", ev.t, want)
	}
	// Just after midnight, a line from before it belongs to the day before.
	ev, _ = parseProgress("23:59:59.900 drain      done", time.Date(2026, 11, 23, 0, 0, 1, 0, time.Local))
	if want := time.Date(2026, 11, 22, 23, 59, 59, 900e6, time.Local); !ev.t.Equal(want) {
		t.Errorf("time %v, want %v", ev.t, want)
	}
	if _, ok := parseProgress("deployctl: rollout failed", now); ok {
		t.Error("parsed a line without a timestamp")
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Now()
	ms := time.Millisecond
	samples := []sample{
		{at: t0, latency: 2 * ms},
		{at: t0.Add(1 * time.Second), latency: 10 * ms, fail: "5xx:502"},
		{at: t0.Add(2 * time.Second), latency: 5 * time.Second, fail: FailTimeout},
		{at: t0.Add(3 * time.Second), latency: 3 * ms},
	}
	st := summarize(ModeFresh, 100, samples, []window{{t0.Add(500 * ms), t0.Add(2500 * ms)}})
	if st.Sent != 4 || st.Failed != 2 || st.ByKind["5xx"] != 1 || st.ByKind["5xx:502"] != 1 || st.ByKind[FailTimeout] != 1 {
		t.Errorf("stats %+v", st)
	}
	if st.Steady.N != 2 || st.Switch.N != 2 || st.Switch.Max != 5000 || st.Steady.Max != 3 {
		t.Errorf("steady %+v, switch %+v", st.Steady, st.Switch)
	}
}
