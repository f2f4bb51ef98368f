package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

// statusOptions are status's flags.
type statusOptions struct {
	io      ioStreams
	app     string
	json    bool
	traefik traefikOptions
}

// newStatusCmd is the status command: it calls runF with the flags, or
// runStatus when runF is nil.
func newStatusCmd(f *factory, runF func(*statusOptions) error) *cobra.Command {
	o := &statusOptions{}
	c := &cobra.Command{
		Use:   "status [--app APP]",
		Short: "Show each app's containers, versions, Docker health and what Traefik routes to",
		Example: `  deployctl status
  deployctl status --app web --json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.io = streamsOf(c)
			if runF != nil {
				return runF(o)
			}
			return runStatus(c.Context(), f, o)
		},
	}
	c.Flags().StringVar(&o.app, "app", "", "only this app")
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	o.traefik.register(c)
	return c
}

// runStatus prints what Docker and Traefik say of the apps; it shows no
// progress.
func runStatus(ctx context.Context, f *factory, o *statusOptions) error {
	eng, done, err := f.engine(ctx, &o.traefik, deploy.ReporterFunc(func(deploy.Event) {}))
	if err != nil {
		return err
	}
	defer done()
	apps, err := eng.Status(ctx, o.app)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.io.out, apps)
	}
	printStatus(o.io.out, apps, f.Now())
	return nil
}

func printStatus(w io.Writer, apps []deploy.AppStatus, now time.Time) {
	if len(apps) == 0 {
		fmt.Fprintln(w, "no apps deployed by deployctl on this Docker host")
		return
	}
	for i, a := range apps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "app %s  service %s  %d running, %d UP in Traefik\n", a.App, orDash(strings.Join(a.Services, ", ")), a.Running, a.Up)
		if len(a.Swarm) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  SWARM SERVICE\tVERSION\tREPLICAS\tRUNNING\tTRAEFIK\tAGE")
			for _, s := range a.Swarm {
				routed := fmt.Sprintf("%d UP", s.Up)
				if !s.Routed {
					routed = "out (kept for rollback)"
				}
				replicas := fmt.Sprint(s.Replicas)
				if s.Replicas < 0 {
					replicas = "global"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", s.Name, orDash(s.Version), replicas, s.Running, routed, age(now.Sub(s.Created)))
			}
			tw.Flush()
			for _, p := range a.Problems {
				fmt.Fprintf(w, "  ! %s\n", p)
			}
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  CONTAINER\tVERSION\tSTATE\tHEALTH\tAGE\tTRAEFIK\tURL")
		for _, c := range a.Containers {
			traefik := orDash(c.Traefik)
			if c.Drained {
				traefik += " (drained)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Version, c.State, orDash(c.Health), age(now.Sub(c.Created)), traefik, orDash(c.URL))
		}
		tw.Flush()
		for _, r := range a.Routes {
			if r.State == "running" {
				fmt.Fprintf(w, "  routed by route container %s: %s's routers (%s level)\n", r.Name, r.Version, r.Level)
			}
		}
		for _, p := range a.Problems {
			fmt.Fprintf(w, "  ! %s\n", p)
		}
	}
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// historyOptions are history's flags.
type historyOptions struct {
	io      ioStreams
	app     string
	json    bool
	traefik traefikOptions
}

// newHistoryCmd is the history command: it calls runF with the flags, or
// runHistory when runF is nil.
func newHistoryCmd(f *factory, runF func(*historyOptions) error) *cobra.Command {
	o := &historyOptions{}
	c := &cobra.Command{
		Use:   "history [--app APP]",
		Short: "List rollouts and rollbacks, kept on the Docker host",
		Long: `List every rollout, rollback and scale, newest first: when, from -> to, the
replica counts, result, duration and who (user, host, CI job). The history is kept on the Docker host
itself (as labelled Docker volumes, the newest 100 per app), so it survives
throw-away CI runners and is the same from every machine that deploys there.`,
		Example: `  deployctl history --app web
  deployctl history --json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.io = streamsOf(c)
			if runF != nil {
				return runF(o)
			}
			return runHistory(c.Context(), f, o)
		},
	}
	c.Flags().StringVar(&o.app, "app", "", "only this app")
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	o.traefik.register(c)
	return c
}

// runHistory prints the deploy history kept on the Docker host.
func runHistory(ctx context.Context, f *factory, o *historyOptions) error {
	eng, done, err := f.engine(ctx, &o.traefik, nil)
	if err != nil {
		return err
	}
	defer done()
	recs, err := eng.History(ctx, o.app)
	if err != nil {
		return err
	}
	if o.json {
		if recs == nil {
			recs = []deploy.Record{}
		}
		return writeJSON(o.io.out, recs)
	}
	printHistory(o.io.out, recs)
	return nil
}

func printHistory(w io.Writer, recs []deploy.Record) {
	if len(recs) == 0 {
		fmt.Fprintln(w, "no history")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tAPP\tOPERATION\tFROM\tTO\tREPLICAS\tRESULT\tTOOK\tBY")
	for _, r := range recs {
		result := r.Result
		if r.Result != "ok" && r.Phase != "" {
			result += " (" + string(r.Phase) + ")"
		}
		by := r.By.User + "@" + r.By.Host
		if r.By.CI != "" {
			by += " " + r.By.CI
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Started.Local().Format("2006-01-02 15:04:05"), r.App, r.Operation, orDash(r.From), r.To, replicaCounts(r), result, r.Total, by)
	}
	tw.Flush()
	for _, r := range recs {
		if r.Error != "" {
			fmt.Fprintf(w, "%s %s %s -> %s: %s\n", r.Started.Local().Format("2006-01-02 15:04:05"), r.App, orDash(r.From), r.To, r.Error)
		}
	}
}

// replicaCounts is a record's replica counts: "3", or "3 -> 1" when the
// run changed them, "-" when it did not record them.
func replicaCounts(r deploy.Record) string {
	switch {
	case r.Replicas == 0:
		return "-"
	case r.FromReplicas == r.Replicas:
		return fmt.Sprint(r.Replicas)
	}
	return fmt.Sprintf("%d -> %d", r.FromReplicas, r.Replicas)
}

// unlockOptions are unlock's flags.
type unlockOptions struct {
	io  ioStreams
	app string
}

// newUnlockCmd is the unlock command: RunE checks the flags, then calls
// runF, or runUnlock when runF is nil.
func newUnlockCmd(f *factory, runF func(*unlockOptions) error) *cobra.Command {
	o := &unlockOptions{}
	c := &cobra.Command{
		Use:   "unlock --app APP",
		Short: "Break an app's deploy lock left by a killed run",
		Long: `Remove the app's deploy lock. Only needed when a deployctl run was killed
(SIGKILL, a lost CI runner) and you cannot wait for the lock to expire on its
own (it expires when the run's --timeout has passed; on the same host a lock
of a dead process is broken at once). Make sure no rollout of the app is
running: two at once would interleave.`,
		Example: `  deployctl unlock --app web`,
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.io = streamsOf(c)
			if o.app == "" {
				return usagef("--app is required")
			}
			if runF != nil {
				return runF(o)
			}
			return runUnlock(c.Context(), f, o)
		},
	}
	c.Flags().StringVar(&o.app, "app", "", "the app (required)")
	return c
}

// runUnlock removes the app's deploy lock, whoever holds it. It needs the
// journal only: Traefik is not contacted.
func runUnlock(ctx context.Context, f *factory, o *unlockOptions) error {
	journal, err := f.docker(ctx)
	if err != nil {
		return err
	}
	defer journal.Close()
	h, err := journal.LockHolder(ctx, o.app)
	if err != nil {
		return err
	}
	if h == nil {
		fmt.Fprintf(o.io.out, "%s: not locked\n", o.app)
		return nil
	}
	if err := journal.Unlock(ctx, o.app, h); err != nil {
		return err
	}
	fmt.Fprintf(o.io.out, "%s: removed the deploy lock held by %s\n", o.app, h)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
