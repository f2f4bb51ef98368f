package cmd

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

// printPlan is rollout --dry-run: the plan, changing nothing.
func printPlan(run *engineRun, o *rolloutOptions) error {
	p, err := run.eng.Plan(run.ctx, o.Options)
	run.progress.Close()
	if err != nil {
		return err
	}
	w := o.io.out
	if o.json {
		return writeJSON(w, p)
	}
	fmt.Fprintf(w, "plan: roll %s out to %s:%s (dry run: nothing was changed)\n", p.App, p.Image, p.Version)
	if p.WouldPull {
		fmt.Fprintf(w, "  pull %s:%s (not on the Docker host)\n", p.Image, p.Version)
	}
	probe := "with deployctl's drain probe"
	if !p.Probe {
		probe = "WITHOUT the drain probe"
	}
	fmt.Fprintf(w, "  new container: %s-%s-<random>, %s, port %d, network %s\n", p.App, p.Version, probe, p.Port, orDash(p.Network))
	fmt.Fprintf(w, "  Traefik service: %s\n", orDash(strings.Join(p.Services, ", ")))
	if p.Switch == deploy.SwitchAtomic {
		fmt.Fprintf(w, "  switch: atomic, through router %s on a route container, once every new container is in Traefik\n", strings.Join(p.SwitchRouters, ", "))
	} else if len(p.Current) > 0 {
		fmt.Fprintln(w, "  switch: gradual (both versions answer while the old containers leave)")
	}
	if len(p.Current) == 0 {
		fmt.Fprintln(w, "  first deploy: no current container")
	}
	if len(p.RouteRouters) > 0 {
		fmt.Fprintf(w, "  routing: router %s on a route container, to service %s (later rollouts switch atomically from it)\n", strings.Join(p.RouteRouters, ", "), strings.Join(p.Services, ", "))
	}
	printPlanSteps(w, p, o.Keep)
	return nil
}

// printPlanSteps writes what every plan shows after its head: each step's
// actions, the containers pruned under --keep (keep), who holds the deploy
// lock, and the warnings with their codes.
func printPlanSteps(w io.Writer, p *deploy.Plan, keep int) {
	for _, a := range p.Actions {
		fmt.Fprint(w, stepLines(a, p.Current))
	}
	if len(p.Prune) > 0 {
		fmt.Fprintf(w, "  then remove old containers beyond --keep %d: %s\n", keep, strings.Join(p.Prune, ", "))
	}
	if p.Lock != nil {
		fmt.Fprintf(w, "  ! the deploy lock is held by %s\n", p.Lock)
	}
	for _, warning := range p.Warnings {
		fmt.Fprintf(w, "  ! %s (%s)\n", warning.Message, warning.Code)
	}
}

// stepLines renders one step of a plan (its actions): the retained
// containers it restarts and the new ones it starts, then each current
// container it drains and stops (and removes), one per line.
func stepLines(a deploy.PlannedStep, current []deploy.PlannedOld) string {
	var lines, starts []string
	if len(a.Restart) > 0 {
		starts = append(starts, "restart retained "+strings.Join(a.Restart, ", "))
	}
	if len(a.Start) > 0 {
		starts = append(starts, "start "+strings.Join(a.Start, ", "))
	}
	then := ""
	if len(starts) > 0 {
		lines = append(lines, strings.Join(starts, ", "))
		then = "then "
	}
	for _, name := range a.Stop {
		old := deploy.PlannedOld{Name: name}
		for _, c := range current {
			if c.Name == name {
				old = c
			}
		}
		verb := "and stop"
		if slices.Contains(a.Remove, name) {
			verb = "stop and remove"
		}
		lines = append(lines, fmt.Sprintf("%sdrain (%s) %s %s (%s, %s)", then, orDash(string(old.Drain)), verb, old.Name, orDash(old.Version), orDash(old.URL)))
	}
	head := fmt.Sprintf("  step %d: ", a.Step)
	return head + strings.Join(lines, "\n"+strings.Repeat(" ", len(head))) + "\n"
}

// checkOptions are check's flags.
type checkOptions struct {
	deploy.Options
	io      ioStreams
	json    bool
	traefik traefikOptions
	compose composeFlags
}

// newCheckCmd is the check command: RunE checks the flags, then calls
// runF, or runCheck when runF is nil.
func newCheckCmd(f *factory, runF func(*checkOptions) error) *cobra.Command {
	o := &checkOptions{}
	c := &cobra.Command{
		Use:   "check --app APP | -f compose.yaml SERVICE",
		Short: "Preflight: report what would make the next rollout fail or drop requests",
		Long: `Check the app's current deployment for what would make the next rollout fail
or drop requests (Traefik cannot see the current container, an ambiguous
network, labels that put each version in its own service, no way to add the
drain probe, a held lock, a Traefik too old for the Docker engine), each with
its fix and a stable code (in --json too). Exits 1 when it finds anything,
so CI can run it before the rollout. Changes nothing.`,
		Example: `  deployctl check --app web
  deployctl check -f compose.yaml web`,
		Args: rolloutArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.io = streamsOf(c)
			if len(args) == 1 {
				o.compose.service = args[0]
			}
			if err := o.completeCompose(c); err != nil {
				return err
			}
			if o.App == "" {
				return usagef("--app is required (deployctl status lists the apps)")
			}
			if o.Switch != deploy.SwitchAtomic && o.Switch != deploy.SwitchGradual {
				return usagef("--switch %q: must be atomic or gradual", o.Switch)
			}
			if runF != nil {
				return runF(o)
			}
			return runCheck(c.Context(), f, o)
		},
	}
	c.Flags().StringVar(&o.App, "app", "", "the app (required)")
	c.Flags().StringVar(&o.Network, "network", "", "the network Traefik reaches the app on")
	c.Flags().StringVar(&o.Service, "service", "", "the app's Traefik service (default: found)")
	c.Flags().BoolVar(&o.json, "json", false, "print the findings as JSON")
	c.Flags().StringVar((*string)(&o.Switch), "switch", string(deploy.SwitchAtomic), "check for a rollout with this --switch: atomic (the rollout's default) reports why the app cannot switch atomically, if it cannot")
	o.compose.register(c.Flags())
	c.Flags().StringArrayVar(&o.compose.envFiles, "env-file", nil, "with a compose SERVICE: compose's --env-file, the variables of the compose file")
	o.traefik.register(c)
	return c
}

// runCheck prints what would make the next rollout fail or drop requests;
// anything found is exit 1.
func runCheck(ctx context.Context, f *factory, o *checkOptions) error {
	eng, done, err := f.engine(ctx, &o.traefik, nil)
	if err != nil {
		return err
	}
	defer done()
	o.Probes = f.Probes
	findings, err := eng.Check(ctx, o.Options)
	if err != nil {
		return err
	}
	w := o.io.out
	if o.json {
		if findings == nil {
			findings = []deploy.Finding{}
		}
		if err := writeJSON(w, findings); err != nil {
			return err
		}
	} else if len(findings) == 0 {
		fmt.Fprintf(w, "%s: nothing found that would make a rollout fail or drop requests\n", o.App)
	} else {
		for _, finding := range findings {
			fmt.Fprintf(w, "! %s\n  fix: %s\n  (%s)\n", finding.Problem, finding.Fix, finding.Code)
		}
	}
	if len(findings) > 0 {
		return &reportedError{fmt.Errorf("%d finding(s)", len(findings))}
	}
	return nil
}
