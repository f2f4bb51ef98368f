// Package swarm tests deployctl against Docker Swarm: a Swarm of the tests'
// own (two dockerds, each in network namespaces of its own, joined as one
// Swarm; the machine's engine never becomes a Swarm node), Traefik's swarm
// provider in a container on the manager, and HTTP load from this machine
// through Traefik.
//
// It is a package of its own, next to e2e/, so that `go test ./...` runs it
// in parallel with the other end-to-end packages.
package swarm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/harness"
	"github.com/deployctl/deployctl/internal/testenv"
)

// traefikVersion is the first Traefik with --providers.swarm.
const traefikVersion = "v3.0.0"

// cluster is a swarm with the app's images on every node, an overlay
// network and Traefik on the manager.
type cluster struct {
	*testenv.Swarm
	overlay string
}

// swarmHealthcheck is the app images' healthcheck: every second, but with
// Docker's generous timeout kept at 5 s and 3 retries. Swarm shuts down a
// task whose healthcheck fails and starts another: with a 1 s timeout, a
// check run by exec on this 2-core machine while new tasks start under
// load timed out twice in a row, and Swarm killed two healthy serving
// tasks (502s that were nobody's rollout's doing).
var swarmHealthcheck = &harness.Healthcheck{Interval: time.Second, Timeout: 5 * time.Second, Retries: 3}

// startCluster starts a swarm of two nodes with images app:v1 and app:v2 of
// the test app on both. The app closes its listener at SIGTERM
// (SHUTDOWN=immediate), as most apps do; its healthcheck runs every second.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	s := testenv.StartSwarm(t, 2)
	for _, v := range []string{"v1", "v2"} {
		if err := s.BuildAppImageOnNodes("app:"+v, harness.AppImageOptions{
			Version:     v,
			Healthcheck: swarmHealthcheck,
			Env:         map[string]string{"SHUTDOWN": "immediate"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	overlay, err := s.NewOverlay()
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{Swarm: s, overlay: overlay}
}

// createService creates a Swarm service of replicas tasks of image, routed by
// Traefik (service labels, as the swarm provider reads them) for Host
// <name>.test, the way a user does it, and waits until it has converged.
func (c *cluster) createService(t *testing.T, name, image string, replicas int) {
	t.Helper()
	c.Docker(t, c.Manager(), "service", "create", "--quiet", "--detach=false",
		"--name", name, "--replicas", fmt.Sprint(replicas), "--network", c.overlay,
		"--label", "traefik.enable=true",
		"--label", "traefik.http.routers."+name+".rule=Host(`"+name+".test`)",
		"--label", "traefik.http.routers."+name+".entrypoints=web",
		"--label", "traefik.http.services."+name+".loadbalancer.server.port=8080",
		image)
	t.Cleanup(func() { c.TryDocker(c.Manager(), "service", "rm", name) })
}

// taskIPs returns the overlay IPs of the service's running tasks.
func (c *cluster) taskIPs(t *testing.T, name string) []string {
	t.Helper()
	out := c.Docker(t, c.Manager(), "service", "ps", name, "--filter", "desired-state=running", "--format", "{{.ID}}")
	var ips []string
	for _, id := range strings.Fields(out) {
		addrs := c.Docker(t, c.Manager(), "inspect", id, "--format",
			`{{range .NetworksAttachments}}{{if eq .Network.Spec.Name "`+c.overlay+`"}}{{range .Addresses}}{{.}} {{end}}{{end}}{{end}}`)
		for _, a := range strings.Fields(addrs) {
			ip, _, _ := strings.Cut(a, "/")
			ips = append(ips, ip)
		}
	}
	return ips
}

// waitServers waits until Traefik's service <name>@swarm lists exactly the
// given IPs (port 8080), and returns how long that took.
func waitServers(t *testing.T, tr *testenv.Traefik, name string, ips []string, timeout time.Duration) time.Duration {
	t.Helper()
	want := map[string]bool{}
	for _, ip := range ips {
		want["http://"+ip+":8080"] = true
	}
	_, took := tr.WaitService(t, name+"@swarm", timeout, func(s *testenv.Service) bool {
		urls := s.ServerURLs()
		if len(urls) != len(want) {
			return false
		}
		for _, u := range urls {
			if !want[u] {
				return false
			}
		}
		return true
	})
	return took
}

// load sends GET / at a steady rate through Traefik with a Host header and
// counts what failed and which versions answered.
type load struct {
	stop     chan struct{}
	done     sync.WaitGroup
	sent     atomic.Int64
	failed   atomic.Int64
	mu       sync.Mutex
	versions map[string]int
	failures []string
}

func startLoad(t *testing.T, entryURL, host string, rate int, keepAlive bool) *load {
	l := &load{stop: make(chan struct{}), versions: map[string]int{}}
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
					var body []byte
					body, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
					resp.Body.Close()
					if err == nil && resp.StatusCode == 200 {
						l.mu.Lock()
						for _, f := range strings.Fields(string(body)) {
							if v, ok := strings.CutPrefix(f, "version="); ok {
								l.versions[v]++
							}
						}
						l.mu.Unlock()
						return
					}
					if err == nil {
						err = fmt.Errorf("status %d", resp.StatusCode)
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

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := fmt.Sprintf("%d of %d failed, answers by version %v", l.failed.Load(), l.sent.Load(), l.versions)
	if n := len(l.failures); n > 0 {
		s += fmt.Sprintf("; first failures: %s", strings.Join(l.failures[:min(n, 5)], "; "))
	}
	return s
}

// TestSwarmRollout rolls a Swarm service of 3 replicas behind Traefik's
// swarm provider from v1 to v2 under load through Traefik, with Traefik's
// default poll (15 s) and with 1 s, two ways side by side on the same
// swarm and Traefik:
//
//   - the baseline, what Swarm users do today: `docker service update
//     --update-order start-first --image app:v2`. Swarm stops an old task
//     2 s after taking it out of its service; Traefik routes to the old
//     task's IP until its next poll. Its failures are counted and reported,
//     not asserted (it is expected to lose some with the 15 s poll).
//   - `deployctl rollout --image app --version v2 --app <service>`: 0 failed
//     requests, the new tasks confirmed in Traefik before the old service
//     left it, the old service kept at 0 replicas.
func TestSwarmRollout(t *testing.T) {
	c := startCluster(t)
	for _, tc := range []struct {
		name    string
		refresh time.Duration
	}{
		{"default poll 15s", 0},
		{"poll 1s", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			poll := tc.refresh
			if poll == 0 {
				poll = 15 * time.Second
			}
			tr := c.StartTraefik(t, traefikVersion, c.overlay, harness.SwarmTraefikOptions{Refresh: tc.refresh})
			prefix := fmt.Sprintf("p%d", int(poll/time.Second))

			base := prefix + "base"
			c.createService(t, base, "app:v1", 3)
			app := prefix + "app"
			c.createService(t, app, "app:v1", 3)
			waitServers(t, tr, base, c.taskIPs(t, base), poll+30*time.Second)
			waitServers(t, tr, app, c.taskIPs(t, app), poll+30*time.Second)

			t.Run("baseline start-first", func(t *testing.T) {
				keep := startLoad(t, tr.EntryURL, base+".test", 100, true)
				fresh := startLoad(t, tr.EntryURL, base+".test", 50, false)
				time.Sleep(time.Second)
				start := time.Now()
				c.Docker(t, c.Manager(), "service", "update", "--quiet", "--detach=false", "--update-order", "start-first", "--image", "app:v2", base)
				took := time.Since(start)
				// Traefik drops the old tasks' IPs at its next poll: until
				// then they get requests.
				seen := waitServers(t, tr, base, c.taskIPs(t, base), poll+30*time.Second)
				time.Sleep(time.Second)
				keep.finish()
				fresh.finish()
				t.Logf("baseline: docker service update --update-order start-first (Traefik poll %v): update %v, Traefik listed only the new tasks %v later; keep-alive: %v; fresh: %v",
					poll, took.Round(10*time.Millisecond), seen.Round(10*time.Millisecond), keep, fresh)
				if status, body, err := testenv.Get(tr.EntryURL+"/", base+".test"); err != nil || status != 200 || !strings.Contains(body, "version=v2") {
					t.Errorf("after the update GET / answered %d %q (%v), want v2", status, body, err)
				}
			})

			t.Run("deployctl", func(t *testing.T) {
				keep := startLoad(t, tr.EntryURL, app+".test", 100, true)
				fresh := startLoad(t, tr.EntryURL, app+".test", 50, false)
				time.Sleep(time.Second)
				start := time.Now()
				out, err := c.deployctl(t, tr, "rollout", "--image", "app", "--version", "v2", "--app", app)
				took := time.Since(start)
				time.Sleep(time.Second)
				keep.finish()
				fresh.finish()
				t.Logf("deployctl rollout (Traefik poll %v): %v; keep-alive: %v; fresh: %v\n%s",
					poll, took.Round(10*time.Millisecond), keep, fresh, out)
				if err != nil {
					t.Fatalf("deployctl rollout: %v", err)
				}
				if !strings.Contains(out, "Swarm rollout") {
					t.Errorf("the output does not say it is a Swarm rollout")
				}
				if n := keep.failed.Load() + fresh.failed.Load(); n > 0 {
					t.Errorf("%d requests failed during deployctl's rollout", n)
				}
				newSvc := app + "-v2"
				ips := c.taskIPs(t, newSvc)
				if len(ips) != 3 {
					t.Errorf("service %s has %d running tasks, want 3", newSvc, len(ips))
				}
				waitServers(t, tr, app, ips, 5*time.Second)
				if got := strings.TrimSpace(c.Docker(t, c.Manager(), "service", "inspect", app, "--format", "{{.Spec.Mode.Replicated.Replicas}} {{index .Spec.Labels \"traefik.enable\"}}")); got != "0 false" {
					t.Errorf("old service %s: replicas and traefik.enable %q, want \"0 false\" (kept for rollback, out of Traefik)", app, got)
				}
				if status, body, err := testenv.Get(tr.EntryURL+"/", app+".test"); err != nil || status != 200 || !strings.Contains(body, "version=v2") {
					t.Errorf("after the rollout GET / answered %d %q (%v), want v2", status, body, err)
				}
				out, err = c.deployctl(t, tr, "check", "--app", app)
				if err != nil || !strings.Contains(out, "nothing found") {
					t.Errorf("deployctl check --app %s: %v\n%s", app, err, out)
				}
				out, err = c.deployctl(t, tr, "status", "--app", app)
				t.Logf("deployctl status --app %s:\n%s", app, out)
				if err != nil || !strings.Contains(out, newSvc) || !strings.Contains(out, "3 UP") || !strings.Contains(out, "out (kept for rollback)") {
					t.Errorf("deployctl status: %v; want %s with 3 UP and %s out, kept for rollback", err, newSvc, app)
				}
			})

			t.Run("deployctl rollback", func(t *testing.T) {
				keep := startLoad(t, tr.EntryURL, app+".test", 100, true)
				fresh := startLoad(t, tr.EntryURL, app+".test", 50, false)
				time.Sleep(time.Second)
				start := time.Now()
				out, err := c.deployctl(t, tr, "rollback", "--app", app)
				took := time.Since(start)
				time.Sleep(time.Second)
				keep.finish()
				fresh.finish()
				t.Logf("deployctl rollback (Traefik poll %v): %v; keep-alive: %v; fresh: %v\n%s",
					poll, took.Round(10*time.Millisecond), keep, fresh, out)
				if err != nil {
					t.Fatalf("deployctl rollback: %v", err)
				}
				if n := keep.failed.Load() + fresh.failed.Load(); n > 0 {
					t.Errorf("%d requests failed during deployctl's rollback", n)
				}
				waitServers(t, tr, app, c.taskIPs(t, app), 5*time.Second)
				for svc, want := range map[string]string{app: "3 true", app + "-v2": "0 false"} {
					if got := strings.TrimSpace(c.Docker(t, c.Manager(), "service", "inspect", svc, "--format", "{{.Spec.Mode.Replicated.Replicas}} {{index .Spec.Labels \"traefik.enable\"}}")); got != want {
						t.Errorf("service %s after the rollback: replicas and traefik.enable %q, want %q", svc, got, want)
					}
				}
				if status, body, err := testenv.Get(tr.EntryURL+"/", app+".test"); err != nil || status != 200 || !strings.Contains(body, "version=v1") {
					t.Errorf("after the rollback GET / answered %d %q (%v), want v1", status, body, err)
				}
				out, err = c.deployctl(t, tr, "history", "--app", app, "--json")
				var recs []struct{ Operation, From, To, Result string }
				if err != nil || json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 2 {
					t.Fatalf("deployctl history: %v\n%s", err, out)
				}
				got := fmt.Sprintf("%+v", recs)
				if !strings.Contains(got, "Operation:rollout From:v1 To:v2 Result:ok") || !strings.Contains(got, "Operation:rollback From:v2 To:v1 Result:ok") {
					t.Errorf("history %s, want the rollout v1 -> v2 and the rollback v2 -> v1", got)
				}
			})
		})
	}
}

// deployctl runs deployctl against the swarm's manager and Traefik, and
// returns its combined output.
func (c *cluster) deployctl(t *testing.T, tr *testenv.Traefik, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(deployctlBin, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+c.Manager().Host, "DEPLOYCTL_TRAEFIK_URL="+tr.APIURL, "DEPLOYCTL_POLL_INTERVAL=100ms", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var deployctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deployctl-swarm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	deployctlBin = filepath.Join(dir, "deployctl")
	// Static and stripped, as released.
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

// TestSwarmRolloutTraefikV2 rolls a service out behind Traefik v2.11.0,
// whose swarm support is the docker provider in swarmMode (its services are
// <name>@docker), polling every second: 0 failed requests.
func TestSwarmRolloutTraefikV2(t *testing.T) {
	c := startCluster(t)
	tr := c.StartTraefik(t, "v2.11.0", c.overlay, harness.SwarmTraefikOptions{Refresh: time.Second})
	const app = "vtwo"
	c.createService(t, app, "app:v1", 3)
	_, took := tr.WaitService(t, app+"@docker", 60*time.Second, func(s *testenv.Service) bool { return len(s.ServerURLs()) == 3 })
	t.Logf("Traefik v2.11.0 listed %s@docker after %v", app, took)
	keep := startLoad(t, tr.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, tr.EntryURL, app+".test", 50, false)
	time.Sleep(time.Second)
	out, err := c.deployctl(t, tr, "rollout", "--image", "app", "--version", "v2", "--app", app)
	time.Sleep(time.Second)
	keep.finish()
	fresh.finish()
	t.Logf("deployctl rollout behind Traefik v2.11.0: keep-alive: %v; fresh: %v\n%s", keep, fresh, out)
	if err != nil || !strings.Contains(out, app+"@docker") {
		t.Fatalf("deployctl rollout: %v; want it to confirm in %s@docker", err, app)
	}
	if n := keep.failed.Load() + fresh.failed.Load(); n > 0 {
		t.Errorf("%d requests failed", n)
	}
	if status, body, err := testenv.Get(tr.EntryURL+"/", app+".test"); err != nil || status != 200 || !strings.Contains(body, "version=v2") {
		t.Errorf("after the rollout GET / answered %d %q (%v), want v2", status, body, err)
	}
}

// TestSwarmRolloutFailures: rollouts that cannot succeed, under load
// through Traefik (1 s poll): a version whose tasks never turn healthy, an
// image one node lacks, a second run while one holds the deploy lock, and
// SIGINT mid-rollout. Each exits non-zero with what Swarm said, removes the
// service it made and leaves the serving service as it was, with no failed
// request.
func TestSwarmRolloutFailures(t *testing.T) {
	c := startCluster(t)
	if err := c.BuildAppImageOnNodes("app:sick", harness.AppImageOptions{
		Version:     "sick",
		Healthcheck: swarmHealthcheck,
		Env:         map[string]string{"SHUTDOWN": "immediate", "NEVER_HEALTHY": "1"},
	}); err != nil {
		t.Fatal(err)
	}
	// app:v3 on the manager only.
	if err := c.BuildAppImageOnNodes("app:v3", harness.AppImageOptions{
		Version:     "v3",
		Healthcheck: swarmHealthcheck,
		Env:         map[string]string{"SHUTDOWN": "immediate"},
	}, c.Manager()); err != nil {
		t.Fatal(err)
	}
	tr := c.StartTraefik(t, traefikVersion, c.overlay, harness.SwarmTraefikOptions{Refresh: time.Second})
	const app = "fail"
	c.createService(t, app, "app:v1", 3)
	waitServers(t, tr, app, c.taskIPs(t, app), 30*time.Second)
	keep := startLoad(t, tr.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, tr.EntryURL, app+".test", 50, false)

	unchanged := func(t *testing.T, made string) {
		t.Helper()
		if got := strings.TrimSpace(c.Docker(t, c.Manager(), "service", "inspect", app, "--format", "{{.Spec.Mode.Replicated.Replicas}} {{index .Spec.Labels \"traefik.enable\"}} {{.Spec.TaskTemplate.ContainerSpec.Image}}")); got != "3 true app:v1" {
			t.Errorf("serving service %s: %q, want \"3 true app:v1\" (untouched)", app, got)
		}
		if out, err := c.TryDocker(c.Manager(), "service", "inspect", made); err == nil {
			t.Errorf("service %s is still there:\n%.500s", made, out)
		}
	}
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return 0
	}

	t.Run("never healthy", func(t *testing.T) {
		out, err := c.deployctl(t, tr, "rollout", "--image", "app", "--version", "sick", "--app", app, "--healthy-timeout", "40s")
		t.Logf("%s", out)
		if code := exitCode(err); code != 1 || !strings.Contains(out, "fail-sick") || !strings.Contains(out, "did not turn healthy") {
			t.Errorf("exit %d (%v), want 1 naming the tasks of fail-sick and saying they did not turn healthy", code, err)
		}
		unchanged(t, app+"-sick")
	})
	t.Run("image missing on a node", func(t *testing.T) {
		out, err := c.deployctl(t, tr, "rollout", "--image", "app", "--version", "v3", "--app", app)
		t.Logf("%s", out)
		if code := exitCode(err); code != 1 || !strings.Contains(out, "node2") || !strings.Contains(out, "app:v3") {
			t.Errorf("exit %d (%v), want 1 naming node2 and the image", code, err)
		}
		unchanged(t, app+"-v3")
	})
	t.Run("lock and SIGINT", func(t *testing.T) {
		cmd := exec.Command(deployctlBin, "rollout", "--image", "app", "--version", "sick", "--app", app, "--healthy-timeout", "5m", "--progress", "plain")
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+c.Manager().Host, "DEPLOYCTL_TRAEFIK_URL="+tr.APIURL, "DEPLOYCTL_POLL_INTERVAL=100ms", "NO_COLOR=1")
		var buf syncBuffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(buf.String(), "healthy") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		out, err := c.deployctl(t, tr, "rollout", "--image", "app", "--version", "v2", "--app", app)
		if code := exitCode(err); code != 5 || !strings.Contains(out, "lock") {
			t.Errorf("a second run while the first holds the lock: exit %d (%v), want 5:\n%s", code, err, out)
		}
		cmd.Process.Signal(os.Interrupt)
		err = cmd.Wait()
		t.Logf("%s", buf.String())
		if code := exitCode(err); code != 130 {
			t.Errorf("SIGINT: exit %d (%v), want 130", code, err)
		}
		unchanged(t, app+"-sick")
	})
	keep.finish()
	fresh.finish()
	t.Logf("load during the failures: keep-alive: %v; fresh: %v", keep, fresh)
	if n := keep.failed.Load() + fresh.failed.Load(); n > 0 {
		t.Errorf("%d requests failed", n)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
