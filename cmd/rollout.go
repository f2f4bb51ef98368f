package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

type rolloutOptions struct {
	deploy.Options
	traefik traefikOptions

	selectors []string
	labels    []string
	envs      []string
	envFiles  []string
	health    healthFlags
	restart   string
	drain     string
	pull      string
	timeout   time.Duration
	json      bool
	dryRun    bool
}

type healthFlags struct {
	cmd                            string
	interval, timeout, startPeriod time.Duration
	retries                        int
	none                           bool
	anySet                         bool
}

func newRolloutCmd() *cobra.Command {
	return rolloutCommand(&rolloutOptions{}, runRollout)
}

// rolloutCommand binds the flags to o; run is runRollout, or a stand-in in
// tests of flag handling.
func rolloutCommand(o *rolloutOptions, run func(context.Context, *cobra.Command, *rolloutOptions) error) *cobra.Command {
	c := &cobra.Command{
		Use:   "rollout --image IMAGE --version TAG",
		Short: "Roll a new version out with zero failed requests",
		Long: `Roll IMAGE:TAG out in place of the app's running container(s).

The new container gets the current container's configuration (env, labels,
networks, mounts, restart policy, command, resources, ...) with the image
swapped; on a first deploy it is configured from the flags. deployctl waits
until Docker reports it healthy and Traefik lists its server, then takes the
old container(s) out of Traefik, confirms Traefik dropped them, and stops
them. Old containers are kept stopped for rollback (--keep).

If anything fails before an old container is touched, the new container is
removed and the old version keeps serving. ` + "`deployctl help exit-codes`" + ` lists
the exit codes. Every flag can also be set as DEPLOYCTL_<FLAG>, e.g.
DEPLOYCTL_TRAEFIK_URL; a flag on the command line wins over the environment.`,
		Example: `  # in CI, after pushing registry.example.com/shop/web:$CI_COMMIT_SHORT_SHA
  deployctl rollout --image registry.example.com/shop/web --version "$CI_COMMIT_SHORT_SHA"

  # first deploy: configuration from flags
  deployctl rollout --image web --version v1 --network proxy \
    --label traefik.enable=true \
    --label 'traefik.http.routers.web.rule=Host(` + "`shop.example.com`" + `)' \
    --label traefik.http.services.web.loadbalancer.server.port=8080 \
    --env-file web.env --health-cmd 'wget -qO- localhost:8080/up'

  # switch from a hand-written script whose containers are labelled app=web
  deployctl rollout --image web --version 3f9ace5 --select app=web`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return run(c.Context(), c, o)
		},
	}
	f := c.Flags()
	f.SortFlags = false
	f.StringVar(&o.Image, "image", "", "image repository to deploy, without tag (required)")
	f.StringVar(&o.Version, "version", "", "image tag to deploy, e.g. a commit SHA (required)")
	f.StringVar(&o.App, "app", "", "app name (default: the image name's last path element)")
	f.StringArrayVar(&o.selectors, "select", nil, "also treat running containers with this `label=value` as the app's current version (adopt containers deployctl did not make)")
	f.StringVar(&o.Service, "service", "", "Traefik service, e.g. web@docker (default: the one that lists the current container)")
	f.StringVar(&o.Network, "network", "", "network Traefik reaches the app on; on a first deploy the container is attached to it")
	f.StringArrayVar(&o.labels, "label", nil, "set a `key=value` label on the new container")
	f.StringArrayVarP(&o.envs, "env", "e", nil, "set an environment variable `KEY=VALUE` on the new container")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a `file` (KEY=VALUE lines, # comments)")
	f.StringArrayVarP(&o.Volumes, "volume", "v", nil, "bind mount or volume `[source:]destination[:options]`, as in docker run")
	f.StringVar(&o.restart, "restart", "", "restart policy: no, always, unless-stopped, on-failure[:N] (default: the current container's, unless-stopped on a first deploy)")
	f.StringVar(&o.health.cmd, "health-cmd", "", "healthcheck command, run by the container's shell")
	f.DurationVar(&o.health.interval, "health-interval", 0, "time between health checks (default 30s)")
	f.DurationVar(&o.health.timeout, "health-timeout", 0, "maximum time one health check may take (default 30s)")
	f.DurationVar(&o.health.startPeriod, "health-start-period", 0, "time the app may take to start before failed checks count")
	f.IntVar(&o.health.retries, "health-retries", 0, "consecutive failures before the container counts as unhealthy (default 3)")
	f.BoolVar(&o.health.none, "no-healthcheck", false, "ignore the image's healthcheck (deployctl then checks that the port accepts connections)")

	registerProcedureFlags(f, &o.Options, &o.drain, &o.timeout)
	f.BoolVar(&o.Force, "force", false, "redeploy the version that is already serving")
	f.StringVar(&o.pull, "pull", "missing", "pull the image: missing, always, never")
	f.BoolVar(&o.json, "json", false, "print the result as one JSON document on stdout")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan (current containers, service, drain method, what would be pruned) and change nothing")
	o.traefik.register(c)
	return c
}

func runRollout(ctx context.Context, c *cobra.Command, o *rolloutOptions) (err error) {
	// --json: a failure before the engine ran (bad input, Docker or
	// Traefik unreachable) is a JSON document too.
	wroteJSON := false
	defer func() {
		if err != nil && o.json && !wroteJSON && !o.dryRun {
			writeJSONResult(c.OutOrStdout(), nil, err)
		}
	}()
	if err := o.complete(c); err != nil {
		return err
	}
	if o.timeout <= 0 {
		return usagef("--timeout must be positive (got %s)", o.timeout)
	}
	if err := o.Validate(); err != nil {
		var de *deploy.Error
		if errors.As(err, &de) {
			return usageErr{de.Err}
		}
		return err
	}
	// The progress renderer is closed (spinner stopped) before anything
	// else is printed, and on every return.
	run, err := startEngine(ctx, c, &o.traefik, o.timeout, o.Drain)
	if err != nil {
		return err
	}
	defer run.Close()
	o.Probe = run.probe
	if o.dryRun {
		return printPlan(run, c, o)
	}
	stderr := c.ErrOrStderr()
	res, err := run.eng.Rollout(run.ctx, o.Options)
	run.progress.Close()
	if o.json {
		writeJSONResult(c.OutOrStdout(), res, err)
		wroteJSON = true
	}
	if err != nil {
		var de *deploy.Error
		if errors.As(err, &de) && de.Kind == deploy.KindUsage {
			fmt.Fprintf(stderr, "deployctl: %v\n  nothing was changed\n", de.Err)
		} else {
			fmt.Fprintf(stderr, "deployctl: rollout of %s failed: %v\n", o.ImageRef(), err)
		}
		return &reportedError{err}
	}
	if !o.json {
		printResult(c.OutOrStdout(), res)
	}
	return nil
}

// complete turns the string flags into the engine's options.
func (o *rolloutOptions) complete(c *cobra.Command) error {
	var err error
	if o.Select, err = parseKeyValues("--select", o.selectors); err != nil {
		return err
	}
	if o.Labels, err = parseKeyValues("--label", o.labels); err != nil {
		return err
	}
	var env []string
	for _, path := range o.envFiles {
		fromFile, err := readEnvFile(path)
		if err != nil {
			return err
		}
		env = append(env, fromFile...)
	}
	for _, e := range o.envs {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return usagef("--env %q must be KEY=VALUE", redactValue(e))
		}
	}
	o.Env = append(env, o.envs...)
	f := c.Flags()
	h := o.health
	h.anySet = f.Changed("health-cmd") || f.Changed("health-interval") || f.Changed("health-timeout") || f.Changed("health-start-period") || f.Changed("health-retries")
	switch {
	case h.none && h.anySet:
		return usagef("--no-healthcheck cannot be combined with --health-* flags")
	case h.none:
		o.Healthcheck = &deploy.Healthcheck{Test: []string{"NONE"}}
	case h.anySet:
		if h.cmd == "" {
			return usagef("--health-interval, --health-timeout, --health-start-period and --health-retries need --health-cmd")
		}
		if h.interval < 0 || h.timeout < 0 || h.startPeriod < 0 || h.retries < 0 {
			return usagef("--health-* durations and retries must not be negative")
		}
		o.Healthcheck = &deploy.Healthcheck{Test: []string{"CMD-SHELL", h.cmd}, Interval: h.interval, Timeout: h.timeout, StartPeriod: h.startPeriod, Retries: h.retries}
	}
	o.Drain = deploy.DrainMode(o.drain)
	o.Pull = deploy.PullPolicy(o.pull)
	o.Restart = o.restart
	return nil
}

func parseKeyValues(flag string, items []string) (map[string]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || k == "" {
			return nil, usagef("%s %q must be key=value", flag, it)
		}
		m[k] = v
	}
	return m, nil
}

// readEnvFile reads KEY=VALUE lines as docker run --env-file does: blank
// lines and # comments are skipped; a bare KEY takes its value from
// deployctl's own environment.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("--env-file: %v", err)
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, usagef("--env-file %s line %d: want KEY=VALUE (the value is not shown)", path, n)
		}
		if !ok {
			v, set := os.LookupEnv(k)
			if !set {
				continue
			}
			line = k + "=" + v
		}
		env = append(env, line)
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("--env-file %s: %v", path, err)
	}
	return env, nil
}

func redactValue(e string) string {
	if k, _, ok := strings.Cut(e, "="); ok {
		return k + "=…"
	}
	return e
}

func printResult(w io.Writer, res *deploy.Result) {
	fmt.Fprintf(w, "%s %s is serving: %s (%s) in %s\n", res.App, res.Version, res.New.Name, res.New.URL, strings.Join(res.Service, ", "))
	var parts []string
	for _, p := range res.Phases {
		parts = append(parts, fmt.Sprintf("%s %s", p.Phase, p.Duration))
	}
	fmt.Fprintf(w, "  phases: %s; total %s\n", strings.Join(parts, ", "), res.Total)
	for _, old := range res.Old {
		if old.Gone {
			fmt.Fprintf(w, "  %s (%s) was removed by someone else during the rollout\n", old.Name, old.Version)
			continue
		}
		if old.HalfMade {
			fmt.Fprintf(w, "  stopped and removed %s (%s), left half-made by an interrupted run\n", old.Name, old.Version)
			continue
		}
		fmt.Fprintf(w, "  stopped %s (%s, drained by %s), kept for rollback\n", old.Name, old.Version, old.Drain)
	}
	if len(res.Pruned) > 0 {
		fmt.Fprintf(w, "  removed old containers: %s\n", strings.Join(res.Pruned, ", "))
	}
}

// jsonResult is the --json document, on success and on failure.
type jsonResult struct {
	OK       bool           `json:"ok"`
	ExitCode int            `json:"exit_code"`
	Result   *deploy.Result `json:"result,omitempty"`
	Error    *jsonError     `json:"error,omitempty"`
}

type jsonError struct {
	Phase    deploy.Phase `json:"phase,omitempty"`
	Message  string       `json:"message"`
	Observed string       `json:"observed,omitempty"`
	State    string       `json:"state,omitempty"`
	Hint     string       `json:"hint,omitempty"`
}

func writeJSONResult(w io.Writer, res *deploy.Result, err error) {
	out := jsonResult{OK: err == nil, Result: res}
	if err != nil {
		out.ExitCode = exitCode(err)
		je := &jsonError{Message: err.Error()}
		if de, ok := err.(*deploy.Error); ok {
			je = &jsonError{Phase: de.Phase, Message: de.Err.Error(), Observed: de.Observed, State: de.State, Hint: de.Hint}
		}
		out.Error = je
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
