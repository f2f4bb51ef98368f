package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deployctl/deployctl/internal/harness"
)

// The Swarm suite (issue 14, -swarm): a Swarm of its own (two dockerds in
// network namespaces of their own, harness.StartSwarm), Traefik's swarm
// provider in a container on the manager, and for each app kind a service
// of 3 replicas rolled out under load at -rate per client mode (keep-alive
// and fresh, concurrently), on a service of its own per row:
//
//   - deployctl rollout, Traefik polling every 15 s (its default);
//   - docker service update --update-order start-first, the same Traefik;
//   - docker service update --update-order start-first, Traefik polling
//     every 1 s;
//   - deployctl rollout, Traefik polling every 1 s.
//
// A rollout's window runs from its start to one Traefik poll period plus
// a second after its end: a start-first update ends before Traefik has
// dropped the tasks it stopped, and those requests count too.

// Methods of the Swarm suite.
const (
	MethodStartFirst = "start-first" // docker service update --update-order start-first --image
)

// SwarmRow is one method's figures at one Traefik poll period.
type SwarmRow struct {
	Method   string    `json:"method"`
	Kind     string    `json:"app"`
	PollS    int       `json:"traefik_poll_s"`
	Rollouts int       `json:"rollouts"`
	Sent     int       `json:"sent"`
	Failed   int       `json:"failed"`
	WallS    []float64 `json:"wall_s"`
	Errors   []string  `json:"errors,omitempty"`
}

// SwarmSmoke is the short run of the Swarm suite for CI: one rollout each
// way with Traefik polling every second, immediate app, 100 req/s per
// client mode.
func SwarmSmoke() Config {
	c := Smoke()
	c.Rollouts, c.BaselineRollouts, c.Kinds, c.Swarm, c.StartupRuns = 1, 1, []string{KindImmediate}, true, 0
	c.SwarmPolls = []int{1}
	return c
}

func (b *bench) runSwarmSuite(ctx context.Context, rep *Report, logf func(string, ...any)) error {
	cfg := b.cfg
	sw, err := harness.StartSwarm(2, logf)
	if err != nil {
		return err
	}
	defer func() {
		if err := sw.Close(); err != nil {
			logf("swarm suite: removing the swarm: %v", err)
		}
	}()
	versions := 1 + max(cfg.Rollouts, cfg.BaselineRollouts)
	for _, kind := range cfg.Kinds {
		repo := "bench-" + kind
		b.repos[kind] = repo
		env := map[string]string{"SHUTDOWN": kind}
		if kind == KindLameDuck {
			env["DRAIN"] = cfg.LameDuckDrain.String()
		}
		for i := 1; i <= versions; i++ {
			opts := harness.AppImageOptions{Env: env, Version: version(i),
				// Swarm kills a task whose check fails: a generous timeout,
				// for checks run while new tasks start on a busy machine.
				Healthcheck: &harness.Healthcheck{Interval: cfg.HealthInterval, Timeout: 5 * time.Second, Retries: 3}}
			if i == 1 {
				rep.Apps = append(rep.Apps, AppInfo{Kind: kind, Dockerfile: harness.Dockerfile(opts)})
			}
			logf("swarm suite: building %s:%s on every node", repo, version(i))
			if err := sw.BuildAppImageOnNodes(repo+":"+version(i), opts); err != nil {
				return err
			}
		}
	}
	overlay, err := sw.NewOverlay()
	if err != nil {
		return err
	}
	polls := cfg.SwarmPolls
	if len(polls) == 0 {
		polls = []int{15, 1}
	}
	for _, poll := range polls {
		refresh := time.Duration(poll) * time.Second
		if poll == 15 {
			refresh = 0 // Traefik's default, not set
		}
		tr, err := sw.StartTraefik(cfg.Traefik, overlay, harness.SwarmTraefikOptions{Refresh: refresh, Args: []string{"--log.level=ERROR"}})
		if err != nil {
			return err
		}
		rep.Traefik = TraefikInfo{Version: cfg.Traefik, Args: tr.Args}
		for _, kind := range cfg.Kinds {
			for _, method := range []string{MethodDeployctl, MethodStartFirst} {
				n := cfg.Rollouts
				if method == MethodStartFirst {
					n = cfg.BaselineRollouts
				}
				if n == 0 || ctx.Err() != nil {
					continue
				}
				row, err := b.swarmRuns(ctx, sw, tr, overlay, kind, method, poll, n, logf)
				rep.Swarm = append(rep.Swarm, row)
				if err != nil {
					tr.Close()
					return err
				}
			}
		}
		tr.Close()
	}
	return nil
}

// swarmRuns creates a service of kind, rolls it out n times by method under
// load, and removes it.
func (b *bench) swarmRuns(ctx context.Context, sw *harness.Swarm, tr *harness.Traefik, overlay, kind, method string, poll, n int, logf func(string, ...any)) (SwarmRow, error) {
	cfg := b.cfg
	row := SwarmRow{Method: method, Kind: kind, PollS: poll}
	mgr := sw.Manager()
	name := fmt.Sprintf("%s-%s-p%d", map[string]string{MethodDeployctl: "dc", MethodStartFirst: "sf"}[method], kind, poll)
	repo := b.repos[kind]
	docker := func(args ...string) error {
		c := exec.CommandContext(ctx, "docker", args...)
		c.Env = append(os.Environ(), "DOCKER_HOST="+mgr.Host)
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := docker("service", "create", "--quiet", "--detach=false", "--name", name, "--replicas", "3", "--network", overlay,
		"--label", "traefik.enable=true",
		"--label", "traefik.http.routers."+name+".rule=Host(`"+name+".test`)",
		"--label", "traefik.http.services."+name+".loadbalancer.server.port=8080",
		repo+":v1"); err != nil {
		return row, err
	}
	defer func() {
		// The services deployctl made for it too.
		for i := 1; i <= n+1; i++ {
			docker("service", "rm", name+"-"+version(i))
		}
		docker("service", "rm", name)
	}()
	host := name + ".test"
	if err := waitAnswers(ctx, tr.EntryURL, host, time.Duration(poll)*time.Second+60*time.Second); err != nil {
		return row, err
	}
	var loads []*loadGen
	for _, mode := range cfg.Modes {
		loads = append(loads, startLoad(mode, tr.EntryURL+"/", host, cfg.Rate, cfg.Timeout))
	}
	sleep(ctx, cfg.Warmup)
	var windows []window
	var runErr error
	after := time.Duration(poll)*time.Second + time.Second
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		v := version(i + 1)
		r := &Rollout{Index: i, From: version(i), To: v}
		start := time.Now()
		if method == MethodDeployctl {
			b.extraEnv = []string{"DOCKER_HOST=" + mgr.Host, "DEPLOYCTL_TRAEFIK_URL=" + tr.APIURL}
			runErr = b.deployctl(ctx, r, "rollout", "--image", repo, "--version", v, "--app", name)
			b.extraEnv = nil
		} else {
			runErr = docker("service", "update", "--quiet", "--detach=false", "--update-order", "start-first", "--image", repo+":"+v, name)
		}
		end := time.Now()
		windows = append(windows, window{start, end.Add(after)})
		row.Rollouts++
		row.WallS = append(row.WallS, end.Sub(start).Seconds())
		logf("  swarm suite, %s, %s, Traefik poll %ds: %s -> %s in %.2fs", method, kind, poll, r.From, v, end.Sub(start).Seconds())
		if runErr != nil {
			row.Errors = append(row.Errors, runErr.Error())
			break
		}
		sleep(ctx, after)
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

// printSwarmTable prints the Swarm suite's rows.
func printSwarmTable(w io.Writer, r *Report) {
	if len(r.Swarm) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSwarm suite: a service of 3 replicas on a 2-node Swarm, Traefik's swarm provider (requests counted from a rollout's start to one poll period + 1 s after its end)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tapp\tTraefik poll\trollouts\tsent\tfailed\twall s (each)\t")
	for _, c := range r.Swarm {
		var walls []string
		for _, s := range c.WallS {
			walls = append(walls, fmt.Sprintf("%.2f", s))
		}
		fmt.Fprintf(tw, "%s\t%s\t%ds\t%d\t%d\t%d\t%s\t\n", c.Method, c.Kind, c.PollS, c.Rollouts, c.Sent, c.Failed, strings.Join(walls, " "))
	}
	tw.Flush()
	for _, c := range r.Swarm {
		for _, e := range c.Errors {
			fmt.Fprintf(w, "  %s (%s, poll %ds): %s\n", c.Method, c.Kind, c.PollS, firstLineOf(e))
		}
	}
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
