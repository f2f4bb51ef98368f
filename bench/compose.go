package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deployctl/deployctl/internal/harness"
)

// The compose suite (issue 13, -compose): for each app kind, a compose
// project whose web service runs 3 replicas behind Traefik, made by
// `docker compose up -d`, then rolled out under load at -rate per client
// mode (keep-alive and fresh, concurrently), two ways, each on a project
// of its own: -rollouts times with `deployctl rollout -f compose.yaml
// web --version vN` (the first of them is the first rollout after
// compose made the containers), and -baseline-rollouts times with what
// compose users do today, `TAG=vN docker compose up -d`. It reports per
// method and kind the requests sent while a rollout ran, how many failed,
// and the wall time of each rollout.

// Methods of the compose suite.
const (
	MethodComposeUp = "compose-up" // TAG=vN docker compose up -d --wait
)

// ComposeRow is one method's figures on one app kind.
type ComposeRow struct {
	Method   string    `json:"method"`
	Kind     string    `json:"app"`
	Rollouts int       `json:"rollouts"`
	Sent     int       `json:"sent"`
	Failed   int       `json:"failed"`
	WallS    []float64 `json:"wall_s"`
	Errors   []string  `json:"errors,omitempty"`
}

// ComposeSmoke is the short run of the compose suite for CI: one rollout
// each way of the lame-duck app at 100 req/s per client mode.
func ComposeSmoke() Config {
	c := Smoke()
	c.Rollouts, c.BaselineRollouts, c.Kinds, c.Compose, c.StartupRuns = 1, 1, []string{KindLameDuck}, true, 0
	return c
}

// composeFile is the suite's project: web with 3 replicas on the
// bench's Traefik network.
func composeFile(name, network string) string {
	return fmt.Sprintf(`name: %[1]s
services:
  web:
    image: ${REPO}:${TAG}
    environment:
      APP_VERSION: ${TAG}
    labels:
      traefik.enable: "true"
      traefik.http.routers.%[1]s.rule: Host(`+"`%[1]s.test`"+`)
      traefik.http.services.%[1]s.loadbalancer.server.port: "8080"
    networks: [proxy]
    deploy:
      replicas: 3
networks:
  proxy:
    external: true
    name: %[2]s
`, name, network)
}

func (b *bench) runComposeSuite(ctx context.Context, rep *Report, logf func(string, ...any)) error {
	cfg := b.cfg
	bin, err := harness.ComposeBinary(harness.ComposeVersion, logf)
	if err != nil {
		return err
	}
	for _, kind := range cfg.Kinds {
		for _, method := range []string{MethodDeployctl, MethodComposeUp} {
			n := cfg.Rollouts
			if method == MethodComposeUp {
				n = cfg.BaselineRollouts
			}
			if n == 0 || ctx.Err() != nil {
				continue
			}
			row, err := b.composeRuns(ctx, bin, kind, method, n, logf)
			rep.Compose = append(rep.Compose, row)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// composeRuns makes a project of kind with compose, rolls it out n times
// by method under load, and removes it.
func (b *bench) composeRuns(ctx context.Context, bin, kind, method string, n int, logf func(string, ...any)) (ComposeRow, error) {
	cfg := b.cfg
	row := ComposeRow{Method: method, Kind: kind}
	name := harness.UniqueName("cmp" + map[string]string{MethodDeployctl: "dc", MethodComposeUp: "up"}[method] + "-" + kind + "-")
	dir, err := os.MkdirTemp("", "deployctl-bench-compose-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(composeFile(name, b.network)), 0o644); err != nil {
		return row, err
	}
	env := append(os.Environ(), "REPO="+b.repos[kind])
	compose := func(tag string, args ...string) error {
		c := exec.CommandContext(ctx, bin, args...)
		c.Dir, c.Env = dir, append(env, "TAG="+tag)
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("TAG=%s docker compose %s: %v\n%s", tag, strings.Join(args, " "), err, out)
		}
		return nil
	}
	defer func() {
		if err := compose("cleanup", "down", "--remove-orphans", "--volumes", "--timeout", "2"); err != nil {
			logf("compose suite: %v", err)
		}
	}()
	if err := compose("v1", "up", "-d", "--wait", "--wait-timeout", "120"); err != nil {
		return row, err
	}
	host := name + ".test"
	if err := waitAnswers(ctx, b.traefik.EntryURL, host, 30*time.Second); err != nil {
		return row, err
	}
	var loads []*loadGen
	for _, mode := range cfg.Modes {
		loads = append(loads, startLoad(mode, b.traefik.EntryURL+"/", host, cfg.Rate, cfg.Timeout))
	}
	sleep(ctx, cfg.Warmup)
	var windows []window
	var runErr error
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		version := fmt.Sprintf("v%d", i+1)
		r := &Rollout{Index: i, From: fmt.Sprintf("v%d", i), To: version}
		start := time.Now()
		if method == MethodDeployctl {
			b.extraEnv = []string{"REPO=" + b.repos[kind]} // the file's variable
			runErr = b.deployctl(ctx, r, "rollout", "-f", file, "web", "--version", version)
			b.extraEnv = nil
		} else {
			runErr = compose(version, "up", "-d", "--wait", "--wait-timeout", "120")
		}
		end := time.Now()
		windows = append(windows, window{start, end})
		row.Rollouts++
		row.WallS = append(row.WallS, end.Sub(start).Seconds())
		logf("  compose suite, %s, %s: %s -> %s in %.2fs", method, kind, r.From, version, end.Sub(start).Seconds())
		if runErr != nil {
			row.Errors = append(row.Errors, runErr.Error())
			break
		}
		sleep(ctx, switchPause(cfg))
	}
	for _, l := range loads {
		for _, s := range l.stop() {
			for _, w := range windows {
				if w.contains(s.at) {
					row.Sent++
					if s.fail != "" {
						row.Failed++
					}
				}
			}
		}
	}
	return row, runErr
}

// waitAnswers waits until Traefik answers for host with 200.
func waitAnswers(ctx context.Context, entry, host string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, entry+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("Traefik never answered for %s: %v", host, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// printComposeTable prints the compose suite's figures.
func printComposeTable(w io.Writer, r *Report) {
	if len(r.Compose) == 0 {
		return
	}
	fmt.Fprintf(w, "\nCompose suite: a compose service of 3 replicas behind Traefik, made by docker compose up -d; %d req/s per client mode (%s); requests sent while a rollout ran\n", r.Config.Rate, strings.Join(r.Config.Modes, " + "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tapp\trollouts\tsent\tfailed\twall mean s\tmax\t")
	for _, c := range r.Compose {
		mean, mx := 0.0, 0.0
		for _, x := range c.WallS {
			mean += x / float64(len(c.WallS))
			mx = max(mx, x)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.2f\t%.2f\t\n", c.Method, c.Kind, c.Rollouts, c.Sent, c.Failed, mean, mx)
	}
	tw.Flush()
}
