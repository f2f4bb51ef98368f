package testenv

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// TestTraefikBinary builds (or finds in the cache) every pinned Traefik
// version and runs "traefik version". Run it alone to warm the cache:
//
//	go test ./internal/testenv -run TestTraefikBinary -timeout 60m -v
func TestTraefikBinary(t *testing.T) {
	for _, v := range TraefikVersions {
		t.Run(v, func(t *testing.T) {
			start := time.Now()
			bin := TraefikBinary(t, v)
			t.Logf("TraefikBinary(%s) = %s in %v", v, bin, time.Since(start))
			out, err := exec.Command(bin, "version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s version: %v\n%s", bin, err, out)
			}
			if !strings.Contains(string(out), strings.TrimPrefix(v, "v")) {
				t.Errorf("%s version does not mention %s:\n%s", bin, v, out)
			}
			start = time.Now()
			if again := TraefikBinary(t, v); again != bin {
				t.Errorf("second call: %s, want %s", again, bin)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("cache hit took %v", d)
			}
		})
	}
}

// The compose CLI the end-to-end tests run: built from its build module,
// cached, and stamped with its version (`version --short` prints it, and
// the containers it makes carry it).
func TestComposeBinary(t *testing.T) {
	start := time.Now()
	bin := ComposeBinary(t, ComposeVersion)
	t.Logf("ComposeBinary(%s) = %s in %v", ComposeVersion, bin, time.Since(start))
	out, err := exec.Command(bin, "version", "--short").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != strings.TrimPrefix(ComposeVersion, "v") {
		t.Errorf("%s version --short = %q, want %s", bin, got, strings.TrimPrefix(ComposeVersion, "v"))
	}
	start = time.Now()
	if again := ComposeBinary(t, ComposeVersion); again != bin || time.Since(start) > time.Second {
		t.Errorf("second call: %s in %v, want %s from the cache", again, time.Since(start), bin)
	}
}

func TestDockerfile(t *testing.T) {
	got := Dockerfile(AppImageOptions{
		Version:     "v2",
		Env:         map[string]string{"SHUTDOWN": "immediate", "X": `a"$b`},
		Healthcheck: &Healthcheck{Interval: 500 * time.Millisecond, Timeout: time.Second, Retries: 2, StartPeriod: 3 * time.Second},
	})
	want := `FROM scratch
COPY app /app
ENTRYPOINT ["/app"]
EXPOSE 8080
HEALTHCHECK --interval=500ms --timeout=1s --start-period=3s --retries=2 CMD ["/app", "probe"]
LABEL "deployctl-testenv"="` + runID + `"
ENV PORT=8080 APP_VERSION="v2" SHUTDOWN="immediate" X="a\"\$b"
`
	if got != want {
		t.Errorf("Dockerfile:\n%s\nwant:\n%s", got, want)
	}
}

// TestTraefikRoutesApp starts each pinned Traefik version, runs an app
// container labelled for Traefik on the test network and checks that
// Traefik routes to it and lists its IP.
func TestTraefikRoutesApp(t *testing.T) {
	for _, v := range TraefikVersions {
		t.Run(v, func(t *testing.T) {
			cli := Docker(t)
			net := Network(t, cli)
			tr := StartTraefik(t, v, net)
			t.Logf("Traefik %s answered /api/version after %v", v, tr.Startup)
			_, body, err := tr.API("/api/version")
			if err != nil || !strings.Contains(body, `"Version":"`+strings.TrimPrefix(v, "v")+`"`) {
				t.Errorf("/api/version = %q, %v", body, err)
			}

			version := "app-" + v
			img := AppImage(t, cli, AppImageOptions{
				Tag:         "v1",
				Version:     version,
				Healthcheck: &Healthcheck{Interval: 500 * time.Millisecond, Timeout: time.Second, Retries: 2},
			})
			id := StartContainer(t, cli, ContainerOptions{Image: img, Network: net, Labels: TraefikLabels("web", 8080)})
			WaitHealth(t, cli, id, container.Healthy, 30*time.Second)
			ip := ContainerIP(t, cli, id, net)

			d := tr.WaitRoute(t, "/", "", "version="+version, 30*time.Second)
			t.Logf("routed to the app %v after it was seen healthy", d)
			_, body, _ = Get(tr.EntryURL+"/", "")
			if !strings.Contains(body, "host=") {
				t.Errorf("body %q has no host", body)
			}

			svc, err := tr.HTTPService("web@docker")
			if err != nil || svc == nil {
				t.Fatalf("web@docker: %v, %v", svc, err)
			}
			want := "http://" + ip + ":8080"
			if urls := svc.ServerURLs(); !slices.Equal(urls, []string{want}) {
				t.Errorf("web@docker servers = %v, want [%s]", urls, want)
			}
			if st := svc.ServerStatus[want]; st != "UP" {
				t.Errorf("serverStatus[%s] = %q, want UP (%v)", want, st, svc.ServerStatus)
			}
		})
	}
}

// TestAppLifecycle checks the test app's knobs inside Docker: lame-duck
// shutdown keeps serving while /health fails, NEVER_HEALTHY makes Docker
// report unhealthy, CRASH_AFTER=0 exits 1.
func TestAppLifecycle(t *testing.T) {
	cli := Docker(t)
	net := Network(t, cli)
	hc := &Healthcheck{Interval: 300 * time.Millisecond, Timeout: time.Second, Retries: 1}

	t.Run("lameduck", func(t *testing.T) {
		img := AppImage(t, cli, AppImageOptions{Version: "ld", Healthcheck: hc, Env: map[string]string{"DRAIN": "2s"}})
		id := StartContainer(t, cli, ContainerOptions{Image: img, Network: net})
		WaitHealth(t, cli, id, container.Healthy, 20*time.Second)
		ip := ContainerIP(t, cli, id, net)
		stopped := make(chan error, 1)
		go func() {
			_, err := cli.ContainerStop(t.Context(), id, client.ContainerStopOptions{})
			stopped <- err
		}()
		// While draining: / answers, /health answers 503.
		deadline := time.Now().Add(5 * time.Second)
		for {
			status, _, err := Get("http://"+ip+":8080/health", "")
			if err == nil && status == 503 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/health never turned 503 (last %d %v)", status, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if status, body, err := Get("http://"+ip+":8080/", ""); err != nil || status != 200 || !strings.Contains(body, "version=ld") {
			t.Errorf("while draining GET / = %d %q %v", status, body, err)
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		c := Inspect(t, cli, id)
		if c.State.ExitCode != 0 {
			t.Errorf("exit code %d, want 0", c.State.ExitCode)
		}
		if log := ContainerLog(t.Context(), cli, id); !strings.Contains(log, "event=draining") || !strings.Contains(log, "event=exit code=0") {
			t.Errorf("log lacks draining/exit events:\n%s", log)
		}
	})

	t.Run("never-healthy", func(t *testing.T) {
		img := AppImage(t, cli, AppImageOptions{Healthcheck: hc, Env: map[string]string{"NEVER_HEALTHY": "1"}})
		id := StartContainer(t, cli, ContainerOptions{Image: img, Network: net})
		WaitHealth(t, cli, id, container.Unhealthy, 20*time.Second)
	})

	t.Run("crash-at-start", func(t *testing.T) {
		img := AppImage(t, cli, AppImageOptions{})
		id := StartContainer(t, cli, ContainerOptions{Image: img, Network: net, Env: []string{"CRASH_AFTER=0"}})
		res := cli.ContainerWait(t.Context(), id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		select {
		case w := <-res.Result:
			if w.StatusCode != 1 {
				t.Errorf("exit status %d, want 1", w.StatusCode)
			}
		case err := <-res.Error:
			t.Fatal(err)
		case <-time.After(20 * time.Second):
			t.Fatal("container did not exit")
		}
	})
}
