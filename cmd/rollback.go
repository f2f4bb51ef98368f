package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

type rollbackOptions struct {
	deploy.Options
	traefik traefikOptions
	drain   string
	timeout time.Duration
	json    bool
}

func newRollbackCmd() *cobra.Command {
	o := &rollbackOptions{}
	c := &cobra.Command{
		Use:   "rollback --app APP [--to VERSION]",
		Short: "Go back to the previous (or a given) version with the same zero-downtime procedure",
		Long: `Roll the app back to the version it was deployed from most recently (from the
deploy history on the Docker host), or to --to VERSION.

A retained (stopped) container of that version is restarted when there is one
(fast, same configuration); otherwise one is created from the image of that
version. The current container is drained and stopped only once the target
serves, as in a rollout. Right after a failed rollout there is nothing to undo:
deployctl says so and changes nothing. Twice in a row, a rollback undoes the
previous rollback.`,
		Example: `  deployctl rollback --app web
  deployctl rollback --app web --to 3f9ace5`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runRollback(c.Context(), c, o) },
	}
	f := c.Flags()
	f.SortFlags = false
	f.StringVar(&o.App, "app", "", "the app to roll back (required)")
	f.StringVar(&o.Version, "to", "", "the version to go back to (default: the previous one)")
	registerProcedureFlags(f, &o.Options, &o.drain, &o.timeout)
	f.BoolVar(&o.json, "json", false, "print the result as one JSON document on stdout")
	o.traefik.register(c)
	return c
}

func runRollback(ctx context.Context, c *cobra.Command, o *rollbackOptions) error {
	if o.App == "" {
		return usagef("--app is required (deployctl status lists the apps)")
	}
	if err := checkProcedureDurations(c.Flags()); err != nil {
		return err
	}
	o.Drain = deploy.DrainMode(o.drain)
	run, err := startEngine(ctx, c, &o.traefik, o.timeout)
	if err != nil {
		return err
	}
	defer run.Close()
	o.Probes = run.probes
	plan, res, err := run.eng.Rollback(run.ctx, o.Options)
	run.progress.Close()
	if err == nil && plan.NoOp {
		fmt.Fprintf(c.OutOrStdout(), "%s: %s\n", plan.App, plan.Reason)
		return nil
	}
	if o.json {
		writeJSONResult(c.OutOrStdout(), res, err)
	}
	if err != nil {
		var de *deploy.Error
		if errors.As(err, &de) && de.Kind == deploy.KindUsage {
			return err
		}
		fmt.Fprintf(c.ErrOrStderr(), "deployctl: rollback of %s failed: %v\n", o.App, err)
		return &reportedError{err}
	}
	if !o.json {
		fmt.Fprintf(c.OutOrStdout(), "rolled back from %s to %s (%s)\n", orDash(plan.From), plan.To, plan.Reason)
		printResult(c.OutOrStdout(), res)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
