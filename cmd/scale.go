package cmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/traefikapi"
)

// scaleOptions are scale's flags.
type scaleOptions struct {
	deploy.Options
	traefik traefikOptions
	io      ioStreams
	drain   string
	timeout time.Duration
	json    bool
	dryRun  bool

	maxSurge, maxUnavailable string
}

// newScaleCmd is the scale command: RunE checks the flags (usage errors,
// before Docker or Traefik is contacted), then calls runF, or runScale
// when runF is nil.
func newScaleCmd(f *factory, runF func(*scaleOptions) error) *cobra.Command {
	o := &scaleOptions{}
	c := &cobra.Command{
		Use:   "scale --app APP --replicas N",
		Short: "Run N containers of the serving version, with zero failed requests",
		Long: `Scale the app to --replicas containers of the version it serves.

Up, new containers are created with the configuration and image of the
newest current one, and deployctl waits until Docker reports them healthy
and Traefik lists them; the current ones are not touched. Down, the oldest
containers are taken out of Traefik first, deployctl confirms Traefik dropped
them, then stops and removes them (they are of the serving version: nothing
to keep for rollback). At every moment at most N + --max-surge containers of
the app run and at least N - --max-unavailable of its servers are routed to.
A failure undoes the scale: the app runs the containers it had.`,
		Example: `  deployctl scale --app web --replicas 4
  deployctl scale --app web --replicas 1 --dry-run`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.io = streamsOf(c)
			if err := o.complete(c); err != nil {
				newJSONOutcome(o.io.out, o.json, o.dryRun).finish(err)
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return runScale(c.Context(), f, o)
		},
	}
	fl := c.Flags()
	fl.SortFlags = false
	fl.StringVar(&o.App, "app", "", "the app to scale (required)")
	fl.IntVar(&o.Replicas, "replicas", 0, "the number of containers the app runs afterwards (required, at least 1)")
	fl.StringVar(&o.maxSurge, "max-surge", deploy.DefaultMaxSurge.String(), "containers started beyond --replicas at any moment: a count or a percentage of --replicas (rounded up)")
	fl.StringVar(&o.maxUnavailable, "max-unavailable", deploy.DefaultMaxUnavailable.String(), "servers below --replicas that may be out of Traefik at any moment: a count or a percentage of --replicas (rounded down)")
	fl.StringVar(&o.drain, "drain", "auto", "how removed containers leave Traefik: auto, health (require the drain probe), signal (stop first, then wait for Traefik)")
	fl.DurationVar(&o.DrainGrace, "drain-grace", deploy.DefaultDrainGrace, "wait between Traefik dropping a server and its stop signal, for requests Traefik accepted just before (0: signal at once)")
	fl.DurationVar(&o.DrainInterval, "drain-interval", deploy.DefaultDrainInterval, "how often Docker runs the drain-aware probe of new containers")
	fl.DurationVar(&o.StopTimeout, "stop-timeout", 0, "time a removed container has to exit after its stop signal before it is killed (default: its own, else 10s)")
	fl.DurationVar(&o.LockWait, "lock-wait", 0, "wait up to this long for another run's deploy lock on the app (0: fail at once)")
	fl.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fl.DurationVar(&o.HealthTimeout, "healthy-timeout", 0, "bound on the wait for Docker health (default: from the healthcheck)")
	fl.DurationVar(&o.RegisterTimeout, "register-timeout", deploy.DefaultRegisterTimeout, "bound on the wait for Traefik to list a new container")
	fl.DurationVar(&o.DeregisterTimeout, "deregister-timeout", deploy.DefaultDeregisterTimeout, "bound on the wait for Traefik to drop a container")
	fl.DurationVar(&o.PollInterval, "poll-interval", deploy.DefaultPollInterval, "how often Docker and Traefik are polled while waiting (must be positive)")
	fl.DurationVar(&o.traefik.throttle, "traefik-throttle", traefikapi.DefaultThrottle, "Traefik's providersThrottleDuration (see rollout --help)")
	fl.BoolVar(&o.json, "json", false, "print the result as one JSON document on stdout")
	fl.BoolVar(&o.dryRun, "dry-run", false, "print the plan (its steps) and change nothing")
	o.traefik.register(c)
	return c
}

// complete checks the flags and turns them into the engine's options.
func (o *scaleOptions) complete(c *cobra.Command) error {
	if o.App == "" {
		return usagef("--app is required (deployctl status lists the apps)")
	}
	if !c.Flags().Changed("replicas") {
		return usagef("--replicas is required: the number of containers the app runs afterwards, e.g. --replicas 3")
	}
	if o.Replicas < 1 {
		return usagef("--replicas must be at least 1 (got %d); to stop an app, docker stop its containers", o.Replicas)
	}
	if err := checkProcedureDurations(c.Flags()); err != nil {
		return err
	}
	surge, err := deploy.ParseAmount("--max-surge", o.maxSurge)
	if err != nil {
		return usageErrOf(err)
	}
	unavailable, err := deploy.ParseAmount("--max-unavailable", o.maxUnavailable)
	if err != nil {
		return usageErrOf(err)
	}
	if _, err := deploy.NewBudget(o.Replicas, surge, unavailable); err != nil {
		return usageErrOf(err)
	}
	o.MaxSurge, o.MaxUnavailable = &surge, &unavailable
	switch o.drain {
	case "auto", "health", "signal":
	default:
		return usagef("--drain %q: must be auto, health or signal", o.drain)
	}
	o.Drain = deploy.DrainMode(o.drain)
	return nil
}

// runScale scales the app with o, checked by newScaleCmd.
func runScale(ctx context.Context, f *factory, o *scaleOptions) (err error) {
	doc := newJSONOutcome(o.io.out, o.json, o.dryRun)
	defer func() { doc.finish(err) }()
	run, err := f.startEngine(ctx, o.io, &o.traefik, o.timeout)
	if err != nil {
		return err
	}
	defer run.Close()
	o.Probes = f.Probes
	if o.dryRun {
		return printScalePlan(run, o)
	}
	plan, res, err := run.eng.Scale(run.ctx, o.Options)
	run.progress.Close()
	if err == nil && plan.NoOp {
		if o.json {
			return doc.value(plan)
		}
		fmt.Fprintf(o.io.out, "%s already runs %d container(s) of %s: nothing to do\n", plan.App, plan.To, plan.Version)
		return nil
	}
	doc.result(res, err)
	if err != nil {
		return reportFailure(o.io.errOut, "scale of "+o.App, err)
	}
	if !o.json {
		fmt.Fprintf(o.io.out, "scaled %s %s from %d to %d container(s)\n", plan.App, plan.Version, plan.From, plan.To)
		var names []string
		for _, c := range res.NewContainers {
			names = append(names, fmt.Sprintf("%s (%s)", c.Name, orDash(c.URL)))
		}
		fmt.Fprintf(o.io.out, "  serving: %s\n", strings.Join(names, ", "))
		printSteps(o.io.out, res.Steps)
		for _, old := range res.Old {
			fmt.Fprintf(o.io.out, "  stopped and removed %s (drained by %s)\n", old.Name, old.Drain)
		}
		fmt.Fprintf(o.io.out, "  total %s\n", res.Total)
	}
	return nil
}

// printScalePlan prints what the scale would do: its steps.
func printScalePlan(run *engineRun, o *scaleOptions) error {
	sp, p, err := run.eng.PlanScale(run.ctx, o.Options)
	run.progress.Close()
	if err != nil {
		return err
	}
	w := o.io.out
	if o.json {
		return writeJSON(w, struct {
			Scale *deploy.ScalePlan `json:"scale"`
			Plan  *deploy.Plan      `json:"plan,omitempty"`
		}{sp, p})
	}
	if sp.NoOp {
		fmt.Fprintf(w, "%s already runs %d container(s) of %s: nothing to do (dry run)\n", sp.App, sp.To, sp.Version)
		return nil
	}
	fmt.Fprintf(w, "plan: scale %s %s from %d to %d container(s) (dry run: nothing was changed)\n", sp.App, sp.Version, sp.From, sp.To)
	fmt.Fprintf(w, "  Traefik service: %s\n", orDash(strings.Join(p.Services, ", ")))
	printPlanSteps(w, p, 0) // a scale prunes nothing
	return nil
}
