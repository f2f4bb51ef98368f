package testenv

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// The tests in this file measure Traefik's behaviour and log the numbers;
// they assert little. They only run with DEPLOYCTL_MEASURE=1:
//
//	DEPLOYCTL_MEASURE=1 go test ./internal/testenv -run TestMeasure -v -timeout 20m

// measureEnabled skips measurements (they assert nothing) unless asked for.
func measureEnabled(t *testing.T) bool {
	if os.Getenv("DEPLOYCTL_MEASURE") != "1" {
		t.Skip("a measurement, not a test; set DEPLOYCTL_MEASURE=1 to run it")
	}
	return true
}

func hostLabels(service, host string) map[string]string {
	return map[string]string{
		"traefik.enable": "true",
		"traefik.http.routers." + service + ".rule":                      "Host(`" + host + "`)",
		"traefik.http.services." + service + ".loadbalancer.server.port": "8080",
	}
}

// firstSeen polls f every 5ms until it returns true or stop is closed, and
// returns when it first returned true (zero if never).
func firstSeen(stop <-chan struct{}, f func() bool) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		defer close(ch)
		for {
			if f() {
				ch <- time.Now()
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return ch
}

// firstStarted starts f in a new goroutine every 10ms (so that a slow call,
// e.g. a request to a vanished backend, does not delay the next) until one
// returns true or stop is closed; it returns the earliest start time of a
// call that returned true, and counts the outcomes of all calls.
func firstStarted(stop <-chan struct{}, f func() (bool, string)) (<-chan time.Time, func() map[string]int) {
	ch := make(chan time.Time, 1)
	var mu sync.Mutex
	var best time.Time
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	go func() {
		defer close(ch)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			mu.Lock()
			done := !best.IsZero()
			mu.Unlock()
			if done {
				break
			}
			select {
			case <-stop:
				wg.Wait()
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func(start time.Time) {
				defer wg.Done()
				ok, outcome := f()
				mu.Lock()
				defer mu.Unlock()
				outcomes[outcome]++
				if ok && (best.IsZero() || start.Before(best)) {
					best = start
				}
			}(time.Now())
		}
		wg.Wait()
		ch <- best
	}()
	return ch, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(outcomes)
	}
}

func routeOutcome(entryURL, host string, want int) (bool, string) {
	status, _, err := Get(entryURL+"/", host)
	if err != nil {
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return false, "error " + msg
	}
	return status == want, strconv.Itoa(status)
}

// TestMeasurePropagation measures, for each Traefik version, with the default
// providers throttle (2s) and with 0s, how long after a container turns
// healthy (end of its first successful Docker health probe) it appears in
// /api/http/services and when Traefik starts routing to it; and how long
// after the container exits it leaves both.
func TestMeasurePropagation(t *testing.T) {
	if !measureEnabled(t) {
		return
	}
	cli := Docker(t)
	const reps = 3
	var mu sync.Mutex
	var summary []string
	for _, v := range TraefikVersions {
		for _, throttle := range []string{"default", "0s"} {
			t.Run(v+"/throttle="+throttle, func(t *testing.T) {
				net := Network(t, cli)
				var opts []TraefikOption
				if throttle == "0s" {
					opts = append(opts, WithThrottle(0))
				}
				tr := StartTraefik(t, v, net, opts...)
				t.Logf("Traefik %s up after %v", v, tr.Startup)
				img := AppImage(t, cli, AppImageOptions{
					Version:     "m",
					Healthcheck: &Healthcheck{Interval: time.Second, Timeout: time.Second, Retries: 3},
					Env:         map[string]string{"SHUTDOWN": "immediate"},
				})
				var lines []string
				for i := 1; i <= reps; i++ {
					svc := fmt.Sprintf("m%d", i)
					host := svc + ".test"
					stop := make(chan struct{})
					id := StartContainer(t, cli, ContainerOptions{Image: img, Network: net, Labels: hostLabels(svc, host)})
					ip := ContainerIP(t, cli, id, net)
					want := "http://" + ip + ":8080"
					apiSeen := firstSeen(stop, func() bool {
						s, err := tr.HTTPService(svc + "@docker")
						return err == nil && slices.Contains(s.ServerURLs(), want)
					})
					routeSeen, _ := firstStarted(stop, func() (bool, string) {
						return routeOutcome(tr.EntryURL, host, http.StatusOK)
					})
					WaitHealth(t, cli, id, container.Healthy, 30*time.Second)
					c := Inspect(t, cli, id)
					var healthy time.Time
					for _, l := range c.State.Health.Log {
						if l.ExitCode == 0 {
							healthy = l.End
							break
						}
					}
					started, _ := time.Parse(time.RFC3339Nano, c.State.StartedAt)
					var tAPI, tRoute time.Time
					select {
					case tAPI = <-apiSeen:
					case <-time.After(30 * time.Second):
						t.Fatal("never in the API")
					}
					select {
					case tRoute = <-routeSeen:
					case <-time.After(30 * time.Second):
						t.Fatal("never routed")
					}
					close(stop)

					// Removal: the app exits at once on SIGTERM.
					stop2 := make(chan struct{})
					apiGone := firstSeen(stop2, func() bool {
						s, err := tr.HTTPService(svc + "@docker")
						return err == nil && !slices.Contains(s.ServerURLs(), want)
					})
					routeGone, goneOutcomes := firstStarted(stop2, func() (bool, string) {
						return routeOutcome(tr.EntryURL, host, http.StatusNotFound)
					})
					if _, err := cli.ContainerStop(t.Context(), id, client.ContainerStopOptions{}); err != nil {
						t.Fatal(err)
					}
					c = Inspect(t, cli, id)
					finished, _ := time.Parse(time.RFC3339Nano, c.State.FinishedAt)
					var tAPIGone, tRouteGone time.Time
					select {
					case tAPIGone = <-apiGone:
					case <-time.After(30 * time.Second):
						t.Fatal("never left the API")
					}
					select {
					case tRouteGone = <-routeGone:
					case <-time.After(30 * time.Second):
						t.Fatal("never left the routing")
					}
					close(stop2)
					line := fmt.Sprintf("%s throttle=%s rep %d: healthy %v after start; in API +%v, routed +%v after healthy; after exit: gone from API +%v, from routing +%v (answers meanwhile: %v)",
						v, throttle, i, healthy.Sub(started).Round(time.Millisecond),
						tAPI.Sub(healthy).Round(time.Millisecond), tRoute.Sub(healthy).Round(time.Millisecond),
						tAPIGone.Sub(finished).Round(time.Millisecond), tRouteGone.Sub(finished).Round(time.Millisecond), goneOutcomes())
					t.Log(line)
					lines = append(lines, line)
				}
				mu.Lock()
				summary = append(summary, lines...)
				mu.Unlock()
			})
		}
	}
	t.Logf("summary:\n%s", strings.Join(summary, "\n"))
}

// TestMeasureNetworks shows which IP the Docker provider picks for a
// container on several networks.
func TestMeasureNetworks(t *testing.T) {
	if !measureEnabled(t) {
		return
	}
	cli := Docker(t)
	for _, v := range TraefikVersions {
		t.Run(v, func(t *testing.T) {
			net1 := Network(t, cli)
			net2 := Network(t, cli)
			tr := StartTraefik(t, v, net1)
			img := AppImage(t, cli, AppImageOptions{Version: "n"})

			both := StartContainer(t, cli, ContainerOptions{Image: img, Network: net1, ExtraNetworks: []string{net2}, Labels: hostLabels("both", "both.test")})
			only2 := StartContainer(t, cli, ContainerOptions{Image: img, Network: net2, Labels: hostLabels("only2", "only2.test")})
			l := hostLabels("label2", "label2.test")
			l["traefik.docker.network"] = net2
			label2 := StartContainer(t, cli, ContainerOptions{Image: img, Network: net1, ExtraNetworks: []string{net2}, Labels: l})

			for _, c := range []struct {
				name, id string
			}{{"both", both}, {"only2", only2}, {"label2", label2}} {
				s, _ := tr.WaitService(t, c.name+"@docker", 20*time.Second, func(s *Service) bool { return s != nil && len(s.ServerURLs()) > 0 })
				ins := Inspect(t, cli, c.id)
				var ips []string
				for n, ep := range ins.NetworkSettings.Networks {
					ips = append(ips, n+"="+ep.IPAddress.String())
				}
				status, _, err := Get(tr.EntryURL+"/", c.name+".test")
				t.Logf("%s %s: container %v; Traefik servers %v; GET through Traefik: %d %v", v, c.name, ips, s.ServerURLs(), status, err)
			}
			for _, line := range strings.Split(tr.Log(), "\n") {
				if strings.Contains(line, "network") && (strings.Contains(line, "WRN") || strings.Contains(line, "level=warning")) {
					t.Logf("log: %s", line)
				}
			}
		})
	}
}
