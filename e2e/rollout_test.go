package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/testenv"
)

// The app image used by most scenarios: FROM scratch (no shell), with a
// HEALTHCHECK in the image, a lame-duck period of 1s after SIGTERM.
func appImages(t *testing.T, cli *client.Client, versions ...string) string {
	t.Helper()
	var repo string
	for _, v := range versions {
		ref := testenv.AppImage(t, cli, testenv.AppImageOptions{
			Tag: v, Version: v,
			Healthcheck: &testenv.Healthcheck{Interval: time.Second, Timeout: 5 * time.Second, Retries: 3},
			Env:         map[string]string{"DRAIN": "1s"},
		})
		repo, _, _ = strings.Cut(ref, ":")
	}
	return repo
}

// serverURL is where Traefik reaches container c on network.
func serverURL(c deploy.Container, network string) string {
	return "http://" + net.JoinHostPort(c.Networks[network], "8080")
}

// TestRolloutV1ToV2 runs against the Traefik under test (traefikFor);
// traefikv2_test.go runs the same against v2.11.0, last, so that on a
// fresh machine the other tests run while v2.11.0 is being built.
func TestRolloutV1ToV2(t *testing.T) {
	testRolloutV1ToV2(t, traefikFor(t))
}

func testRolloutV1ToV2(t *testing.T, versions ...string) {
	for _, version := range versions {
		t.Run("traefik-"+version, func(t *testing.T) {
			e := newEnv(t, version)
			repo := appImages(t, e.cli, "v1", "v2")
			app := e.appName("web")
			e.firstDeploy(app, repo, "v1")
			cs := e.containers(app)
			if len(cs) != 1 {
				t.Fatalf("after first deploy: %d containers", len(cs))
			}
			v1 := cs[0]
			v1URL := serverURL(v1, e.network)
			if v1.Labels[deploy.LabelDrain] != "probe" || v1.Labels[deploy.LabelVersion] != "v1" {
				t.Errorf("v1 labels %v", v1.Labels)
			}

			// The first deploy split the routing: v1 is in service app-v1@docker,
			// which the gradual rollout's v2 joins.
			watch := e.watchService(app + "-v1@docker")
			kills := e.watchKills(v1.ID)
			keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
			fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
			time.Sleep(500 * time.Millisecond) // steady state before the switch

			// The gradual switch's order, in the service both versions
			// share; the atomic switch's is TestAtomicSwitch's.
			r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app, "--switch", "gradual")
			if r.code != 0 {
				t.Fatalf("rollout v1 -> v2: exit %d", r.code)
			}
			time.Sleep(300 * time.Millisecond)
			keep.expectNoFailures(t)
			fresh.expectNoFailures(t)
			e.expectServing(app, "v2")
			res := r.json.Result
			t.Logf("phases (Traefik %s): %v total %s", version, res.Phases, res.Total)

			// The order, from Traefik's own answers and Docker's events: the
			// new server is listed before the old one leaves, and the old
			// one leaves before it gets any signal.
			timeline := watch.stop()
			newListed := timeline.firstWith(res.New.URL)
			oldGone := timeline.firstWithoutAfter(v1URL, newListed)
			kill := kills.first()
			if newListed.IsZero() || oldGone.IsZero() || kill.IsZero() {
				t.Fatalf("timeline incomplete: new listed %v, old gone %v, kill %v\n%s", newListed, oldGone, kill, timeline)
			}
			if !(newListed.Before(oldGone) && oldGone.Before(kill)) {
				t.Errorf("order: new listed %s, old gone %s, old signalled %s; want that order\n%s",
					newListed.Format(stamp), oldGone.Format(stamp), kill.Format(stamp), timeline)
			}
			t.Logf("new listed -> old gone from Traefik %s -> old signalled %s", oldGone.Sub(newListed), kill.Sub(oldGone))

			// v1 is kept stopped for rollback.
			after := e.containers(app)
			if len(after) != 2 {
				t.Fatalf("containers after rollout: %d, want v1 (stopped) and v2", len(after))
			}
			for _, c := range after {
				want := map[string]string{"v1": "exited", "v2": "running"}[c.Labels[deploy.LabelVersion]]
				if c.State != want {
					t.Errorf("%s (%s): state %s, want %s", c.Name, c.Labels[deploy.LabelVersion], c.State, want)
				}
			}
		})
	}
}

// Apps that close their listener at once on SIGTERM (Go's Shutdown), in an
// image without a HEALTHCHECK: deployctl's probe checks the port, drains
// them through Docker health, and nothing fails.
func TestRolloutListenerClosingAppWithoutHealthcheck(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	var repo string
	for _, v := range []string{"v1", "v2"} {
		ref := testenv.AppImage(t, e.cli, testenv.AppImageOptions{Tag: v, Version: v, Env: map[string]string{"SHUTDOWN": "immediate"}})
		repo, _, _ = strings.Cut(ref, ":")
	}
	app := e.appName("plain")
	e.firstDeploy(app, repo, "v1")
	v1 := e.containers(app)[0]
	if hc := v1.Healthcheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "--tcp 127.0.0.1:8080") {
		t.Errorf("v1 healthcheck %+v, want deployctl's TCP probe", hc)
	}
	keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
	time.Sleep(300 * time.Millisecond)
	if r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app); r.code != 0 {
		t.Fatalf("rollout: exit %d", r.code)
	}
	time.Sleep(300 * time.Millisecond)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	e.expectServing(app, "v2")
}

// Each failure happens before the old container is touched: deployctl exits
// non-zero, says why, removes the new container, and v1 serves throughout.
func TestRolloutFailuresLeaveV1Serving(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	other := testenv.Network(t, e.cli)
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"new container crashes on start", []string{"--env", "CRASH_AFTER=0"},
			1, []string{"exit", "last log lines", "event=crash"}}, // "exited with code 1" or "keeps exiting"
		{"never healthy", []string{"--env", "NEVER_HEALTHY=1"},
			1, []string{"unhealthy"}},
		{"healthy but not routable: not on Traefik's network", []string{"--label", "traefik.docker.network=" + other},
			1, []string{"not on network " + fmt.Sprintf("%q", other)}},
		{"healthy but not routable: traefik.enable=false", []string{"--label", "traefik.enable=false", "--register-timeout", "6s"},
			1, []string{"never appeared in service", "traefik.enable=true"}},
		{"healthy but not routable: no usable port", []string{"--label", "traefik.http.services.{app}.loadbalancer.server.port=http"},
			2, []string{"not a port number", "loadbalancer.server.port"}},
		{"image tag missing", []string{"--pull", "never", "--version", "nope"},
			1, []string{"not on the Docker host"}},
		{"Traefik API unreachable", []string{"--traefik-url", "http://127.0.0.1:1"},
			4, []string{"Traefik", "127.0.0.1:1", "--traefik-url"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			app := e.appName(fmt.Sprintf("fail%d", i))
			e.firstDeploy(app, repo, "v1")
			l := startLoad(t, e.traefik.EntryURL, app+".test", 50, true)
			time.Sleep(200 * time.Millisecond)
			args := []string{"rollout", "--image", repo, "--version", "v2", "--app", app}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "{app}", app))
			}
			r := e.deployctl(args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q", w)
				}
			}
			if !strings.Contains(r.stderr, "still serving") && !strings.Contains(r.stderr, "nothing was changed") {
				t.Errorf("stderr does not say the old version is still serving")
			}
			if r.json.OK {
				t.Errorf("--json says ok")
			}
			l.expectNoFailures(t)
			e.expectServing(app, "v1")
			cs := e.containers(app)
			if len(cs) != 1 || cs[0].Labels[deploy.LabelVersion] != "v1" || cs[0].State != "running" {
				var names []string
				for _, c := range cs {
					names = append(names, c.Name+"("+c.State+")")
				}
				t.Errorf("containers left: %v; want only v1, running", names)
			}
		})
	}
}

const stamp = "15:04:05.000"

// timeline is what Traefik listed for a service over time.
type timeline []snapshot

type snapshot struct {
	at      time.Time
	servers []string
}

func (tl timeline) firstWith(url string) time.Time {
	for _, s := range tl {
		for _, u := range s.servers {
			if u == url {
				return s.at
			}
		}
	}
	return time.Time{}
}

// firstWithoutAfter is the first snapshot at or after t that lacks url.
func (tl timeline) firstWithoutAfter(url string, t time.Time) time.Time {
	for _, s := range tl {
		if s.at.Before(t) {
			continue
		}
		found := false
		for _, u := range s.servers {
			found = found || u == url
		}
		if !found {
			return s.at
		}
	}
	return time.Time{}
}

func (tl timeline) String() string {
	var b strings.Builder
	for _, s := range tl {
		fmt.Fprintf(&b, "  %s %v\n", s.at.Format(stamp), s.servers)
	}
	return b.String()
}

type watcher struct {
	mu     sync.Mutex
	tl     timeline
	cancel context.CancelFunc
	done   chan struct{}
}

// watchService polls Traefik's API for service every 10ms and records each
// change of its registered servers.
func (e *env) watchService(service string) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := "-"
		for ctx.Err() == nil {
			svc, err := e.api.Service(ctx, service)
			var servers []string
			if err == nil {
				for _, s := range svc.Servers {
					if s.Registered() {
						servers = append(servers, s.URL)
					}
				}
			}
			if key := strings.Join(servers, ","); key != last {
				last = key
				w.mu.Lock()
				w.tl = append(w.tl, snapshot{at: time.Now(), servers: servers})
				w.mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	e.t.Cleanup(cancel)
	return w
}

func (w *watcher) stop() timeline {
	w.cancel()
	<-w.done
	return w.tl
}

type killWatch struct {
	mu    sync.Mutex
	times []time.Time
}

// watchKills records Docker's kill events (a signal sent, by docker stop or
// docker kill) for container id.
func (e *env) watchKills(id string) *killWatch {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	k := &killWatch{}
	res := e.cli.Events(ctx, client.EventsListOptions{Filters: client.Filters{}.Add("container", id).Add("event", "kill")})
	go func() {
		for m := range res.Messages {
			k.mu.Lock()
			k.times = append(k.times, time.Unix(0, m.TimeNano))
			k.mu.Unlock()
		}
	}()
	return k
}

func (k *killWatch) first() time.Time {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		k.mu.Lock()
		n := len(k.times)
		k.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.times) == 0 {
		return time.Time{}
	}
	return k.times[0]
}
