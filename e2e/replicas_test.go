package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/traefikapi"
)

// sampler polls Traefik's API (UP servers of the service the app's
// requests go to: routedService) and Docker (running containers of the
// app) every 50ms while a rollout runs.
type sampler struct {
	mu                sync.Mutex
	minUp, maxRunning int
	samples           int
	stop              chan struct{}
	done              sync.WaitGroup
}

func (e *env) sample(app string) *sampler {
	s := &sampler{minUp: 1 << 30, stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		ctx := context.Background()
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			up := -1
			if svc, err := e.routedService(ctx, app); err == nil {
				up = 0
				for _, srv := range svc.Servers {
					if srv.Status == "UP" || srv.Status == "" {
						up++
					}
				}
			}
			running := -1
			if cs, err := e.rt.List(ctx, map[string]string{deploy.LabelApp: app}); err == nil {
				running = 0
				for _, c := range cs {
					if c.Running() {
						running++
					}
				}
			}
			s.mu.Lock()
			if up >= 0 {
				s.minUp = min(s.minUp, up)
			}
			s.maxRunning = max(s.maxRunning, running)
			s.samples++
			s.mu.Unlock()
		}
	}()
	return s
}

// routedService is the service of app's router that wins in Traefik now:
// of the enabled routers with the app's rule (appLabels), the one of the
// highest priority: app-<version>@docker of the version a route container
// routes (after a first deploy, which splits the routing), the lifted
// router's service from an atomic switch on; app@docker for containers
// that carry their routers themselves.
func (e *env) routedService(ctx context.Context, app string) (traefikapi.Service, error) {
	routers, err := e.api.Routers(ctx)
	if err != nil {
		return traefikapi.Service{}, err
	}
	var best *traefikapi.RouterInfo
	for i, r := range routers {
		if r.Rule != fmt.Sprintf("Host(`%s.test`)", app) || r.Status != "enabled" {
			continue
		}
		if best == nil || traefikapi.ObservedPriority(r.Priority, r.Rule) > traefikapi.ObservedPriority(best.Priority, best.Rule) {
			best = &routers[i]
		}
	}
	if best == nil {
		return traefikapi.Service{}, fmt.Errorf("no enabled router of %s", app)
	}
	return e.api.Service(ctx, best.QualifiedService())
}

// expect stops the sampler and checks the budget held.
func (s *sampler) expect(t *testing.T, minUp, maxRunning int) {
	t.Helper()
	close(s.stop)
	s.done.Wait()
	t.Logf("%d samples: lowest UP servers %d (budget %d), most running containers %d (budget %d)", s.samples, s.minUp, minUp, s.maxRunning, maxRunning)
	if s.samples < 10 {
		t.Errorf("only %d samples", s.samples)
	}
	if s.minUp < minUp {
		t.Errorf("Traefik had %d UP servers at one moment, budget %d", s.minUp, minUp)
	}
	if s.maxRunning > maxRunning {
		t.Errorf("%d containers of the app ran at one moment, budget %d", s.maxRunning, maxRunning)
	}
}

// deployThree deploys three v1 replicas and waits until Traefik lists all.
func (e *env) deployThree(app, repo string) {
	e.t.Helper()
	e.firstDeploy(app, repo, "v1", "--replicas", "3", "--max-surge", "100%")
	deadline := time.Now().Add(20 * time.Second)
	for {
		svc, err := e.routedService(context.Background(), app)
		if err == nil && len(svc.Servers) == 3 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("three v1 replicas never all listed: %+v %v", svc.Servers, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) runningVersions(app string) map[string]int {
	out := map[string]int{}
	for _, c := range e.containers(app) {
		if c.Running() {
			out[c.Labels[deploy.LabelVersion]]++
		}
	}
	return out
}

// TestReplicasRollout: 3 replicas v1 -> v2 under load, with surge 1 and
// with surge 100%: no failed request, Traefik never had fewer than 3 UP
// servers, Docker never more than 3+surge running containers.
func TestReplicasRollout(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	for _, tc := range []struct {
		surge      string
		maxRunning int
	}{{"1", 4}, {"100%", 6}} {
		t.Run("surge-"+tc.surge, func(t *testing.T) {
			e := e.with(t)
			// An app per case: the containers of the one before are
			// left until the test ends.
			app := e.appName("replicas" + strings.TrimSuffix(tc.surge, "%"))
			e.deployThree(app, repo)
			keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
			fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
			s := e.sample(app)
			time.Sleep(300 * time.Millisecond)
			r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app, "--replicas", "3", "--max-surge", tc.surge, "--max-unavailable", "0")
			time.Sleep(300 * time.Millisecond)
			keep.expectNoFailures(t)
			fresh.expectNoFailures(t)
			s.expect(t, 3, tc.maxRunning)
			if r.code != 0 {
				t.Fatalf("rollout: exit %d", r.code)
			}
			if got := e.runningVersions(app); got["v2"] != 3 || len(got) != 1 {
				t.Errorf("running %v, want 3 v2", got)
			}
			res := r.json.Result
			if res == nil || len(res.NewContainers) != 3 || len(res.Old) != 3 {
				t.Fatalf("result %+v", res)
			}
			// Result.steps: surge 1 starts one and drains one per step,
			// surge 100% starts all three, then drains all three.
			var started, stopped int
			for i, st := range res.Steps {
				if st.Step != i+1 || len(st.Started) != 3/len(res.Steps) || len(st.Stopped) != 3/len(res.Steps) || len(st.Drained) != len(st.Stopped) {
					t.Errorf("step %d: %+v", i+1, st)
				}
				started += len(st.Started)
				stopped += len(st.Stopped)
			}
			if wantSteps := map[string]int{"1": 3, "100%": 1}[tc.surge]; len(res.Steps) != wantSteps || started != 3 || stopped != 3 {
				t.Errorf("steps %+v: want %d steps starting and stopping 3 in all", res.Steps, wantSteps)
			}
			e.expectServing(app, "v2")
		})
	}
}

// TestReplicasFailureInStep2RestoresV1: the second new container of a
// surge-1 rollout is killed while deployctl waits for it: the run fails
// with exit 1 naming step 2, all three v1 serve again, no v2 is left, and
// no request failed.
func TestReplicasFailureInStep2RestoresV1(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	app := e.appName("replfail")
	e.deployThree(app, repo)
	keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
	s := e.sample(app)
	// The killer: the second v2 container, once running, is killed.
	stopKill := make(chan struct{})
	killed := make(chan string, 1)
	go func() {
		seen := map[string]bool{}
		var order []string
		for {
			select {
			case <-stopKill:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, c := range e.containers(app) {
				if c.Labels[deploy.LabelVersion] == "v2" && c.Running() && !seen[c.ID] {
					seen[c.ID] = true
					order = append(order, c.ID)
				}
			}
			if len(order) >= 2 {
				_, _ = e.cli.ContainerKill(context.Background(), order[1], client.ContainerKillOptions{Signal: "KILL"})
				killed <- order[1]
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app, "--replicas", "3", "--max-surge", "1")
	close(stopKill)
	time.Sleep(300 * time.Millisecond)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	s.expect(t, 3, 4)
	select {
	case id := <-killed:
		t.Logf("killed %s", id[:12])
	default:
		t.Fatal("the second v2 container was never seen running")
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "step 2/3") {
		t.Errorf("message does not name step 2/3:\n%s", r.stderr)
	}
	for _, c := range e.containers(app) {
		if c.Labels[deploy.LabelVersion] == "v2" {
			t.Errorf("v2 container %s left (%s)", c.Name, c.State)
		}
	}
	if got := e.runningVersions(app); got["v1"] != 3 || len(got) != 1 {
		t.Errorf("running %v, want 3 v1", got)
	}
	e.expectServing(app, "v1")
}

// TestReplicasRollback: 3 replicas v1 -> v2, then a rollback under load:
// v1's three retained containers are restarted (none created), the three
// v2 containers drained, stopped and kept; no failed request, Traefik
// never had fewer than 3 UP servers, Docker never more than 4 (the default
// surge of 25% of 3, rounded up: 1) running containers.
func TestReplicasRollback(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	app := e.appName("replrb")
	e.deployThree(app, repo)
	v1 := map[string]bool{}
	for _, c := range e.containers(app) {
		v1[c.ID] = true
	}
	// Gradually, so that the rollback is gradual too, within the default
	// surge; an atomic rollback of replicas: TestAtomicSwitch.
	if r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app, "--replicas", "3", "--max-surge", "100%", "--switch", "gradual"); r.code != 0 {
		t.Fatalf("rollout of v2: exit %d", r.code)
	}
	var v2 []string
	for _, c := range e.containers(app) {
		if c.Running() {
			v2 = append(v2, c.ID)
		}
	}
	if len(v2) != 3 {
		t.Fatalf("%d v2 containers running, want 3", len(v2))
	}
	keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
	s := e.sample(app)
	time.Sleep(300 * time.Millisecond)
	r := e.deployctl("rollback", "--app", app)
	time.Sleep(300 * time.Millisecond)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	s.expect(t, 3, 4)
	if r.code != 0 {
		t.Fatalf("rollback: exit %d", r.code)
	}
	if got := e.runningVersions(app); got["v1"] != 3 || len(got) != 1 {
		t.Errorf("running %v, want 3 v1", got)
	}
	stopped := 0
	for _, c := range e.containers(app) {
		switch {
		case c.Running() && !v1[c.ID]:
			t.Errorf("container %s (%s) serves: not one of v1's retained containers", c.Name, c.Labels[deploy.LabelVersion])
		case !c.Running() && c.Labels[deploy.LabelVersion] == "v2":
			stopped++
		}
	}
	if stopped != 3 {
		t.Errorf("%d v2 containers stopped and kept, want 3", stopped)
	}
	if res := r.json.Result; res == nil || len(res.NewContainers) != 3 || len(res.Old) != 3 {
		t.Errorf("result %+v", res)
	}
	e.expectServing(app, "v1")
}

// TestReplicasSignalInStep2RestoresV1: SIGINT to deployctl once step 2 of a
// surge-1 rollout of 3 replicas has started its new container: exit 130,
// the v1 container stopped in step 1 is started again, all three v1 serve,
// no v2 is left, the lock is released, no request failed and the budget
// held throughout.
func TestReplicasSignalInStep2RestoresV1(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	app := e.appName("replsig")
	e.deployThree(app, repo)
	v1 := map[string]bool{}
	for _, c := range e.containers(app) {
		v1[c.ID] = true
	}
	keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
	s := e.sample(app)
	time.Sleep(300 * time.Millisecond)
	code, stderr := e.signalAt("step 2/3: waiting until", syscall.SIGINT, "rollout", "--image", repo, "--version", "v2", "--app", app, "--replicas", "3", "--max-surge", "1")
	time.Sleep(300 * time.Millisecond)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	s.expect(t, 3, 4)
	if code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	if !strings.Contains(stderr, "step 1/3: stopped") {
		t.Errorf("step 1 never stopped its old container: the signal came too early to test the restart")
	}
	for _, c := range e.containers(app) {
		switch {
		case c.Labels[deploy.LabelVersion] == "v2":
			t.Errorf("v2 container %s left (%s)", c.Name, c.State)
		case !v1[c.ID]:
			t.Errorf("container %s (%s) is not one of the three v1 containers", c.Name, c.Labels[deploy.LabelVersion])
		}
	}
	if got := e.runningVersions(app); got["v1"] != 3 || len(got) != 1 {
		t.Errorf("running %v, want 3 v1", got)
	}
	if st := e.status(app); st.Lock != nil {
		t.Errorf("lock not released: %+v", st.Lock)
	}
	e.expectServing(app, "v1")
}
