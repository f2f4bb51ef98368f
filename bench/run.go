package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/internal/harness"
	"github.com/deployctl/deployctl/internal/probe/embedded"
)

// bench is the shared setup of one run.
type bench struct {
	cfg          Config
	log          io.Writer
	cli          *client.Client
	network      string
	traefik      *harness.Traefik
	events       *eventWatcher
	deployctlBin string
	repos        map[string]string // app kind -> image repository
	// extraEnv is added to deployctl's environment (a compose file's
	// variables).
	extraEnv []string
}

// cleanups run in reverse order.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }
func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

func repoRoot() (string, error) { return harness.RepoRoot() }

// Run performs the benchmark. It returns the report of what it measured
// (also when it stops early on an error or ctx) and the error.
func Run(ctx context.Context, cfg Config, log io.Writer) (rep *Report, err error) {
	b := &bench{cfg: cfg, log: log, repos: map[string]string{}}
	var cl cleanups
	defer func() {
		fmt.Fprintln(log, "bench: cleaning up")
		cl.run()
	}()
	rep = newReport(cfg)
	defer func() { rep.Finish() }()
	logf := func(format string, args ...any) {
		fmt.Fprintf(log, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}

	if b.cli, err = harness.Docker(); err != nil {
		return rep, err
	}
	cl.add(func() { b.cli.Close() })
	rep.Machine = machine(ctx, b.cli)

	// deployctl, static as released.
	if cfg.Deployctl != "" {
		b.deployctlBin = cfg.Deployctl
	} else {
		dir, err := os.MkdirTemp("", "deployctl-bench-")
		if err != nil {
			return rep, err
		}
		cl.add(func() { os.RemoveAll(dir) })
		b.deployctlBin = filepath.Join(dir, "deployctl")
		logf("building deployctl as released (CGO_ENABLED=0, -trimpath, -s -w)")
		root, err := repoRoot()
		if err != nil {
			return rep, err
		}
		// Built as .goreleaser.yaml builds releases.
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", b.deployctlBin, ".")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return rep, fmt.Errorf("building deployctl: %v\n%s", err, out)
		}
	}
	rep.Deployctl.Source = b.deployctlBin
	if cfg.Deployctl == "" {
		rep.Deployctl.Source = "built from the working tree at " + gitDescribe()
	}
	if fi, err := os.Stat(b.deployctlBin); err == nil {
		rep.Deployctl.BinaryMB = float64(fi.Size()) / (1 << 20)
	} else {
		return rep, err
	}
	if out, err := exec.Command("file", b.deployctlBin).Output(); err == nil {
		rep.Deployctl.File = strings.TrimSpace(strings.TrimPrefix(string(out), b.deployctlBin+":"))
	}
	rep.Deployctl.Start = measureStartup(ctx, b.deployctlBin, cfg.StartupRuns)
	if cfg.Swarm {
		// Its own engines and Traefik (swarm.go).
		return rep, b.runSwarmSuite(ctx, rep, logf)
	}

	logf("Traefik %s binary (cached build)", cfg.Traefik)
	if _, err := harness.TraefikBinary(cfg.Traefik, func(f string, a ...any) { logf(f, a...) }); err != nil {
		return rep, err
	}
	var remove func() error
	if b.network, remove, err = harness.NewNetwork(b.cli); err != nil {
		return rep, err
	}
	cl.add(func() {
		if err := remove(); err != nil {
			fmt.Fprintf(log, "bench: cleanup: %v\n", err)
		}
	})
	opts := []harness.TraefikOption{harness.WithLogLevel("ERROR")}
	if cfg.Throttle >= 0 {
		opts = append(opts, harness.WithThrottle(cfg.Throttle))
	}
	if b.traefik, err = harness.StartTraefik(cfg.Traefik, b.network, opts...); err != nil {
		return rep, err
	}
	cl.add(b.traefik.Close)
	rep.Traefik = TraefikInfo{Version: cfg.Traefik, Args: b.traefik.Args}
	logf("Traefik %s: entrypoint %s, API %s", cfg.Traefik, b.traefik.EntryURL, b.traefik.APIURL)

	b.events = watchEvents(b.cli)
	cl.add(b.events.stop)

	// One image per app kind, tagged v1..vN (a tag is all a version needs).
	versions := 1 + max(cfg.Rollouts, cfg.BaselineRollouts)
	if cfg.Switch {
		versions = 1 + 2*cfg.Rollouts // each switch's rollouts
	}
	for _, kind := range cfg.Kinds {
		repo := harness.UniqueName("deployctl-bench-" + kind + "-")
		b.repos[kind] = repo
		env := map[string]string{"SHUTDOWN": kind}
		if kind == KindLameDuck {
			env["DRAIN"] = cfg.LameDuckDrain.String()
		}
		opts := harness.AppImageOptions{Env: env,
			Healthcheck: &harness.Healthcheck{Interval: cfg.HealthInterval, Timeout: 2 * time.Second, Retries: 3}}
		rep.Apps = append(rep.Apps, AppInfo{Kind: kind, Dockerfile: harness.Dockerfile(opts)})
		logf("building image %s (%s)", repo, kind)
		if err := harness.BuildAppImage(b.cli, repo+":v1", opts); err != nil {
			return rep, err
		}
		for i := versions; i >= 1; i-- {
			ref := repo + ":" + version(i)
			if i > 1 {
				if _, err := b.cli.ImageTag(ctx, client.ImageTagOptions{Source: repo + ":v1", Target: ref}); err != nil {
					return rep, err
				}
			}
			cl.add(func() {
				if err := harness.RemoveImage(b.cli, ref); err != nil {
					fmt.Fprintf(log, "bench: cleanup: %v\n", err)
				}
			})
		}
	}

	if cfg.Switch {
		return rep, b.runSwitchSuite(ctx, rep, logf)
	}
	if cfg.Compose {
		return rep, b.runComposeSuite(ctx, rep, logf)
	}
	if len(cfg.Replicas) > 0 {
		return rep, b.runReplicaSuite(ctx, rep, logf)
	}
	for _, kind := range cfg.Kinds {
		for _, method := range cfg.Methods {
			n := cfg.BaselineRollouts
			if method == MethodDeployctl {
				n = cfg.Rollouts
			}
			if n == 0 {
				continue
			}
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			s := &scenario{b: b, method: method, kind: kind, repo: b.repos[kind],
				app: fmt.Sprintf("%s-%s", strings.ReplaceAll(method, "-", ""), kind)}
			logf("%s, %s app: %d rollouts at %d req/s per client mode (%s)", method, kind, n, cfg.Rate, strings.Join(cfg.Modes, ", "))
			res, err := s.run(ctx, n, logf)
			if res != nil {
				rep.Scenarios = append(rep.Scenarios, *res)
			}
			s.cleanup()
			if err != nil {
				return rep, fmt.Errorf("%s, %s app: %w", method, kind, err)
			}
		}
	}
	return rep, nil
}

// run does the first deploy, starts the load and the watcher, and performs
// n rollouts.
func (s *scenario) run(ctx context.Context, n int, logf func(string, ...any)) (*ScenarioResult, error) {
	b := s.b
	id, url, err := s.firstDeploy(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.waitListed(ctx, url, true); err != nil {
		return nil, err
	}
	res := &ScenarioResult{Method: s.method, Kind: s.kind, App: s.app}
	watcher := watchTraefik(b.traefik, s.service(), b.cfg.WatchInterval)
	defer watcher.stop()
	loads := map[string]*loadGen{}
	for _, m := range b.cfg.Modes {
		loads[m] = startLoad(m, b.traefik.EntryURL+"/", s.host(), b.cfg.Rate, b.cfg.Timeout)
	}
	stopLoads := func() map[string][]sample {
		out := map[string][]sample{}
		for m, g := range loads {
			out[m] = g.stop()
		}
		return out
	}
	res.LoadStart = time.Now()
	sleep(ctx, b.cfg.Warmup)

	var runErr error
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		r := Rollout{Index: i, From: version(i), To: version(i + 1), OldID: id, OldURL: url}
		if s.method == MethodDeployctl {
			// The floor model (floor.go) is the gradual switch's: new
			// listed, old drained by its probe. The atomic switch, the
			// default, is the switch suite's (-switch).
			runErr = b.deployctl(ctx, &r, "rollout", "--app", s.app, "--image", s.repo, "--version", r.To, "--env", "APP_VERSION="+r.To, "--switch", "gradual")
		} else {
			r.Start = time.Now()
			runErr = s.baseline(ctx, &r, r.To)
			r.End = time.Now()
			r.WallS = r.End.Sub(r.Start).Seconds()
			s.olds = append(s.olds, r.OldID)
		}
		if runErr != nil {
			r.Error = runErr.Error()
		}
		res.Rollouts = append(res.Rollouts, r)
		logf("  %s %s -> %s: %.2fs %s", s.method, r.From, r.To, r.WallS, phaseString(r.Phases))
		if runErr != nil {
			break
		}
		id, url = r.NewID, r.NewURL
		sleep(ctx, b.cfg.Settle)
	}
	res.LoadEnd = time.Now()
	samples := stopLoads()
	watcher.stop()
	time.Sleep(200 * time.Millisecond) // the last Docker events
	res.WatcherPolls = watcher.polls

	var switches []window
	for i := range res.Rollouts {
		r := &res.Rollouts[i]
		switches = append(switches, window{r.Start, r.End})
		s.observe(r, watcher)
	}
	for _, m := range b.cfg.Modes {
		st := summarize(m, b.cfg.Rate, samples[m], switches)
		st.Bursts = bursts(samples[m], res.Rollouts)
		res.Load = append(res.Load, st)
	}
	res.aggregate()
	if runErr != nil {
		return res, runErr
	}
	return res, ctx.Err()
}

// observe fills in what the watchers saw during rollout r, and for
// deployctl the physical floor and its reaction lags.
func (s *scenario) observe(r *Rollout, w *traefikWatcher) {
	ev := s.b.events
	o := &r.Obs
	o.NewStart = ev.first(r.NewID, "start", r.Start)
	o.NewHealthy = ev.first(r.NewID, "health_status: healthy", r.Start)
	o.NewListed = w.firstWith(r.NewURL, r.Start)
	o.OldUnhlthy = ev.first(r.OldID, "health_status: unhealthy", r.Start)
	o.OldGone = w.firstWithout(r.OldURL, r.Start)
	o.OldKill = ev.first(r.OldID, "kill", r.Start)
	o.OldDie = ev.first(r.OldID, "die", r.Start)
	o.OldStopped = ev.first(r.OldID, "stop", r.Start)
	if s.method != MethodDeployctl {
		return
	}
	o.OldDrain = r.progress("drain", "info", "drain marker written")
	createAsked := r.progress("create", "start", "")
	drainAsked := r.progress("drain", "start", "")
	stopAsked := r.progress("stop", "info", "stopping")
	if r.Error != "" || anyZero(createAsked, drainAsked, stopAsked, o.NewStart, o.NewHealthy, o.NewListed, o.OldDrain, o.OldGone, o.OldKill, o.OldStopped) {
		return
	}
	sec := func(a, b time.Time) float64 { return max(0, b.Sub(a).Seconds()) }
	f := &Floor{
		CreateS:    sec(createAsked, o.NewStart),
		HealthyS:   sec(o.NewStart, o.NewHealthy),
		RegisterS:  sec(o.NewHealthy, o.NewListed),
		DrainS:     sec(drainAsked, o.OldGone),
		MarkerS:    sec(drainAsked, o.OldDrain),
		ExitS:      sec(stopAsked, o.OldStopped),
		BeforeNewS: sec(r.Start, createAsked),
	}
	f.TotalS = f.CreateS + f.HealthyS + f.RegisterS + f.DrainS + f.ExitS
	f.OverheadS = r.WallS - f.TotalS
	r.Floor = f
	ms := func(a, b time.Time) float64 {
		if a.IsZero() || b.IsZero() {
			return -1
		}
		return float64(b.Sub(a).Microseconds()) / 1000
	}
	r.Lag = &Lag{
		HealthyMS:  ms(o.NewHealthy, r.progress("healthy", "done", "")),
		RegisterMS: ms(o.NewListed, r.progress("register", "done", "")),
		DrainMS:    ms(o.OldGone, r.progress("drain", "done", "")),
		StopMS:     ms(o.OldStopped, r.progress("stop", "done", "")),
	}
}

func anyZero(ts ...time.Time) bool {
	for _, t := range ts {
		if t.IsZero() {
			return true
		}
	}
	return false
}

// cleanup removes the scenario's containers (those deployctl kept stopped
// for rollback, and the baselines') and deployctl's history and lock of its
// app, so that scenarios do not add up and nothing is left behind.
func (s *scenario) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), harness.CleanupTimeout)
	defer cancel()
	for _, label := range []string{"deployctl.app=" + s.app, benchAppLabel + "=" + s.app} {
		l, err := s.b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)})
		if err != nil {
			continue
		}
		for _, c := range l.Items {
			s.b.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
	}
	// deployctl's deploy history (labelled volumes) and lock of the app.
	if vols, err := s.b.cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", "deployctl.history="+s.app)}); err == nil {
		for _, v := range vols.Items {
			s.b.cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{})
		}
	}
	s.b.cli.ContainerRemove(ctx, "deployctl-lock-"+s.app, client.ContainerRemoveOptions{Force: true})
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// measureStartup times "deployctl version", and the drain-aware probe
// deployctl embeds (for this machine's platform) with --tcp to a listening
// port (its cheapest path), runs times each.
func measureStartup(ctx context.Context, bin string, runs int) StartTimes {
	var st StartTimes
	if runs <= 0 {
		return st
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return st
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	timeIt := func(bin string, args ...string) []float64 {
		var ms []float64
		for i := 0; i < runs && ctx.Err() == nil; i++ {
			cmd := exec.Command(bin, args...)
			t := time.Now()
			if err := cmd.Run(); err != nil {
				return nil
			}
			ms = append(ms, float64(time.Since(t).Microseconds())/1000)
		}
		sort.Float64s(ms)
		return ms
	}
	st.Runs = runs
	st.VersionMS = dist(timeIt(bin, "version"))
	if probe, err := embedded.Binary(runtime.GOOS, runtime.GOARCH); err == nil {
		if f, err := os.CreateTemp("", "deployctl-probe-"); err == nil {
			defer os.Remove(f.Name())
			_, werr := f.Write(probe)
			if f.Close() == nil && werr == nil && os.Chmod(f.Name(), 0o755) == nil {
				st.ProbeMS = dist(timeIt(f.Name(), "--tcp", ln.Addr().String()))
			}
		}
	}
	return st
}

func dist(ms []float64) Dist {
	if len(ms) == 0 {
		return Dist{}
	}
	return Dist{Min: ms[0], Median: ms[len(ms)/2], Max: ms[len(ms)-1]}
}

// machine describes where the numbers come from.
func machine(ctx context.Context, cli *client.Client) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, m.CPU, _ = strings.Cut(l, ":")
				m.CPU = strings.TrimSpace(m.CPU)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if l, _, ok := strings.Cut(string(b), "\n"); ok {
			m.Memory = strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	m.LoadBefore = loadavg()
	if v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{}); err == nil {
		m.Docker = v.Version + " (API " + v.APIVersion + ")"
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// gitDescribe is the module's commit, "+dirty" with uncommitted changes.
func gitDescribe() string {
	root, err := repoRoot()
	if err != nil {
		return "?"
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "?"
	}
	d := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		d += "+dirty"
	}
	return d
}
