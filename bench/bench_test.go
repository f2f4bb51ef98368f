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
	cfg := Smoke()
	rep := runSmoke(t, cfg, "go test ./bench -run TestSmoke (= go run ./bench -smoke)")
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

// smokeTimeout bounds a smoke run, including the release build of
// deployctl it starts with: 2 min 44 s of it in a CI run beside the Traefik
// builds and the -race unit tests (load 20 on 2 cores), where 4 minutes
// ran out in the last rollout and interrupted it (exit 130).
const smokeTimeout = 12 * time.Minute

// runSmoke runs cfg within smokeTimeout, logs its tables under command,
// and fails the test if the run failed. Docker is required (a skip, or
// with CI set a failure, without an engine); a fresh machine builds
// Traefik first (10+ minutes, maybe waiting for another package's tests
// building it), which is not part of the smoke run's time.
func runSmoke(t *testing.T, cfg Config, command string) *Report {
	t.Helper()
	testenv.Docker(t)
	cfg.Out = "-"
	testenv.TraefikBinary(t, cfg.Traefik)
	ctx, cancel := context.WithTimeout(context.Background(), smokeTimeout)
	defer cancel()
	rep, err := Run(ctx, cfg, &testLog{t: t})
	if rep != nil {
		rep.Command = command
		var out bytes.Buffer
		PrintTables(&out, rep)
		t.Logf("%s", out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestReplicasSmoke runs the replicas suite's smoke version (go run ./bench
// -smoke -replicas 2 -surges 1 -rollouts 1 -kinds lameduck): a first deploy
// of 2 replicas, then one deployctl rollout v1 -> v2 with --max-surge 1
// under 100 req/s per client mode, and requires that no request failed,
// that Traefik never listed fewer than 2 UP servers of the app and Docker
// never ran more than 3 of its containers.
func TestReplicasSmoke(t *testing.T) {
	cfg := ReplicasSmoke()
	rep := runSmoke(t, cfg, "go test ./bench -run TestReplicasSmoke")
	if len(rep.Scenarios) != 1 {
		t.Fatalf("%d scenarios ran, want 1", len(rep.Scenarios))
	}
	s := rep.Scenarios[0]
	if s.Summary.N != 1 || s.Replica == nil {
		t.Fatalf("%d rollouts succeeded (want 1), replica summary %+v", s.Summary.N, s.Replica)
	}
	rs := s.Replica
	if rs.Floor != 2 || rs.MaxRunning != 3 {
		t.Errorf("budget floor %d, max running %d; want 2, 3", rs.Floor, rs.MaxRunning)
	}
	if rs.MinUp < rs.Floor {
		t.Errorf("Traefik listed %d UP servers at the fewest, below the floor %d", rs.MinUp, rs.Floor)
	}
	if rs.PeakContainers > rs.MaxRunning || rs.PeakContainers < rs.Replicas+1 {
		t.Errorf("peak running containers %d; want between %d and %d", rs.PeakContainers, rs.Replicas+1, rs.MaxRunning)
	}
	if rs.Steps != 2 {
		t.Errorf("%d steps, want 2", rs.Steps)
	}
	for _, l := range s.Load {
		if l.Sent < cfg.Rate {
			t.Errorf("%s: only %d requests sent", l.Mode, l.Sent)
		}
		if l.Failed > 0 {
			t.Errorf("%s: %d of %d requests failed: %v; first: %s", l.Mode, l.Failed, l.Sent, l.ByKind, strings.Join(l.FirstFailures, "; "))
		}
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

func TestReplicaObservers(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	set := func(urls ...string) map[string]bool {
		m := map[string]bool{}
		for _, u := range urls {
			m[u] = true
		}
		return m
	}
	w := &traefikWatcher{snaps: []snapshot{
		{at(0), set("a", "b")},
		{at(100), set("a")}, // before the window: not counted
		{at(200), set("a", "b")},
		{at(400), set("a", "b", "c")},
		{at(500), set("b", "c")},
		{at(900), set()}, // after the window
	}}
	// In force at 250: {a b}; then {a b c}, {b c}.
	if got := w.minCount(at(250), at(800)); got != 2 {
		t.Errorf("minCount = %d, want 2", got)
	}
	if got := w.minCount(at(50), at(150)); got != 1 {
		t.Errorf("minCount = %d, want 1", got)
	}

	ev := &eventWatcher{events: []dockerEvent{
		{t: at(0), id: "o1", action: "start", app: "web"},
		{t: at(0), id: "o2", action: "start", app: "web"},
		{t: at(10), id: "x", action: "start", app: "other"},
		{t: at(300), id: "n1", action: "start", app: "web"},
		{t: at(400), id: "o1", action: "die", app: "web"},
		{t: at(500), id: "n2", action: "start", app: "web"},
		{t: at(600), id: "n3", action: "start", app: "web"}, // after the window
	}}
	if got := ev.peakRunning("web", at(200), at(550)); got != 3 {
		t.Errorf("peakRunning = %d, want 3", got)
	}
	if got := ev.peakRunning("web", at(100), at(200)); got != 2 {
		t.Errorf("peakRunning with no event in the window = %d, want 2", got)
	}

	r := &Rollout{WallS: 3, End: at(3000)}
	for _, l := range []string{"create start step 1/2: starting 1", "register done step 1/2: x", "create start step 2/2: starting 1"} {
		f := strings.SplitN(l, " ", 3)
		r.events = append(r.events, evStamp{phase: f[0], status: f[1], rest: f[2]})
	}
	r.events[0].t, r.events[1].t, r.events[2].t = at(100), at(900), at(1200)
	if n, ss := steps(r); n != 2 || len(ss) != 2 || ss[0] != 1.1 || ss[1] != 1.8 {
		t.Errorf("steps = %d, %v; want 2, [1.1 1.8]", n, ss)
	}
}

// TestSwitchSmoke runs the switch suite once per switch (go run ./bench
// -switch -smoke -rollouts 1): no failed request with either switch, no
// mixed page/asset pair after the atomic switch's instant, the 2 s request
// open at each rollout answered, and the old container's connections
// counted at its signal.
func TestSwitchSmoke(t *testing.T) {
	cfg := SwitchSmoke()
	rep := runSmoke(t, cfg, "go test ./bench -run TestSwitchSmoke")
	if len(rep.Switch) != 2 {
		t.Fatalf("switch rows %+v, want atomic and gradual", rep.Switch)
	}
	for _, s := range rep.Switch {
		if s.Rollouts != 1 || s.Failed > 0 || s.LongFailed > 0 || s.Sent < cfg.Rate || len(s.Errors) > 0 {
			t.Errorf("%s: %+v; want 1 rollout, no failed request, the 2 s request answered", s.Switch, s)
		}
		if s.Switch == "atomic" && (s.PairsAfter == 0 || s.MixedAfter > 0 || len(s.InFlight) != 1) {
			t.Errorf("atomic: %d pairs after the switch, %d mixed, in flight at signal %v; want some, none, one count", s.PairsAfter, s.MixedAfter, s.InFlight)
		}
	}
}

// TestComposeSmoke runs the compose suite once each way (go run ./bench
// -compose -smoke): deployctl's first rollout of a compose service after
// docker compose up made it fails no request; docker compose up -d's is
// counted beside it.
func TestComposeSmoke(t *testing.T) {
	cfg := ComposeSmoke()
	rep := runSmoke(t, cfg, "go test ./bench -run TestComposeSmoke")
	if len(rep.Compose) != 2 {
		t.Fatalf("compose rows %+v, want deployctl and compose-up", rep.Compose)
	}
	for _, c := range rep.Compose {
		t.Logf("%s: %d rollout(s), %d of %d requests failed, wall %v s", c.Method, c.Rollouts, c.Failed, c.Sent, c.WallS)
		if c.Rollouts != 1 || c.Sent < cfg.Rate || len(c.Errors) > 0 {
			t.Errorf("%s: %+v; want 1 rollout under load, no error", c.Method, c)
		}
		if c.Method == MethodDeployctl && c.Failed > 0 {
			t.Errorf("deployctl: %d of %d requests failed", c.Failed, c.Sent)
		}
	}
}

// TestSwarmSmoke runs the Swarm suite once each way (go run ./bench -swarm
// -smoke): on a Swarm of its own with Traefik polling every second,
// deployctl's rollout of a service of 3 replicas fails no request;
// docker service update --update-order start-first's is counted beside it.
func TestSwarmSmoke(t *testing.T) {
	testenv.RequireRoot(t, "to make network namespaces for a Swarm of its own")
	cfg := SwarmSmoke()
	rep := runSmoke(t, cfg, "go test ./bench -run TestSwarmSmoke")
	if len(rep.Swarm) != 2 {
		t.Fatalf("swarm rows %+v, want deployctl and start-first", rep.Swarm)
	}
	for _, c := range rep.Swarm {
		t.Logf("%s (poll %ds): %d rollout(s), %d of %d requests failed, wall %v s", c.Method, c.PollS, c.Rollouts, c.Failed, c.Sent, c.WallS)
		if c.Rollouts != 1 || c.Sent < cfg.Rate || len(c.Errors) > 0 {
			t.Errorf("%s: %+v; want 1 rollout under load, no error", c.Method, c)
		}
		if c.Method == MethodDeployctl && c.Failed > 0 {
			t.Errorf("deployctl: %d of %d requests failed", c.Failed, c.Sent)
		}
	}
}
