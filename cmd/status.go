package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

func newStatusCmd() *cobra.Command {
	var (
		app      string
		asJSON   bool
		tr       traefikOptions
		nopeProg = deploy.ReporterFunc(func(deploy.Event) {})
	)
	c := &cobra.Command{
		Use:   "status [--app APP]",
		Short: "Show each app's containers, versions, Docker health and what Traefik routes to",
		Example: `  deployctl status
  deployctl status --app web --json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			eng, rt, err := connect(c.Context(), &tr, nopeProg)
			if err != nil {
				return err
			}
			defer rt.Close()
			apps, err := eng.Status(c.Context(), app)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c.OutOrStdout(), apps)
			}
			printStatus(c.OutOrStdout(), apps, time.Now())
			return nil
		},
	}
	c.Flags().StringVar(&app, "app", "", "only this app")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	tr.register(c)
	return c
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
		fmt.Fprintf(w, "app %s  service %s\n", a.App, orDash(strings.Join(a.Services, ", ")))
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

func newHistoryCmd() *cobra.Command {
	var (
		app    string
		asJSON bool
		tr     traefikOptions
	)
	c := &cobra.Command{
		Use:   "history [--app APP]",
		Short: "List rollouts and rollbacks, kept on the Docker host",
		Long: `List every rollout and rollback, newest first: when, from -> to, result,
duration and who (user, host, CI job). The history is kept on the Docker host
itself (as labelled Docker volumes, the newest 100 per app), so it survives
throw-away CI runners and is the same from every machine that deploys there.`,
		Example: `  deployctl history --app web
  deployctl history --json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			eng, rt, err := connect(c.Context(), &tr, nil)
			if err != nil {
				return err
			}
			defer rt.Close()
			recs, err := eng.History(c.Context(), app)
			if err != nil {
				return err
			}
			if asJSON {
				if recs == nil {
					recs = []deploy.Record{}
				}
				return writeJSON(c.OutOrStdout(), recs)
			}
			printHistory(c.OutOrStdout(), recs)
			return nil
		},
	}
	c.Flags().StringVar(&app, "app", "", "only this app")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	tr.register(c)
	return c
}

func printHistory(w io.Writer, recs []deploy.Record) {
	if len(recs) == 0 {
		fmt.Fprintln(w, "no history")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tAPP\tOPERATION\tFROM\tTO\tRESULT\tTOOK\tBY")
	for _, r := range recs {
		result := r.Result
		if r.Result != "ok" && r.Phase != "" {
			result += " (" + string(r.Phase) + ")"
		}
		by := r.By.User + "@" + r.By.Host
		if r.By.CI != "" {
			by += " " + r.By.CI
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Started.Local().Format("2006-01-02 15:04:05"), r.App, r.Operation, orDash(r.From), r.To, result, r.Total, by)
	}
	tw.Flush()
	for _, r := range recs {
		if r.Error != "" {
			fmt.Fprintf(w, "%s %s %s -> %s: %s\n", r.Started.Local().Format("2006-01-02 15:04:05"), r.App, orDash(r.From), r.To, r.Error)
		}
	}
}

func newUnlockCmd() *cobra.Command {
	var app string
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
			if app == "" {
				return usagef("--app is required")
			}
			eng, rt, err := connect(c.Context(), &traefikOptions{url: DefaultTraefikURL}, nil)
			if err != nil {
				return err
			}
			defer rt.Close()
			h, err := eng.Journal.LockHolder(c.Context(), app)
			if err != nil {
				return err
			}
			if h == nil {
				fmt.Fprintf(c.OutOrStdout(), "%s: not locked\n", app)
				return nil
			}
			if err := eng.Journal.Unlock(c.Context(), app, h); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: removed the deploy lock held by %s\n", app, h)
			return nil
		},
	}
	c.Flags().StringVar(&app, "app", "", "the app (required)")
	return c
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
