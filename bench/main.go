// Command bench measures rollouts under load: deployctl against three
// baselines, on one real Traefik (the pinned v3.0.0 build of the end-to-end
// tests, run as a host process) and the sample app (testdata/app), with
// constant-rate open-loop HTTP load through Traefik's entrypoint in two
// client modes (keep-alive, a new connection per request), for two app
// kinds (lame duck; listener closed at once on SIGTERM).
//
//	go run ./bench                     # the default run (about 9 minutes on 2 cores)
//	go run ./bench -rollouts 20 -rate 500 -baseline-rollouts 2   # the same
//	go run ./bench -smoke              # 2 deployctl rollouts per app kind at 100 req/s
//	go run ./bench -compose            # a compose service: deployctl against docker compose up -d
//	go run ./bench -swarm              # a Swarm service: deployctl against service update --update-order start-first
//
// Methods: deployctl (the real static binary, run with --json); (a)
// stop-first: stop old, then run new; (b) sleep-5s: run new, wait healthy,
// sleep 5s, stop old (Kamal 1); (c) article: run new, poll Traefik until it
// lists it, stop old, poll until it is gone. The baselines are done here with
// the Docker SDK.
//
// It prints tables and writes the full results as JSON (-out, default
// bench/results/<timestamp>.json). Everything it creates (network,
// containers, images, Traefik) is removed at the end, also on Ctrl-C (a
// second Ctrl-C exits at once; leftovers carry the label deployctl-testenv).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// Config is what one benchmark run does.
type Config struct {
	Rollouts         int           // deployctl rollouts per app kind
	BaselineRollouts int           // rollouts per baseline and app kind
	Rate             int           // requests per second, per client mode
	Modes            []string      // client modes, run concurrently
	Kinds            []string      // app kinds
	Methods          []string      // methods
	Traefik          string        // Traefik version
	Throttle         time.Duration // providersThrottleDuration; <0: Traefik's default (2s)
	Warmup           time.Duration // steady load before the first rollout
	Settle           time.Duration // steady load between rollouts
	LameDuckDrain    time.Duration // DRAIN of the lame-duck app
	HealthInterval   time.Duration // the image's HEALTHCHECK interval
	Timeout          time.Duration // client timeout per request
	WatchInterval    time.Duration // Traefik watcher poll interval
	StartupRuns      int           // runs of "deployctl version" / "probe" to time
	Deployctl        string        // prebuilt deployctl binary; "": build this module's
	DeployctlEnv     []string      // extra environment for deployctl (DEPLOYCTL_*)
	Out              string        // JSON path; "-": none
	Verbose          bool
	// The replicas suite (issue 11): when Replicas is set, Run rolls out
	// N replicas for each N in Replicas and each --max-surge in Surges
	// with deployctl, and the baselines for each N in BaselineReplicas,
	// instead of the single-container suite.
	Replicas         []int
	Surges           []string
	BaselineReplicas []int
	// Switch runs the switch suite (issue 12, switch.go) instead: atomic
	// against gradual, -rollouts of each, lame-duck app only.
	Switch bool
	// Compose runs the compose suite (issue 13, compose.go) instead:
	// deployctl against docker compose up -d on a compose service of 3
	// replicas.
	Compose bool
	// Swarm runs the Swarm suite (issue 14, swarm.go) instead: deployctl
	// against docker service update --update-order start-first on a Swarm
	// service of 3 replicas, at each Traefik poll period in SwarmPolls
	// (seconds; default 15 and 1).
	Swarm      bool
	SwarmPolls []int
}

// Default is the default run: about 9 minutes on 2 cores.
func Default() Config {
	return Config{
		Rollouts: 20, BaselineRollouts: 2, Rate: 500,
		Modes:   []string{ModeKeepAlive, ModeFresh},
		Kinds:   []string{KindLameDuck, KindImmediate},
		Methods: allMethods,
		Traefik: "v3.0.0", Throttle: -1,
		Warmup: 2 * time.Second, Settle: 500 * time.Millisecond,
		LameDuckDrain: time.Second, HealthInterval: time.Second,
		Timeout: 5 * time.Second, WatchInterval: 10 * time.Millisecond,
		StartupRuns: 30,
	}
}

// Smoke is the short run for CI: 2 deployctl rollouts per app kind at
// 100 req/s per client mode, no baselines.
func Smoke() Config {
	c := Default()
	c.Rollouts, c.BaselineRollouts, c.Rate = 2, 0, 100
	c.Methods = []string{MethodDeployctl}
	c.Warmup, c.StartupRuns = time.Second, 5
	return c
}

// ReplicasSmoke is the short run of the replicas suite for CI: 2 replicas,
// surge 1, one deployctl rollout of the lame-duck app at 100 req/s per
// client mode, no baselines.
func ReplicasSmoke() Config {
	c := Smoke()
	c.Rollouts = 1
	c.Kinds = []string{KindLameDuck}
	c.Replicas, c.Surges = []int{2}, []string{"1"}
	c.StartupRuns = 0
	return c
}

// SwitchSmoke is the short run of the switch suite for CI: one rollout
// with each switch at 100 req/s.
func SwitchSmoke() Config {
	c := Smoke()
	c.Rollouts, c.Kinds, c.Switch, c.StartupRuns = 1, []string{KindLameDuck}, true, 0
	return c
}

// App kinds (the test app's SHUTDOWN).
const (
	KindLameDuck  = "lameduck"  // keeps serving for DRAIN after SIGTERM
	KindImmediate = "immediate" // http.Server.Shutdown at once: the listener closes
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main parses flags, runs the benchmark and returns the exit status: 0, 1
// (failed requests with deployctl, or an error), 2 (usage), 130 (interrupted).
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := Default()
	smoke := fs.Bool("smoke", false, "short run for CI: 2 deployctl rollouts per app kind at 100 req/s, no baselines (other flags still apply on top)")
	rollouts := fs.Int("rollouts", d.Rollouts, "deployctl rollouts per app kind")
	baseline := fs.Int("baseline-rollouts", d.BaselineRollouts, "rollouts per baseline method and app kind (baselines are slow)")
	rate := fs.Int("rate", d.Rate, "requests per second per client mode (the modes run at the same time)")
	modes := fs.String("modes", strings.Join(d.Modes, ","), "client modes: keepalive, fresh")
	kinds := fs.String("kinds", strings.Join(d.Kinds, ","), "app kinds: lameduck, immediate")
	methods := fs.String("methods", strings.Join(d.Methods, ","), "methods: deployctl, stop-first, sleep-5s, article")
	traefik := fs.String("traefik", d.Traefik, "Traefik version (a build module in testdata/traefik)")
	throttle := fs.Duration("throttle", d.Throttle, "Traefik's providersThrottleDuration (negative: Traefik's default, 2s)")
	warmup := fs.Duration("warmup", d.Warmup, "steady load before the first rollout")
	settle := fs.Duration("settle", d.Settle, "steady load between rollouts")
	drain := fs.Duration("lameduck-drain", d.LameDuckDrain, "how long the lame-duck app keeps serving after SIGTERM")
	hi := fs.Duration("health-interval", d.HealthInterval, "the app image's HEALTHCHECK interval")
	timeout := fs.Duration("timeout", d.Timeout, "client timeout per request")
	runs := fs.Int("startup-runs", d.StartupRuns, "times to run 'deployctl version' and the embedded probe to measure start time")
	bin := fs.String("deployctl", "", "use this deployctl binary (static) instead of building the module's")
	var env multiFlag
	fs.Var(&env, "deployctl-env", "KEY=VALUE for deployctl, e.g. DEPLOYCTL_POLL_INTERVAL=20ms (repeatable)")
	out := fs.String("out", "", "JSON results file (default bench/results/<timestamp>.json; - for none)")
	verbose := fs.Bool("v", false, "show deployctl's progress lines")
	replicas := fs.String("replicas", "", "run the replicas suite instead: deployctl rollouts of N replicas for each N of this list (e.g. 1,2,4,8); -rollouts then defaults to 2 and -methods to deployctl, docker-rollout, stop-start")
	surges := fs.String("surges", "1,100%", "replicas suite: the --max-surge values to run deployctl with (--max-unavailable 0)")
	baseReplicas := fs.String("baseline-replicas", "", "replicas suite: the N values of the baselines (default: those of -replicas)")
	swarmSuite := fs.Bool("swarm", false, "run the Swarm suite instead: a Swarm service of 3 replicas on a 2-node Swarm of its own, rolled out -rollouts times by deployctl and -baseline-rollouts times by docker service update --update-order start-first, with Traefik polling every 15 s and every 1 s (default 3 and 3)")
	composeSuite := fs.Bool("compose", false, "run the compose suite instead: a compose service of 3 replicas made by docker compose up -d, rolled out -rollouts times by deployctl rollout -f and -baseline-rollouts times by docker compose up -d with the new tag (default 5 and 3)")
	switchSuite := fs.Bool("switch", false, "run the switch suite instead: -rollouts rollouts with --switch atomic, then as many with --switch gradual (lame-duck app), counting mixed page/asset pairs and connections in flight at the old container's signal")
	reprint := fs.String("report", "", "print the tables of an earlier run's JSON results file and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *reprint != "" {
		rep, err := ReadReport(*reprint)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		PrintTables(stdout, rep)
		return 0
	}
	cfg := d
	if *smoke {
		cfg = Smoke()
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pick := func(name string, apply func()) {
		if set[name] || !*smoke {
			apply()
		}
	}
	if *replicas != "" {
		ns, err := ints(*replicas)
		if err != nil {
			fmt.Fprintf(stderr, "bench: -replicas: %v\n", err)
			return 2
		}
		cfg.Replicas, cfg.Surges, cfg.BaselineReplicas = ns, split(*surges), ns
		if *baseReplicas != "" {
			if cfg.BaselineReplicas, err = ints(*baseReplicas); err != nil {
				fmt.Fprintf(stderr, "bench: -baseline-replicas: %v\n", err)
				return 2
			}
		}
		if !set["rollouts"] {
			*rollouts = 2
			cfg.Rollouts = 2
		}
		if !set["methods"] {
			*methods = strings.Join(replicaMethods, ",")
			if *smoke {
				*methods = MethodDeployctl
			}
			set["methods"] = true
		}
	}
	pick("rollouts", func() { cfg.Rollouts = *rollouts })
	pick("baseline-rollouts", func() { cfg.BaselineRollouts = *baseline })
	pick("rate", func() { cfg.Rate = *rate })
	pick("modes", func() { cfg.Modes = split(*modes) })
	pick("kinds", func() { cfg.Kinds = split(*kinds) })
	pick("methods", func() { cfg.Methods = split(*methods) })
	pick("warmup", func() { cfg.Warmup = *warmup })
	pick("startup-runs", func() { cfg.StartupRuns = *runs })
	if *composeSuite {
		cfg.Compose = true
		if !set["rollouts"] && !*smoke {
			cfg.Rollouts = 5
		}
		if !set["baseline-rollouts"] {
			cfg.BaselineRollouts = map[bool]int{true: 1, false: 3}[*smoke]
		}
	}
	if *swarmSuite {
		cfg.Swarm = true
		if !set["rollouts"] && !*smoke {
			cfg.Rollouts = 3
		}
		if !set["baseline-rollouts"] {
			cfg.BaselineRollouts = map[bool]int{true: 1, false: 3}[*smoke]
		}
		if *smoke {
			cfg.Rollouts, cfg.SwarmPolls = 1, []int{1}
		}
	}
	if *switchSuite {
		cfg.Switch, cfg.Kinds, cfg.BaselineRollouts = true, []string{KindLameDuck}, 0
		if !set["rollouts"] {
			cfg.Rollouts = 5
		}
	}
	cfg.Traefik, cfg.Throttle, cfg.Settle = *traefik, *throttle, *settle
	cfg.LameDuckDrain, cfg.HealthInterval, cfg.Timeout = *drain, *hi, *timeout
	cfg.Deployctl, cfg.DeployctlEnv, cfg.Out, cfg.Verbose = *bin, env, *out, *verbose
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
		fmt.Fprintln(stderr, "\nbench: interrupted; cleaning up (Ctrl-C again to exit at once)")
	}()

	rep, err := Run(ctx, cfg, stderr)
	if rep != nil {
		rep.Command = "go run ./bench " + strings.Join(args, " ")
		PrintTables(stdout, rep)
		if cfg.Out != "-" {
			path := cfg.Out
			if path == "" {
				path = defaultOut(rep.Started)
			}
			if werr := rep.Write(path); werr != nil {
				fmt.Fprintf(stderr, "bench: %v\n", werr)
			} else {
				fmt.Fprintf(stdout, "\nJSON: %s\n", path)
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	case rep.DeployctlFailed() > 0:
		fmt.Fprintf(stderr, "bench: %d requests failed during deployctl rollouts\n", rep.DeployctlFailed())
		return 1
	}
	return 0
}

func (c Config) validate() error {
	if c.Rate <= 0 || c.Rollouts < 0 || c.BaselineRollouts < 0 {
		return errors.New("-rate must be positive, -rollouts and -baseline-rollouts not negative")
	}
	for _, m := range c.Modes {
		if m != ModeKeepAlive && m != ModeFresh {
			return fmt.Errorf("-modes: unknown mode %q", m)
		}
	}
	for _, k := range c.Kinds {
		if k != KindLameDuck && k != KindImmediate {
			return fmt.Errorf("-kinds: unknown app kind %q", k)
		}
	}
	methods := allMethods
	if len(c.Replicas) > 0 {
		methods = replicaMethods
	}
	for _, m := range c.Methods {
		if !contains(methods, m) {
			return fmt.Errorf("-methods: unknown method %q (want one of %s)", m, strings.Join(methods, ", "))
		}
	}
	for _, sg := range c.Surges {
		if _, err := deploy.ParseAmount("-surges", sg); err != nil {
			return err
		}
	}
	if len(c.Replicas) > 0 && len(c.Surges) == 0 {
		return errors.New("-surges: at least one value")
	}
	for _, kv := range c.DeployctlEnv {
		if !strings.HasPrefix(kv, "DEPLOYCTL_") || !strings.Contains(kv, "=") {
			return fmt.Errorf("-deployctl-env %q: want DEPLOYCTL_NAME=value", kv)
		}
	}
	return nil
}

// defaultOut is bench/results/<timestamp>.json in the module's root.
func defaultOut(t time.Time) string {
	dir := filepath.Join("bench", "results")
	if root, err := repoRoot(); err == nil {
		dir = filepath.Join(root, dir)
	}
	return filepath.Join(dir, t.Format("20060102-150405")+".json")
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range split(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
