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
	"fmt"
	"io"
	"net/http"
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

// startCluster starts a swarm of two nodes with images app:v1 and app:v2 of
// the test app on both. The app closes its listener at SIGTERM
// (SHUTDOWN=immediate), as most apps do; its healthcheck runs every second.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	s := testenv.StartSwarm(t, 2)
	for _, v := range []string{"v1", "v2"} {
		if err := s.BuildAppImageOnNodes("app:"+v, harness.AppImageOptions{
			Version:     v,
			Healthcheck: &harness.Healthcheck{Interval: time.Second, Timeout: time.Second, Retries: 2},
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

// TestSwarmStartFirstBaseline measures what Swarm users do today: `docker
// service update --update-order start-first --image app:v2` of a service of
// 3 replicas behind Traefik's swarm provider, under load through Traefik,
// with Traefik's default poll (15 s) and with 1 s. Swarm stops an old task
// once its replacement runs; Traefik routes to the old task's IP until its
// next poll. The failures are counted and reported, not asserted (the
// baseline is expected to lose some); what is asserted is that the update
// happened: Traefik ends up with the three new tasks and v2 answers.
func TestSwarmStartFirstBaseline(t *testing.T) {
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
			name := strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", ""), "poll", "base")
			c.createService(t, name, "app:v1", 3)
			waitServers(t, tr, name, c.taskIPs(t, name), poll+30*time.Second)

			keep := startLoad(t, tr.EntryURL, name+".test", 100, true)
			fresh := startLoad(t, tr.EntryURL, name+".test", 50, false)
			time.Sleep(time.Second)
			start := time.Now()
			c.Docker(t, c.Manager(), "service", "update", "--quiet", "--detach=false", "--update-order", "start-first", "--image", "app:v2", name)
			took := time.Since(start)
			// Traefik drops the old tasks' IPs at its next poll: until
			// then they get requests.
			ips := c.taskIPs(t, name)
			seen := waitServers(t, tr, name, ips, poll+30*time.Second)
			time.Sleep(time.Second)
			keep.finish()
			fresh.finish()
			t.Logf("baseline: docker service update --update-order start-first (Traefik poll %v): update %v, Traefik listed only the new tasks %v later; keep-alive: %v; fresh: %v",
				poll, took.Round(10*time.Millisecond), seen.Round(10*time.Millisecond), keep, fresh)
			if status, body, err := testenv.Get(tr.EntryURL+"/", name+".test"); err != nil || status != 200 || !strings.Contains(body, "version=v2") {
				t.Errorf("after the update GET / answered %d %q (%v), want v2", status, body, err)
			}
		})
	}
}
