package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/testenv"
)

// TestAtomicSwitch is the routing cutover (issue 12) against Traefik
// v3.0.0; traefikv2_test.go runs it against v2.11.0. Every rollout runs
// under load through Traefik: plain requests at 300/s and a page-then-asset
// client at 100 pairs/s (500 requests/s in all).
//
//   - app A starts as a container made by plain `docker run` with a
//     read-only root filesystem (no probe, not deployctl's) and is rolled
//     out atomically twice (the first time with --watch),
//     then rolled back (atomically);
//   - app B is deployed by deployctl (with the probe), rolled out with
//     --switch gradual (the baseline: its mixed pairs are counted), then
//     atomically with --watch to a version that turns unhealthy in the
//     watch window, which switches back atomically.
func TestAtomicSwitch(t *testing.T) {
	testAtomicSwitch(t, traefikFirstV3)
}

func testAtomicSwitch(t *testing.T, traefikVersion string) {
	e := newEnv(t, traefikVersion)
	repo := appImages(t, e.cli, "v1", "v2", "v3", "v4")

	// run runs deployctl under the load and checks it: exit code want, no
	// failed request, and with an atomic switch no mixed pair among those
	// that started after the switch instant.
	run := func(host string, want int, args ...string) *deploy.Result {
		t.Helper()
		pairs := startPairs(t, e.traefik.EntryURL, host, 100)
		plain := startLoad(t, e.traefik.EntryURL, host, 300, true)
		time.Sleep(500 * time.Millisecond)
		r := e.deployctl(args...)
		if r.code != want {
			t.Fatalf("deployctl %s: exit %d, want %d", strings.Join(args, " "), r.code, want)
		}
		time.Sleep(500 * time.Millisecond)
		plain.expectNoFailures(t)
		res := r.json.Result
		var at time.Time
		if res != nil && res.SwitchedAt != nil {
			at = *res.SwitchedAt
		}
		st := pairs.stop(at)
		t.Logf("deployctl %s: %d pairs, %d failed; %d started after the switch instant, %d of them mixed; %d mixed in all",
			strings.Join(args, " "), st.pairs, st.failed, st.after, st.mixedAfter, st.mixed)
		if st.failed > 0 {
			t.Errorf("%d page+asset pairs failed: %s", st.failed, strings.Join(first(st.failures, 5), "; "))
		}
		if res != nil && res.Switch == deploy.SwitchAtomic {
			if st.after == 0 {
				t.Errorf("no pair started after the switch instant")
			}
			if st.mixedAfter > 0 {
				t.Errorf("%d pairs that started after the switch instant got the page and the asset from different versions: %s", st.mixedAfter, strings.Join(first(st.mixedSamples, 5), "; "))
			}
		}
		return res
	}
	expectSwitch := func(res *deploy.Result, want deploy.SwitchMode) {
		t.Helper()
		if res == nil || res.Switch != want || (want == deploy.SwitchAtomic) != (res.SwitchedAt != nil) {
			t.Errorf("result %+v: want switch %s, with an instant if atomic", res, want)
		}
	}

	// App A: from a docker-run, read-only container.
	appA := e.appName("swa")
	hostA := appA + ".test"
	v1 := testenv.StartContainer(t, e.cli, testenv.ContainerOptions{
		Image: repo + ":v1", Network: e.network, ReadOnly: true,
		Labels: map[string]string{
			"traefik.enable":                                              "true",
			"traefik.http.routers." + appA + ".rule":                      fmt.Sprintf("Host(`%s`)", hostA),
			"traefik.http.services." + appA + ".loadbalancer.server.port": "8080",
			"team": appA,
		},
	})
	testenv.WaitHealth(t, e.cli, v1, "healthy", time.Minute)
	waitServing(t, e, hostA, "v1")
	// --watch: the switch, not a probe v1 lacks, keeps v1 ready to take over.
	kills := e.watchKills(v1)
	res := run(hostA, 0, "rollout", "--image", repo, "--version", "v2", "--app", appA, "--switch", "atomic", "--select", "team="+appA, "--watch", "2s")
	expectSwitch(res, deploy.SwitchAtomic)
	if kill := kills.first(); res == nil || res.SwitchedAt == nil || kill.IsZero() || !res.SwitchedAt.Before(kill) {
		t.Errorf("v1 signalled at %v, the switch confirmed at %v: want the switch first", kill, res.SwitchedAt)
	}
	if len(res.Old) != 1 || res.Old[0].Drain != deploy.DrainSwitch {
		t.Errorf("old containers %+v, want v1 taken out by the switch", res.Old)
	} else if n := res.Old[0].InFlightAtSignal; n == nil || *n != 0 {
		t.Errorf("v1's connections in flight at its signal: %v, want counted (by a helper in its network namespace) and 0", n)
	}
	if testenv.Inspect(t, e.cli, v1).State.Running {
		t.Errorf("v1 still running after the rollout")
	}
	expectRoutes(t, e, appA, "v2")
	res = run(hostA, 0, "rollout", "--image", repo, "--version", "v3", "--app", appA, "--switch", "atomic")
	expectSwitch(res, deploy.SwitchAtomic)
	expectRoutes(t, e, appA, "v3")
	res = run(hostA, 0, "rollback", "--app", appA)
	expectSwitch(res, deploy.SwitchAtomic)
	expectRoutes(t, e, appA, "v2")
	waitServing(t, e, hostA, "v2")

	// App B: deployctl's own containers, two replicas: gradual, then
	// atomic, then atomic to a version that fails in the watch window.
	appB := e.appName("swb")
	hostB := appB + ".test"
	e.firstDeploy(appB, repo, "v1", "--replicas", "2")
	res = run(hostB, 0, "rollout", "--image", repo, "--version", "v2", "--app", appB, "--switch", "gradual")
	expectSwitch(res, deploy.SwitchGradual)
	waitServing(t, e, hostB, "v2")
	res = run(hostB, 0, "rollout", "--image", repo, "--version", "v3", "--app", appB, "--switch", "atomic")
	expectSwitch(res, deploy.SwitchAtomic)
	if res != nil && (len(res.NewContainers) != 2 || len(res.Old) != 2) {
		t.Errorf("atomic rollout of 2 replicas: new %+v, old %+v", res.NewContainers, res.Old)
	}
	expectRoutes(t, e, appB, "v3")
	run(hostB, 1, "rollout", "--image", repo, "--version", "v4", "--app", appB, "--switch", "atomic", "--env", "UNHEALTHY_AFTER=6s", "--watch", "30s")
	waitServing(t, e, hostB, "v3")
	expectRoutes(t, e, appB, "v3")
	for _, c := range e.containers(appB) {
		if c.Running() && c.Labels[deploy.LabelVersion] != "v3" {
			t.Errorf("after the watch window's restore %s (%s) runs", c.Name, c.Labels[deploy.LabelVersion])
		}
	}
}

// expectRoutes checks the steady state after an atomic rollout: one route
// container of the app, at the user's level, for version, and Traefik's
// router under the user's name routing to version's service.
func expectRoutes(t *testing.T, e *env, app, version string) {
	t.Helper()
	routes, err := e.rt.List(context.Background(), map[string]string{deploy.LabelRouteOf: app})
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	for _, c := range routes {
		if c.Running() {
			running = append(running, fmt.Sprintf("%s (%s, %s)", c.Name, c.Labels[deploy.LabelRouteLevel], c.Labels[deploy.LabelVersion]))
		}
	}
	want := fmt.Sprintf("(%s, %s)", deploy.RouteUser, version)
	if len(running) != 1 || !strings.HasSuffix(running[0], want) {
		t.Errorf("running route containers of %s: %v, want one %s", app, running, want)
	}
	// The run removed the lifted route container last, without waiting
	// for Traefik's next reload (its router routes to the same servers
	// meanwhile): within a few throttles, only the user's router is left.
	var problems []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		routers, err := e.api.Routers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		problems = problems[:0]
		for _, r := range routers {
			if r.Name == app+"@docker" {
				found = true
				if r.Service != app+"-"+version || r.Status != "enabled" {
					t.Errorf("router %s: service %s, status %s; want %s-%s, enabled", r.Name, r.Service, r.Status, app, version)
				}
			}
			if r.Name != app+"@docker" && r.Rule == fmt.Sprintf("Host(`%s.test`)", app) {
				problems = append(problems, fmt.Sprintf("router %s (rule %s) is still listed: only %s@docker should route the app once the rollout is over", r.Name, r.Rule, app))
			}
		}
		if !found {
			t.Errorf("Traefik lists no router %s@docker", app)
		}
		if len(problems) == 0 || !found || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// waitServing waits until Traefik answers for host with version.
func waitServing(t *testing.T, e *env, host, version string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body, err := testenv.Get(e.traefik.EntryURL+"/", host)
		if err == nil && status == 200 && strings.Contains(body, "version="+version+" ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s through Traefik: %d %q %v; want 200 from %s", host, status, body, err, version)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pairLoad is a browser loading a page and then an asset the page names
// (a hashed bundle of the version that served the page), at a constant
// rate. A pair is mixed when the asset came from another version than the
// page: a real app would answer 404 for it.
type pairLoad struct {
	stopc chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	list  []pairResult
}

type pairResult struct {
	start       time.Time
	page, asset string
	err         error
}

type pairStats struct {
	pairs, failed, after, mixed, mixedAfter int
	failures, mixedSamples                  []string
}

func startPairs(t *testing.T, entryURL, host string, rate int) *pairLoad {
	t.Helper()
	p := &pairLoad{stopc: make(chan struct{})}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	get := func(path string) (string, error) {
		req, _ := http.NewRequest("GET", entryURL+path, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if err != nil {
			return "", err
		}
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
		}
		for _, f := range strings.Fields(string(body)) {
			if v, ok := strings.CutPrefix(f, "version="); ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("GET %s: no version in %q", path, body)
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		defer tick.Stop()
		for {
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
			p.done.Add(1)
			go func() {
				defer p.done.Done()
				r := pairResult{start: time.Now()}
				r.page, r.err = get("/")
				if r.err == nil {
					r.asset, r.err = get("/assets/app." + r.page + ".js")
				}
				p.mu.Lock()
				p.list = append(p.list, r)
				p.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { p.stop(time.Time{}) })
	return p
}

// stop ends the load and counts the pairs, those started after at (the
// switch instant; zero: none counts as after), and the mixed ones.
func (p *pairLoad) stop(at time.Time) pairStats {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	var st pairStats
	list := slices.Clone(p.list)
	slices.SortFunc(list, func(a, b pairResult) int { return a.start.Compare(b.start) })
	for _, r := range list {
		st.pairs++
		after := !at.IsZero() && r.start.After(at)
		if after {
			st.after++
		}
		if r.err != nil {
			st.failed++
			st.failures = append(st.failures, r.start.Format("15:04:05.000")+" "+r.err.Error())
			continue
		}
		if r.page != r.asset {
			st.mixed++
			if after {
				st.mixedAfter++
				st.mixedSamples = append(st.mixedSamples, fmt.Sprintf("%s page %s asset %s", r.start.Format("15:04:05.000"), r.page, r.asset))
			}
		}
	}
	return st
}

// TestAtomicSwitchLetsLongRequestsFinish: a 15 s request and a 15 s
// server-sent event stream open on the old version when the atomic switch
// happens (a rollout takes about 5 s to get there, up to 10 s on a busy
// host). The
// app exits at once on SIGTERM (SHUTDOWN=exit), so anything still open at
// its signal is cut: with --drain-timeout 30s both finish; with 1s the
// result says how many were still open.
func TestAtomicSwitchLetsLongRequestsFinish(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3")
	app := e.appName("long")
	host := app + ".test"
	e.firstDeploy(app, repo, "v1", "--env", "SHUTDOWN=exit")
	c := &http.Client{Timeout: time.Minute}
	get := func(path string) (string, error) {
		req, _ := http.NewRequest("GET", e.traefik.EntryURL+path, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return string(body), err
	}
	type answer struct {
		body string
		err  error
	}
	open := func(path string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			b, err := get(path)
			ch <- answer{b, err}
		}()
		return ch
	}

	slow := open("/slow?d=15s")
	events := open("/events?n=75&every=200ms")
	time.Sleep(500 * time.Millisecond) // both open on v1
	start := time.Now()
	r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app, "--switch", "atomic")
	if r.code != 0 {
		t.Fatalf("rollout v2: exit %d", r.code)
	}
	if !regexp.MustCompile(`[1-9][0-9]* connection\(s\) in flight on the old version`).MatchString(r.stderr) {
		t.Errorf("the progress never showed the request and the stream in flight on v1")
	}
	if a := <-slow; a.err != nil || !strings.Contains(a.body, "version=v1 ") || !strings.Contains(a.body, "slow=15s") {
		t.Errorf("the slow request open at the switch: %q %v, want v1's whole answer", a.body, a.err)
	}
	if a := <-events; a.err != nil || !strings.Contains(a.body, "version=v1 event=74") || !strings.Contains(a.body, "data: end") {
		t.Errorf("the event stream open at the switch: %v, want all 75 events of v1 and its end; got %d bytes ending %q", a.err, len(a.body), a.body[max(0, len(a.body)-60):])
	}
	res := r.json.Result
	if res == nil || len(res.Old) != 1 || res.Old[0].InFlightAtSignal == nil || *res.Old[0].InFlightAtSignal != 0 {
		t.Errorf("result old %+v: want v1 signalled with 0 connections in flight", res)
	}
	t.Logf("rollout with a 15 s request and a 15 s stream in flight: %s", time.Since(start).Round(time.Millisecond))

	slow = open("/slow?d=15s")
	time.Sleep(500 * time.Millisecond)
	r = e.deployctl("rollout", "--image", repo, "--version", "v3", "--app", app, "--switch", "atomic", "--drain-timeout", "1s")
	if r.code != 0 {
		t.Fatalf("rollout v3: exit %d", r.code)
	}
	res = r.json.Result
	if res == nil || len(res.Old) != 1 || res.Old[0].InFlightAtSignal == nil || *res.Old[0].InFlightAtSignal < 1 {
		t.Errorf("result old %+v: want v2 signalled with the slow request still in flight", res)
	}
	if !strings.Contains(r.stderr, "still in flight after --drain-timeout 1s") {
		t.Errorf("the progress does not say what was still in flight at the signal")
	}
	if a := <-slow; a.err == nil {
		t.Errorf("the 15 s request outlived --drain-timeout 1s and the app's exit: %q", a.body)
	}
	e.expectServing(app, "v3")
}

// TestAtomicSwitchKilledBeforeSettleIsRepaired: a run killed with SIGKILL
// right after it stopped the old version leaves the new one served by its
// lifted route container (one above the user's priority). The next atomic
// rollout settles it first, under load, and switches as usual.
func TestAtomicSwitchKilledBeforeSettleIsRepaired(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3")
	app := e.appName("kill")
	e.firstDeploy(app, repo, "v1")
	// --watch: the settle comes after the stop (without it, it runs beside
	// the stop and may be over before the kill).
	code, out := e.signalAt("stop       done", syscall.SIGKILL, "rollout", "--image", repo, "--version", "v2", "--app", app, "--switch", "atomic", "--watch", "1s")
	if code != -1 && code != 137 {
		t.Logf("killed run: exit %d\n%s", code, out)
	}
	e.expectServing(app, "v2")
	l := startLoad(t, e.traefik.EntryURL, app+".test", 200, true)
	r := e.deployctl("rollout", "--image", repo, "--version", "v3", "--app", app, "--switch", "atomic")
	l.expectNoFailures(t)
	if r.code != 0 || r.json.Result == nil || r.json.Result.Switch != deploy.SwitchAtomic {
		t.Fatalf("rollout after the killed run: exit %d", r.code)
	}
	if !strings.Contains(r.stderr, "left lifted by an interrupted rollout of v2") {
		t.Errorf("the next rollout did not say it settled the killed run's lifted route container")
	}
	expectRoutes(t, e, app, "v3")
	e.expectServing(app, "v3")
}
