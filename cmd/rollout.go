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

	"github.com/deployctl/deployctl/compose"
	"github.com/deployctl/deployctl/deploy"
)

// rolloutOptions are rollout's flags; RunE completes them into the
// engine's options (deploy.Options) before the run function gets them.
type rolloutOptions struct {
	deploy.Options
	traefik traefikOptions
	io      ioStreams
	compose composeFlags

	selectors []string
	labels    []string
	envs      []string
	envFiles  []string
	health    healthFlags
	restart   string
	drain     string
	// switchMode is --switch.
	switchMode string
	pull       string
	timeout    time.Duration
	json       bool
	dryRun     bool
	// preDeploy and postDeploy are --pre-deploy and --post-deploy.
	preDeploy, postDeploy string

	maxSurge, maxUnavailable string
}

type healthFlags struct {
	cmd                            string
	interval, timeout, startPeriod time.Duration
	retries                        int
	none                           bool
	anySet                         bool
}

// newRolloutCmd is the rollout command. Its RunE turns the flags into
// options and checks them (usage errors, before Docker or Traefik is
// contacted), then calls runF with them, or runRollout when runF is nil.
func newRolloutCmd(f *factory, runF func(*rolloutOptions) error) *cobra.Command {
	o := &rolloutOptions{}
	c := &cobra.Command{
		Use:   "rollout --image IMAGE --version TAG | -f compose.yaml SERVICE --version TAG",
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
DEPLOYCTL_TRAEFIK_URL; a flag on the command line wins over the environment.
A repeatable flag's variable holds one value per line, never split on commas:
DEPLOYCTL_ENV=$'DATABASE_URL=postgres://db/shop?sslmode=require&x=a,b\nTOKEN=...'.
Pass secrets that way, or in --env-file, not as flags: flags show in ps and
shell history.` + composeUsage,
		Example: `  # in CI, after pushing registry.example.com/shop/web:$CI_COMMIT_SHORT_SHA
  deployctl rollout --image registry.example.com/shop/web --version "$CI_COMMIT_SHORT_SHA"

  # first deploy: configuration from flags
  deployctl rollout --image web --version v1 --network proxy \
    --label traefik.enable=true \
    --label 'traefik.http.routers.web.rule=Host(` + "`shop.example.com`" + `)' \
    --label traefik.http.services.web.loadbalancer.server.port=8080 \
    --env-file web.env --health-cmd 'wget -qO- localhost:8080/up'

  # switch from a hand-written script whose containers are labelled app=web
  deployctl rollout --image web --version 3f9ace5 --select app=web

  # a compose service (image: registry.example.com/shop/web:${WEB_TAG})
  deployctl rollout -f compose.yaml web --version "$CI_COMMIT_SHORT_SHA"`,
		Args: rolloutArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.io = streamsOf(c)
			if len(args) == 1 {
				o.compose.service = args[0]
			}
			if err := o.complete(c); err != nil {
				// --json: bad input is a JSON document too.
				newJSONOutcome(o.io.out, o.json, o.dryRun).finish(err)
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return runRollout(c.Context(), f, o)
		},
	}
	fl := c.Flags()
	fl.SortFlags = false
	fl.StringVar(&o.Image, "image", "", "image repository to deploy, without tag (required)")
	fl.StringVar(&o.Version, "version", "", "image tag to deploy, e.g. a commit SHA (required)")
	fl.StringVar(&o.App, "app", "", "app name (default: the image name's last path element)")
	fl.StringArrayVar(&o.selectors, "select", nil, "also treat running containers with this `label=value` as the app's current version (adopt containers deployctl did not make)")
	fl.StringVar(&o.Service, "service", "", "Traefik service, e.g. web@docker (default: the one that lists the current container)")
	fl.StringVar(&o.Network, "network", "", "network Traefik reaches the app on; on a first deploy the container is attached to it")
	fl.StringArrayVar(&o.labels, "label", nil, "set a `key=value` label on the new container (DEPLOYCTL_LABEL: one per line)")
	fl.StringArrayVarP(&o.envs, "env", "e", nil, "set an environment variable `KEY=VALUE` on the new container; for secrets prefer --env-file or DEPLOYCTL_ENV (one per line, commas kept): flags show in ps")
	fl.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a `file` (KEY=VALUE lines, # comments); with a compose SERVICE, compose's --env-file: the variables of the compose file")
	fl.StringArrayVarP(&o.Volumes, "volume", "v", nil, "bind mount or volume `[source:]destination[:options]`, as in docker run")
	fl.StringVar(&o.restart, "restart", "", "restart policy: no, always, unless-stopped, on-failure[:N] (default: the current container's, unless-stopped on a first deploy)")
	fl.StringVar(&o.health.cmd, "health-cmd", "", "healthcheck command, run by the container's shell")
	fl.DurationVar(&o.health.interval, "health-interval", 0, "time between health checks (default 30s)")
	fl.DurationVar(&o.health.timeout, "health-timeout", 0, "maximum time one health check may take (default 30s)")
	fl.DurationVar(&o.health.startPeriod, "health-start-period", 0, "time the app may take to start before failed checks count")
	fl.IntVar(&o.health.retries, "health-retries", 0, "consecutive failures before the container counts as unhealthy (default 3)")
	fl.BoolVar(&o.health.none, "no-healthcheck", false, "ignore the image's healthcheck (deployctl then checks that the port accepts connections)")

	fl.IntVar(&o.Replicas, "replicas", 0, "containers of the new version (default: as many as serve now, 1 on a first deploy)")
	fl.StringVar(&o.maxSurge, "max-surge", "", "containers started beyond --replicas at any moment: a count or a percentage of --replicas (rounded up) (default "+deploy.DefaultMaxSurge.String()+", 100% with --switch atomic)")
	fl.StringVar(&o.maxUnavailable, "max-unavailable", deploy.DefaultMaxUnavailable.String(), "servers below --replicas that may be out of Traefik at any moment: a count or a percentage of --replicas (rounded down)")
	registerProcedureFlags(fl, &o.Options, &o.drain, &o.timeout, &o.traefik.throttle)
	fl.StringVar(&o.switchMode, "switch", string(deploy.SwitchAtomic), "how traffic moves to the new version: atomic (every new request to the new version at one instant, through a route container; gradual with a warning where the labels or Traefik do not allow it), gradual (both versions answer for a moment)")
	fl.StringVar(&o.preDeploy, "pre-deploy", "", "release `command` (e.g. 'bin/rails db:migrate'), run once in a one-off container of the new image with the app's configuration before any new container starts; the rollout goes on only if it exits 0. Split into words as compose splits command: (quotes honoured), never run by a shell on this machine")
	fl.StringVar(&o.postDeploy, "post-deploy", "", "`command` run the same way once the rollout succeeded; its failure fails the run (exit 1), the new version serving")
	fl.BoolVar(&o.Force, "force", false, "redeploy the version that is already serving")
	fl.StringVar(&o.pull, "pull", "missing", "pull the image: missing, always, never")
	fl.BoolVar(&o.json, "json", false, "print the result as one JSON document on stdout")
	fl.BoolVar(&o.dryRun, "dry-run", false, "print the plan (current containers, service, drain method, what would be pruned) and change nothing")
	o.compose.register(fl)
	o.traefik.register(c)
	return c
}

// runRollout runs the rollout (or, with --dry-run, prints its plan) with
// o, completed and checked by newRolloutCmd.
func runRollout(ctx context.Context, f *factory, o *rolloutOptions) (err error) {
	// --json: a failure before the engine ran (Docker or Traefik
	// unreachable) is a JSON document too.
	doc := newJSONOutcome(o.io.out, o.json, o.dryRun)
	defer func() { doc.finish(err) }()
	// The progress renderer is closed (spinner stopped) before anything
	// else is printed, and on every return.
	run, err := f.startEngine(ctx, o.io, &o.traefik, o.timeout)
	if err != nil {
		return err
	}
	defer run.Close()
	o.Probes = f.Probes
	for _, w := range o.compose.warnings {
		run.progress.Event(deploy.Event{Time: f.Now(), Phase: deploy.PhasePlan, Status: deploy.StatusWarn, Code: w.Code, Message: w.Message})
	}
	if o.dryRun {
		return printPlan(run, o)
	}
	stderr := o.io.errOut
	res, err := run.eng.Rollout(run.ctx, o.Options)
	run.progress.Close()
	doc.result(res, err)
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
		printResult(o.io.out, res)
	}
	return nil
}

// complete turns the string flags into the engine's options and checks
// them: every error is a usage error, found before Docker or Traefik is
// contacted.
func (o *rolloutOptions) complete(c *cobra.Command) error {
	compose := o.compose.service != ""
	if !compose && o.compose.given(c.Flags()) {
		return usagef("-f, -p, --project-directory and --profile choose a compose project: name the service to roll out, e.g. deployctl rollout -f compose.yaml web --version 3f9ace5")
	}
	if compose {
		// --env-file is compose's: read by the loader, not as the
		// container's variables.
		files := o.envFiles
		o.envFiles = nil
		err := o.fromFlags(c)
		o.envFiles = files
		if err != nil {
			return err
		}
		if err := o.completeCompose(c); err != nil {
			return err
		}
	} else if err := o.fromFlags(c); err != nil {
		return err
	}
	if err := checkProcedureDurations(c.Flags()); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		var de *deploy.Error
		if errors.As(err, &de) {
			return usageErr{de.Err}
		}
		return err
	}
	return nil
}

// fromFlags turns the string flags into the engine's options.
func (o *rolloutOptions) fromFlags(c *cobra.Command) error {
	for _, kv := range []struct {
		flag  string
		items []string
	}{{"select", o.selectors}, {"label", o.labels}, {"env", o.envs}} {
		if err := checkKeyValues(c, kv.flag, kv.items); err != nil {
			return err
		}
	}
	o.Select, o.Labels = parseKeyValues(o.selectors), parseKeyValues(o.labels)
	var env []string
	for _, path := range o.envFiles {
		fromFile, err := readEnvFile(path)
		if err != nil {
			return err
		}
		env = append(env, fromFile...)
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
		for name, d := range map[string]time.Duration{"--health-interval": h.interval, "--health-timeout": h.timeout, "--health-start-period": h.startPeriod} {
			if d < 0 {
				return usagef("%s must not be negative (got %s)", name, d)
			}
		}
		if h.retries < 0 {
			return usagef("--health-retries must not be negative (got %d)", h.retries)
		}
		o.Healthcheck = &deploy.Healthcheck{Test: []string{"CMD-SHELL", h.cmd}, Interval: h.interval, Timeout: h.timeout, StartPeriod: h.startPeriod, Retries: h.retries}
	}
	if f.Changed("replicas") && o.Replicas < 1 {
		return usagef("--replicas must be at least 1 (got %d)", o.Replicas)
	}
	if f.Changed("max-surge") { // else the engine's default, which depends on --switch
		surge, err := deploy.ParseAmount("--max-surge", o.maxSurge)
		if err != nil {
			return usageErrOf(err)
		}
		o.MaxSurge = &surge
	}
	unavailable, err := deploy.ParseAmount("--max-unavailable", o.maxUnavailable)
	if err != nil {
		return usageErrOf(err)
	}
	o.MaxUnavailable = &unavailable
	o.Drain = deploy.DrainMode(o.drain)
	o.Switch = deploy.SwitchMode(o.switchMode)
	o.Pull = deploy.PullPolicy(o.pull)
	o.Restart = o.restart
	for _, h := range []struct {
		flag, line string
		argv       *[]string
	}{{"--pre-deploy", o.preDeploy, &o.PreDeploy}, {"--post-deploy", o.postDeploy, &o.PostDeploy}} {
		if !f.Changed(strings.TrimPrefix(h.flag, "--")) {
			continue
		}
		argv, err := compose.SplitCommand(h.line)
		if err != nil {
			return usagef("%s: %v", h.flag, err)
		}
		*h.argv = argv
	}
	return nil
}

// usageErrOf is the engine's usage error as the command's.
func usageErrOf(err error) error {
	var de *deploy.Error
	if errors.As(err, &de) {
		return usageErr{de.Err}
	}
	return err
}

// parseKeyValues turns key=value items, already checked by
// checkKeyValues, into a map.
func parseKeyValues(items []string) map[string]string {
	if len(items) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, it := range items {
		k, v, _ := strings.Cut(it, "=")
		m[k] = v
	}
	return m
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

func printResult(w io.Writer, res *deploy.Result) {
	var parts []string
	for _, p := range res.Phases {
		parts = append(parts, fmt.Sprintf("%s %s", p.Phase, p.Duration))
	}
	if sw := res.Swarm; sw != nil {
		fmt.Fprintf(w, "%s %s is serving: Swarm service %s, %d tasks, in %s\n", res.App, res.Version, sw.Service, sw.Tasks, strings.Join(res.Service, ", "))
		fmt.Fprintf(w, "  phases: %s; total %s\n", strings.Join(parts, ", "), res.Total)
		fmt.Fprintf(w, "  service %s is out of Traefik and scaled to 0, kept for rollback\n", sw.Old)
		return
	}
	if len(res.NewContainers) > 1 {
		var news []string
		for _, c := range res.NewContainers {
			news = append(news, fmt.Sprintf("%s (%s)", c.Name, c.URL))
		}
		fmt.Fprintf(w, "%s %s is serving: %d replicas %s in %s\n", res.App, res.Version, len(news), strings.Join(news, ", "), strings.Join(res.Service, ", "))
	} else {
		fmt.Fprintf(w, "%s %s is serving: %s (%s) in %s\n", res.App, res.Version, res.New.Name, res.New.URL, strings.Join(res.Service, ", "))
	}
	fmt.Fprintf(w, "  phases: %s; total %s\n", strings.Join(parts, ", "), res.Total)
	if res.SwitchedAt != nil {
		fmt.Fprintf(w, "  switched atomically at %s: no new request reached the old version after that\n", res.SwitchedAt.Format("15:04:05.000"))
	}
	printSteps(w, res.Steps)
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

// printSteps prints what each step of a run of several steps did, a line
// a step.
func printSteps(w io.Writer, steps []deploy.StepReport) {
	for _, st := range steps {
		fmt.Fprintf(w, "  step %d/%d (%s): %s\n", st.Step, len(steps), st.Elapsed, stepDid(st))
	}
}

// stepDid is what one step did, its containers by name.
func stepDid(st deploy.StepReport) string {
	var parts []string
	for _, p := range []struct {
		verb  string
		names []string
	}{
		{"started", st.Started}, {"restarted", st.Restarted}, {"drained", st.Drained},
		{"stopped", st.Stopped}, {"removed", st.Removed}, {"found removed by someone else", st.Gone},
	} {
		if len(p.names) > 0 {
			parts = append(parts, p.verb+" "+strings.Join(p.names, ", "))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
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
