package cmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

// rollbackOptions are rollback's flags.
type rollbackOptions struct {
	deploy.Options
	traefik traefikOptions
	io      ioStreams
	compose composeFlags
	drain   string
	timeout time.Duration
	json    bool
	dryRun  bool

	maxSurge, maxUnavailable string
}

// newRollbackCmd is the rollback command: RunE checks the flags, then
// calls runF, or runRollback when runF is nil.
func newRollbackCmd(f *factory, runF func(*rollbackOptions) error) *cobra.Command {
	o := &rollbackOptions{}
	c := &cobra.Command{
		Use:   "rollback --app APP [--to VERSION] | -f compose.yaml SERVICE [--to VERSION]",
		Short: "Go back to the previous (or a given) version with the same zero-downtime procedure",
		Long: `Roll the app back to the version it was deployed from most recently (from the
deploy history on the Docker host), or to --to VERSION.

A retained (stopped) container of that version is restarted when there is one
(fast, same configuration); otherwise one is created from the image of that
version. The current container is drained and stopped only once the target
serves, as in a rollout. An app running N replicas is rolled back to N
containers in the steps of a rollout, within --max-surge and --max-unavailable:
up to N retained containers of that version are restarted (the newest first),
the rest created from its configuration and image; the current ones are
drained, stopped and kept. Right after a failed rollout there is nothing to undo:
deployctl says so and changes nothing. Twice in a row, a rollback undoes the
previous rollback.

A compose service is named by its file and service (deployctl rollback -f
compose.yaml web), as in its rollout: its app is <project>-<service>.`,
		Example: `  deployctl rollback --app web
  deployctl rollback --app web --to 3f9ace5
  deployctl rollback --app web --max-surge 100%
  deployctl rollback --app web --dry-run
  deployctl rollback -f compose.yaml web`,
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
			return runRollback(c.Context(), f, o)
		},
	}
	fl := c.Flags()
	fl.SortFlags = false
	fl.StringVar(&o.App, "app", "", "the app to roll back (required)")
	fl.StringVar(&o.Version, "to", "", "the version to go back to (default: the previous one)")
	fl.StringVar(&o.maxSurge, "max-surge", "", "with several replicas: containers started beyond the number serving now at any moment, a count or a percentage (rounded up) (default 100% when a route container routes the app, which the atomic switch back needs, else "+deploy.DefaultMaxSurge.String()+")")
	fl.StringVar(&o.maxUnavailable, "max-unavailable", deploy.DefaultMaxUnavailable.String(), "with several replicas: servers below the number serving now that may be out of Traefik at any moment, a count or a percentage (rounded down)")
	registerProcedureFlags(fl, &o.Options, &o.drain, &o.timeout, &o.traefik.throttle)
	fl.BoolVar(&o.dryRun, "dry-run", false, "print the plan (the target version and why, and per step the containers restarted or started and those drained and stopped) and change nothing")
	fl.BoolVar(&o.json, "json", false, "print the result as one JSON document on stdout")
	o.compose.register(fl)
	fl.StringArrayVar(&o.compose.envFiles, "env-file", nil, "with a compose SERVICE: compose's --env-file, the variables of the compose file")
	o.traefik.register(c)
	return c
}

// complete checks the flags and turns them into the engine's options.
func (o *rollbackOptions) complete(c *cobra.Command) error {
	if err := o.completeCompose(c); err != nil {
		return err
	}
	if o.App == "" {
		return usagef("--app is required (deployctl status lists the apps)")
	}
	if err := checkProcedureDurations(c.Flags()); err != nil {
		return err
	}
	if c.Flags().Changed("max-surge") { // else the engine's default, which depends on how the app is routed
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
	return nil
}

// runRollback rolls the app back with o, checked by newRollbackCmd.
func runRollback(ctx context.Context, f *factory, o *rollbackOptions) (err error) {
	// --json: a failure before the engine ran (Docker or Traefik
	// unreachable) is a JSON document too.
	doc := newJSONOutcome(o.io.out, o.json, o.dryRun)
	defer func() { doc.finish(err) }()
	run, err := f.startEngine(ctx, o.io, &o.traefik, o.timeout)
	if err != nil {
		return err
	}
	defer run.Close()
	o.Probes = f.Probes
	if o.dryRun {
		return printRollbackPlan(run, o)
	}
	plan, res, err := run.eng.Rollback(run.ctx, o.Options)
	run.progress.Close()
	if err == nil && plan.NoOp {
		if o.json {
			return doc.value(plan)
		}
		fmt.Fprintf(o.io.out, "%s: %s\n", plan.App, plan.Reason)
		return nil
	}
	doc.result(res, err)
	if err != nil {
		return reportFailure(o.io.errOut, "rollback of "+o.App, err)
	}
	if !o.json {
		fmt.Fprintf(o.io.out, "rolled back from %s to %s (%s)\n", orDash(plan.From), plan.To, plan.Reason)
		printResult(o.io.out, res)
	}
	return nil
}

// printRollbackPlan prints what the rollback would do: its target and the
// steps of its run.
func printRollbackPlan(run *engineRun, o *rollbackOptions) error {
	rp, p, err := run.eng.PlanRollbackSteps(run.ctx, o.Options)
	run.progress.Close()
	if err != nil {
		return err
	}
	w := o.io.out
	if o.json {
		return writeJSON(w, struct {
			Rollback *deploy.RollbackPlan `json:"rollback"`
			Plan     *deploy.Plan         `json:"plan,omitempty"`
		}{rp, p})
	}
	if rp.NoOp {
		fmt.Fprintf(w, "%s: %s (dry run: nothing to do)\n", rp.App, rp.Reason)
		return nil
	}
	fmt.Fprintf(w, "plan: roll %s back from %s to %s (%s) (dry run: nothing was changed)\n", rp.App, orDash(rp.From), rp.To, rp.Reason)
	fmt.Fprintf(w, "  Traefik service: %s\n", orDash(strings.Join(p.Services, ", ")))
	printPlanSteps(w, p, o.Keep)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
