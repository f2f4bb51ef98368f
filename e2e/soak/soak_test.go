// Package soak SIGKILLs deployctl rollouts at random instants under HTTP
// load through a real Traefik, each followed by a normal rollout that must
// repair whatever the killed run left, with no failed request throughout.
//
// It is a package of its own, next to e2e/, so that `go test ./...` runs
// it in parallel with the e2e package instead of after it.
//
// Environment:
//
//	DEPLOYCTL_SOAK_ITERATIONS  killed+repair pairs (default 30; 0 skips)
//	DEPLOYCTL_SOAK_SEED        seed of the kill instants (default: the time)
package soak

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/harness"
	"github.com/deployctl/deployctl/internal/testenv"
)

// traefikVersion is the Traefik the soak runs against: the first v3, which
// a fresh machine builds first (.ci/run), so that the soak runs while the
// long v3.6.15 build the e2e package needs is made. What it tests is
// deployctl's repair of its own leftovers, the same on either version.
const traefikVersion = "v3.0.0"

// keep is --keep of every rollout: how many stopped versions may remain.
const keep = 3

// switchMode is --switch of every rollout: atomic, the default, unless
// DEPLOYCTL_SOAK_SWITCH says otherwise (gradual). With atomic the kills
// also land between a switch and its settle.
var switchMode = cmp.Or(os.Getenv("DEPLOYCTL_SOAK_SWITCH"), "atomic")

var deployctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deployctl-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	deployctlBin = filepath.Join(dir, "deployctl")
	// Static and stripped, as released (and as e2e builds it): the binary
	// is copied into containers as the probe.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", deployctlBin, "github.com/deployctl/deployctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building deployctl: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// envInt reads a non-negative integer from the environment.
func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}

// TestSoakSIGKILLedRollouts: a rollout SIGKILLed at any instant, from its
// process start to its exit, leaves a state in which no request fails, and
// the next normal rollout repairs it: it breaks the dead run's lock at once,
// removes half-made containers and drains what the dead run left running.
// After each pair, exactly the new version serves, the app has one running
// container plus at most --keep stopped ones that have served, and nothing
// else of the app (lock, stray container) is left.
func TestSoakSIGKILLedRollouts(t *testing.T) {
	iterations := int(envInt(t, "DEPLOYCTL_SOAK_ITERATIONS", 30))
	if iterations == 0 {
		t.Skip("DEPLOYCTL_SOAK_ITERATIONS=0")
	}
	seed := uint64(envInt(t, "DEPLOYCTL_SOAK_SEED", time.Now().UnixNano()&(1<<62-1)))
	t.Logf("soak: %d iterations, seed %d (rerun with DEPLOYCTL_SOAK_SEED=%d DEPLOYCTL_SOAK_ITERATIONS=%d)", iterations, seed, seed, iterations)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	started := time.Now()

	s := newSoak(t)
	if r := s.run("v0", false); r.code != 0 {
		t.Fatalf("first deploy: exit %d", r.code)
	}
	keepAlive := startLoad(t, s.traefik.EntryURL, s.app+".test", 100, true)
	fresh := startLoad(t, s.traefik.EntryURL, s.app+".test", 50, false)
	time.Sleep(500 * time.Millisecond)

	// A normal rollout's duration, process start to exit, under the same
	// load: the kill instants are drawn uniformly over it. The span is the
	// mean of every normal rollout so far (the repairs included), so that
	// it follows the machine's load; the seed fixes the fractions of it.
	var normal []time.Duration
	for _, v := range []string{"cal1", "cal2"} {
		r := s.run(v, false)
		if r.code != 0 {
			t.Fatalf("calibration rollout to %s: exit %d", v, r.code)
		}
		normal = append(normal, r.wall)
	}
	t.Logf("soak: a normal rollout takes %s", summary(normal))

	type iteration struct {
		at         time.Duration
		lastEvent  string
		exit       string
		killedWall time.Duration
		repairWall time.Duration
		repairs    []string
	}
	var its []iteration
	phases := map[string]int{}
	for i := range iterations {
		killedV, repairV := fmt.Sprintf("k%d", i), fmt.Sprintf("r%d", i)
		frac := rng.Float64()
		span := mean(normal)
		at := time.Duration(frac * float64(span))
		k := s.run(killedV, true, at)
		// The repair starts at once, as a retry in CI would: what the dead
		// run left is listed meanwhile (a snapshot as the repair begins).
		leftc := make(chan string, 1)
		go func() { leftc <- s.leftovers() }()
		r := s.run(repairV, false)
		left := <-leftc
		normal = append(normal, r.wall)
		it := iteration{at: at, lastEvent: k.lastEvent, exit: k.exit(), killedWall: k.wall, repairWall: r.wall, repairs: r.repairs()}
		its = append(its, it)
		phases[k.lastPhase()]++
		t.Logf("soak %2d: kill at %.3f x %s = %s (%s), last event %q; left: %s; repair rollout to %s: exit %d in %s; it said: %s",
			i, frac, span.Round(time.Millisecond), at.Round(time.Millisecond), it.exit, it.lastEvent, left, repairV, r.code, r.wall.Round(time.Millisecond), strings.Join(it.repairs, "; "))
		if r.code != 0 {
			t.Errorf("soak %d (seed %d, kill at %s, last event %q): the repair rollout to %s exited %d\n%s", i, seed, at, k.lastEvent, repairV, r.code, r.stderr)
		}
		// What a killed run left must not cost the next one its switch
		// (session 9: a lifted router Traefik still listed).
		for _, w := range r.repairs() {
			if switchMode == "atomic" && strings.Contains(w, "switching gradually") {
				t.Errorf("soak %d (seed %d, kill at %s, last event %q): the repair rollout to %s switched gradually: %s", i, seed, at, k.lastEvent, repairV, w)
			}
		}
		s.expectRepaired(t, fmt.Sprintf("soak %d (seed %d, kill at %s, last event %q)", i, seed, at, k.lastEvent), repairV, keepAlive, fresh)
		failed := false
		for _, l := range []*load{keepAlive, fresh} {
			if n := l.failed.Load(); n > 0 {
				failed = true
				t.Errorf("soak %d (seed %d, kill at %s, last event %q): %d of %d requests (%s) failed so far: %s",
					i, seed, at, k.lastEvent, n, l.sent.Load(), l.kind, strings.Join(l.firstFailures(10), "; "))
			}
		}
		if failed {
			// The failures' times against both runs' progress.
			t.Logf("soak %d: the killed run's progress:\n%s\nthe repair's progress:\n%s", i, k.stderr, r.stderr)
		}
		if t.Failed() {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	keepAlive.expectNoFailures(t)
	fresh.expectNoFailures(t)

	var kw, rw []time.Duration
	for _, it := range its {
		kw, rw = append(kw, it.killedWall), append(rw, it.repairWall)
	}
	t.Logf("soak: %d iterations in %s (seed %d); killed runs %s; repair rollouts %s; last phase reported before the kill: %v",
		len(its), time.Since(started).Round(time.Second), seed, summary(kw), summary(rw), phases)
}

// mean is the mean of ds (not empty).
func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// leftovers describes what a killed run left: the lock, and each
// container of the app that is not simply stopped.
func (s *soak) leftovers() string {
	ctx := context.Background()
	cs, err := s.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("name", s.app)})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, c := range cs.Items {
		name := strings.TrimPrefix(c.Names[0], "/")
		switch {
		case name == "deployctl-lock-"+s.app:
			out = append(out, "lock")
		case c.Labels[deploy.LabelRouteOf] != "":
			out = append(out, fmt.Sprintf("route %s %s %s", c.Labels[deploy.LabelRouteLevel], c.Labels[deploy.LabelVersion], c.State))
		case c.Labels[deploy.LabelHelperOf] != "":
			out = append(out, fmt.Sprintf("helper %s", c.State))
		case c.State != container.StateExited:
			out = append(out, fmt.Sprintf("%s %s (%s)", c.Labels[deploy.LabelVersion], c.State, c.Status))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// summary is "mean m, max x" of ds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	return fmt.Sprintf("mean %s, max %s", mean(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond))
}

// soak is one app behind one Traefik, and the versions of its image.
type soak struct {
	t       *testing.T
	cli     *client.Client
	network string
	traefik *testenv.Traefik
	repo    string
	app     string
}

func newSoak(t *testing.T) *soak {
	t.Helper()
	cli := testenv.Docker(t)
	network := testenv.Network(t, cli)
	tr := testenv.StartTraefik(t, traefikVersion, network)
	// One image (FROM scratch, HEALTHCHECK every 1s, serving 1s after
	// SIGTERM while /health fails, like e2e's), tagged once per version;
	// each rollout sets APP_VERSION, so GET / says which version serves.
	ref := testenv.AppImage(t, cli, testenv.AppImageOptions{
		Tag: "v0", Version: "v0",
		Healthcheck: &testenv.Healthcheck{Interval: time.Second, Timeout: 5 * time.Second, Retries: 3},
		Env:         map[string]string{"DRAIN": "1s"},
	})
	repo, _, _ := strings.Cut(ref, ":")
	app := "soak-" + testenv.RunID()
	s := &soak{t: t, cli: cli, network: network, traefik: tr, repo: repo, app: app}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), harness.CleanupTimeout)
		defer cancel()
		vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("label", "deployctl.history="+app)})
		if err == nil {
			for _, v := range vols.Items {
				cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{})
			}
		}
		cli.ContainerRemove(ctx, "deployctl-lock-"+app, client.ContainerRemoveOptions{Force: true})
		// Containers of the tags first: the image's own cleanup removes
		// only those of its first tag.
		cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", deploy.LabelApp+"="+app)})
		if err == nil {
			for _, c := range cs.Items {
				cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
			}
		}
	})
	return s
}

// tag makes repo:version an alias of the app image, removed at the end.
func (s *soak) tag(version string) {
	s.t.Helper()
	if version == "v0" {
		return
	}
	ctx := context.Background()
	if _, err := s.cli.ImageTag(ctx, client.ImageTagOptions{Source: s.repo + ":v0", Target: s.repo + ":" + version}); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		s.cli.ImageRemove(context.Background(), s.repo+":"+version, client.ImageRemoveOptions{})
	})
}

// outcome is one deployctl rollout.
type outcome struct {
	code      int // -1: killed
	killed    bool
	wall      time.Duration
	stderr    string
	events    []progressEvent
	lastEvent string
}

// progressEvent is one line of --progress=json.
type progressEvent struct {
	Phase     string `json:"phase"`
	Status    string `json:"status"`
	Container string `json:"container"`
	Message   string `json:"message"`
}

func (ev progressEvent) String() string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", ev.Phase, ev.Status, ev.Container, ev.Message))
}

func (r outcome) exit() string {
	if r.killed {
		return "killed"
	}
	return fmt.Sprintf("exited %d before the kill", r.code)
}

// lastPhase is the phase of the last progress event before the kill
// ("none": killed before the first).
func (r outcome) lastPhase() string {
	if len(r.events) == 0 {
		return "none"
	}
	ev := r.events[len(r.events)-1]
	return ev.Phase + " " + ev.Status
}

// repairs are the warnings of a run: what it found left behind.
func (r outcome) repairs() []string {
	var out []string
	for _, ev := range r.events {
		if ev.Status == string(deploy.StatusWarn) {
			out = append(out, ev.Message)
		}
	}
	if len(out) == 0 {
		out = []string{"no warning"}
	}
	return out
}

// run rolls the app out to version (the first call is the first deploy).
// With kill, the process is SIGKILLed killAt[0] after it was started, unless
// it exits before.
func (s *soak) run(version string, kill bool, killAt ...time.Duration) outcome {
	s.t.Helper()
	s.tag(version)
	args := []string{"rollout", "--app", s.app, "--image", s.repo, "--version", version, "--network", s.network,
		"--env", "APP_VERSION=" + version, "--keep", strconv.Itoa(keep), "--switch", switchMode,
		"--label", "traefik.enable=true",
		"--label", fmt.Sprintf("traefik.http.routers.%s.rule=Host(`%s.test`)", s.app, s.app),
		"--label", fmt.Sprintf("traefik.http.services.%s.loadbalancer.server.port=8080", s.app)}
	cmd := exec.Command(deployctlBin, args...)
	cmd.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+s.traefik.APIURL, "DEPLOYCTL_POLL_INTERVAL=50ms", "DEPLOYCTL_PROGRESS=json")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var r outcome
	start := time.Now()
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	var killed atomic.Bool
	if kill {
		timer := time.AfterFunc(killAt[0], func() {
			killed.Store(true)
			cmd.Process.Kill() // SIGKILL
		})
		defer timer.Stop()
	}
	var all strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		var ev progressEvent
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Phase != "" {
			r.events = append(r.events, ev)
			r.lastEvent = ev.String()
		}
	}
	err = cmd.Wait()
	r.wall = time.Since(start)
	r.stderr = all.String()
	if exit, ok := err.(*exec.ExitError); ok {
		r.code = exit.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	// Killed only if the signal found the process still running.
	r.killed = killed.Load() && r.code == -1
	if !kill && r.code != 0 {
		s.t.Logf("deployctl %s -> exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	if kill && !r.killed && r.code != 0 {
		s.t.Errorf("rollout to %s ended by itself before the kill with exit %d\n%s", version, r.code, r.stderr)
	}
	return r
}

// expectRepaired checks the state after a repair rollout to version: it
// serves, one container of the app runs, at most --keep stopped ones remain
// and each of them has served requests of loads (none half-made), no lock,
// no stray container named after the app.
func (s *soak) expectRepaired(t *testing.T, what, version string, loads ...*load) {
	t.Helper()
	ctx := context.Background()
	resp, err := get(s.traefik.EntryURL, s.app+".test")
	if err != nil || !strings.Contains(resp, version) {
		t.Errorf("%s: GET through Traefik: %q %v; want %s serving", what, resp, err, version)
	}
	cs, err := s.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("name", s.app)})
	if err != nil {
		t.Fatal(err)
	}
	var running, stopped, routes []string
	for _, c := range cs.Items {
		name := strings.TrimPrefix(c.Names[0], "/")
		desc := fmt.Sprintf("%s (%s, %s)", name, c.Labels[deploy.LabelVersion], c.State)
		switch {
		case name == "deployctl-lock-"+s.app:
			t.Errorf("%s: lock container left: %s", what, desc)
		case c.Labels[deploy.LabelRouteOf] == s.app:
			// The rollouts switch atomically: one route container, at the
			// user's level, routes the app to the version that serves.
			routes = append(routes, fmt.Sprintf("%s (%s, %s, %s)", name, c.Labels[deploy.LabelRouteLevel], c.Labels[deploy.LabelVersion], c.State))
			if c.State != container.StateRunning || c.Labels[deploy.LabelRouteLevel] != deploy.RouteUser || c.Labels[deploy.LabelVersion] != version {
				t.Errorf("%s: route container %s, want only one, running, at the user's level, for %s", what, routes[len(routes)-1], version)
			}
		case c.Labels[deploy.LabelHelperOf] == s.app:
			t.Errorf("%s: connection-counting helper left: %s", what, desc)
		case c.Labels[deploy.LabelApp] != s.app:
			t.Errorf("%s: stray container named after the app: %s", what, desc)
		case c.State == container.StateRunning:
			running = append(running, desc)
			if c.Labels[deploy.LabelVersion] != version {
				t.Errorf("%s: running: %s, want only %s", what, desc, version)
			}
		case c.State == container.StateExited:
			stopped = append(stopped, desc)
			v := c.Labels[deploy.LabelVersion]
			if !slices.ContainsFunc(loads, func(l *load) bool { _, ok := l.served.Load(v); return ok }) {
				t.Errorf("%s: kept for rollback but never answered a request through Traefik (half-made): %s", what, desc)
			}
		default: // created (never started: half-made), dead, restarting, ...
			t.Errorf("%s: container left half-made: %s", what, desc)
		}
	}
	if wantRoutes := map[string]int{"atomic": 1}[switchMode]; len(running) != 1 || len(stopped) > keep || len(routes) != wantRoutes {
		t.Errorf("%s: running %v, stopped %v, route containers %v; want 1 running, at most %d stopped, %d route container(s)", what, running, stopped, routes, keep, wantRoutes)
	}
	// What deployctl itself says of the app: no problem, no lock.
	st := exec.Command(deployctlBin, "status", "--app", s.app, "--json")
	st.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+s.traefik.APIURL)
	out, err := st.Output()
	var apps []deploy.AppStatus
	if err != nil || json.Unmarshal(out, &apps) != nil || len(apps) != 1 {
		t.Errorf("%s: deployctl status --json: %v %q", what, err, out)
	} else if len(apps[0].Problems) > 0 || apps[0].Lock != nil {
		t.Errorf("%s: deployctl status: problems %q, lock %v", what, apps[0].Problems, apps[0].Lock)
	}
}

// get is one GET of / through Traefik with Host: host.
func get(entryURL, host string) (string, error) {
	status, body, err := testenv.Get(entryURL+"/", host)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s", status, body), nil
}

// load sends GET / through Traefik at a constant rate, on schedule even
// while earlier requests are slow, until finished.
type load struct {
	kind         string
	sent, failed atomic.Int64
	served       sync.Map // version -> true, from the answers
	mu           sync.Mutex
	failures     []string
	stop         chan struct{}
	done         sync.WaitGroup
}

func startLoad(t *testing.T, entryURL, host string, rate int, keepAlive bool) *load {
	t.Helper()
	l := &load{kind: "fresh connections", stop: make(chan struct{})}
	if keepAlive {
		l.kind = "keep-alive"
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableKeepAlives: !keepAlive}, Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.done.Add(1)
			go func() {
				defer l.done.Done()
				l.sent.Add(1)
				req, _ := http.NewRequest("GET", entryURL+"/", nil)
				req.Host = host
				resp, err := c.Do(req)
				if err == nil {
					body, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
					resp.Body.Close()
					switch {
					case rerr != nil:
						err = rerr
					case resp.StatusCode != 200:
						err = fmt.Errorf("status %d", resp.StatusCode)
					default:
						// Which version answered: a stopped version
						// kept for rollback must be one that served.
						for _, f := range strings.Fields(string(body)) {
							if v, ok := strings.CutPrefix(f, "version="); ok {
								l.served.Store(v, true)
							}
						}
						return
					}
				}
				l.failed.Add(1)
				l.mu.Lock()
				l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
				l.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(l.finish)
	return l
}

func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

func (l *load) firstFailures(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures[:min(n, len(l.failures))]
}

// expectNoFailures stops the load and fails the test on any failed request.
func (l *load) expectNoFailures(t *testing.T) {
	t.Helper()
	l.finish()
	t.Logf("load (%s): %d requests, %d failed", l.kind, l.sent.Load(), l.failed.Load())
	if l.sent.Load() == 0 {
		t.Fatal("load sent no requests")
	}
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests (%s) through Traefik failed: %s", n, l.sent.Load(), l.kind, strings.Join(l.firstFailures(10), "; "))
	}
}
