// Package cmd is deployctl's command line: flags become an options struct,
// one call goes into the deploy engine, progress events are rendered to
// stderr, the result goes to stdout, and errors become exit codes.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/deploy"
)

// Set by the release build (goreleaser ldflags).
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

// Exit codes: one table, shown by `deployctl help exit-codes` and the README.
const (
	ExitOK          = 0
	ExitFailed      = 1 // the rollout failed; the old version is still serving
	ExitUsage       = 2 // bad flags or input; nothing was changed
	ExitNeedsHuman  = 3 // deployctl could not restore a known good state by itself
	ExitUnreachable = 4 // Docker or Traefik could not be reached or used; the old version still serves
	ExitLocked      = 5 // another run holds the app's deploy lock; nothing was changed
	ExitSIGINT      = 130
	ExitSIGTERM     = 143
)

var exitCodeTable = []struct {
	code int
	text string
}{
	{ExitOK, "success: the new version is serving"},
	{ExitFailed, "the rollout failed; the old version is untouched and still serving, the new container was removed"},
	{ExitUsage, "usage error (bad flag, value or input); nothing was changed"},
	{ExitNeedsHuman, "deployctl could not bring things back to a known good state by itself; the message says what is running"},
	{ExitUnreachable, "Docker or Traefik could not be reached or used; the old version is still serving, anything started was removed"},
	{ExitLocked, "another run holds the app's deploy lock (the message names it); nothing was changed"},
	{ExitSIGINT, "interrupted by SIGINT (Ctrl-C); the old version keeps serving, the new container was removed"},
	{ExitSIGTERM, "interrupted by SIGTERM; as for 130"},
}

// ExitCodesHelp is the exit code table as text.
func ExitCodesHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	for _, e := range exitCodeTable {
		fmt.Fprintf(&b, "  %3d  %s\n", e.code, e.text)
	}
	return b.String()
}

// interrupt records which signal cancelled the run.
type interrupt struct{ sig os.Signal }

func (i interrupt) Error() string { return "interrupted by " + i.sig.String() }
func (i interrupt) Is(target error) bool {
	return target == deploy.ErrInterrupted
}

// Main runs deployctl with os.Args and returns the exit code.
func Main() int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	// Never signal.Stop: a signal that arrives after Run returned, while
	// the process exits, must not kill it with the default action (a
	// second Ctrl-C during the last moments of a cleanup would end it as
	// "killed by interrupt" instead of exit 130).
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		first := <-sigs
		// progress: print above the spinner, and stop it before os.Exit.
		printAboveProgress(os.Stderr, fmt.Sprintf("deployctl: %s received: cleaning up so the old version keeps serving (signal again to exit at once)", first))
		cancel(interrupt{first})
		second := <-sigs
		stopProgress()
		os.Exit(signalExitCode(second))
	}()
	return Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// Run runs deployctl with args and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(newFactory(), stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	var reported *reportedError
	if !errors.As(err, &reported) {
		fmt.Fprintf(stderr, "deployctl: %v\n", err)
	}
	if code == ExitUsage && isFlagError(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", commandPath(root, args))
	}
	return code
}

// reportedError is an error the command has already printed.
type reportedError struct{ error }

func (r *reportedError) Unwrap() error { return r.error }

func exitCode(err error) int {
	var sig interrupt
	if errors.As(err, &sig) {
		return signalExitCode(sig.sig)
	}
	var de *deploy.Error
	if errors.As(err, &de) {
		switch de.Kind {
		case deploy.KindUsage:
			return ExitUsage
		case deploy.KindNeedsHuman:
			return ExitNeedsHuman
		case deploy.KindUnreachable:
			return ExitUnreachable
		case deploy.KindLocked:
			return ExitLocked
		case deploy.KindInterrupted:
			return ExitSIGINT
		}
		return ExitFailed
	}
	if errors.Is(err, deploy.ErrUnreachable) {
		return ExitUnreachable
	}
	var ue usageErr
	// cobra's own "unknown command" error has no type of its own.
	if errors.As(err, &ue) || isFlagError(err) || strings.HasPrefix(err.Error(), "unknown command ") {
		return ExitUsage
	}
	return ExitFailed
}

func signalExitCode(s os.Signal) int {
	if s == syscall.SIGTERM {
		return ExitSIGTERM
	}
	return ExitSIGINT
}

// usageErr is a bad flag value found after parsing.
type usageErr struct{ error }

func usagef(format string, args ...any) error { return usageErr{fmt.Errorf(format, args...)} }

// noArgs is cobra.NoArgs as a usage error (exit 2).
func noArgs(c *cobra.Command, args []string) error {
	if err := cobra.NoArgs(c, args); err != nil {
		return flagError{err}
	}
	return nil
}

// flagError marks cobra's own parse errors.
type flagError struct{ error }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

func commandPath(root *cobra.Command, args []string) string {
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return root.Name()
	}
	return c.CommandPath()
}

// newRootCmd is deployctl's command tree; every command's run gets what it
// needs from f.
func newRootCmd(f *factory, stdout, stderr io.Writer) *cobra.Command {
	root := newBareRoot(stdout, stderr)
	root.AddCommand(newRolloutCmd(f, nil), newRollbackCmd(f, nil), newScaleCmd(f, nil), newStatusCmd(f, nil), newHistoryCmd(f, nil),
		newUnlockCmd(f, nil), newCheckCmd(f, nil), newVersionCmd(), newExitCodesHelp())
	// completion (cmd/completion.go): keep these after every AddCommand,
	// so the completions reach all commands.
	root.AddCommand(newCompletionCmd(nil))
	registerCompletions(root, f)
	return root
}

// newBareRoot is the root command without its commands: help, version,
// --progress, flag errors as usage errors, DEPLOYCTL_* read before any
// command runs.
func newBareRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "deployctl",
		Short: "Zero-downtime rollouts of containerised web apps behind Traefik",
		Long: `deployctl rolls a new version of a containerised web app out behind Traefik
on a plain Docker host, with zero failed requests:

  1. it runs the new container, configured like the current one;
  2. it waits until Docker reports it healthy and Traefik lists its server;
  3. it takes the old container out of Traefik (via a drain-aware healthcheck)
     and confirms Traefik dropped it, and only then stops it.

If anything fails before the old container is touched, the new one is removed
and the old one keeps serving.

Every flag can also be set as DEPLOYCTL_<FLAG> (upper case, '-' as '_'), e.g.
DEPLOYCTL_TRAEFIK_URL: a flag on the command line wins over the environment,
which wins over the default. A repeatable flag (--env, --label,
--traefik-header, ...) takes one value per line of its variable, never split
on commas, so a value may hold one. Docker is reached as the docker CLI does it
(DOCKER_HOST, including ssh://user@host, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,
DOCKER_CONTEXT). Exit codes: deployctl help exit-codes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("deployctl {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return flagError{err} })
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return flagsFromEnv(c) }
	addProgressFlag(root)
	return root
}

// flagsFromEnv sets every flag not given on the command line from
// DEPLOYCTL_<FLAG> (upper case, '-' as '_'): flag > env > default. A
// repeatable flag (--env, --label, --traefik-header, ...) takes one value
// per line of its variable (see splitList).
func flagsFromEnv(c *cobra.Command) error {
	var err error
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			err = sv.Replace(splitList(v))
		} else {
			err = f.Value.Set(v)
		}
		if err != nil {
			if secretFlags[f.Name] {
				err = usagef("%s: %v (the value is not shown: it may be a secret)", name, err)
			} else {
				err = usagef("%s=%q: %v", name, v, err)
			}
			return
		}
		f.Changed = true
		markFromEnv(f)
	})
	return err
}

func envName(flag string) string {
	return "DEPLOYCTL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// splitList splits the value of a repeatable flag's variable into one entry
// per line; blank lines are skipped and each line is trimmed of surrounding
// whitespace (and a trailing \r). Never on commas: a value may hold one
// (DATABASE_URL=postgres://...?sslmode=require&options=a,b), and a comma
// split once cut such a secret in two, printed its tail in an error or made
// it a second variable. One entry needs no newline at all.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, "\n") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print deployctl's version, commit and build date",
		Example: `  deployctl version
  # deployctl 1.4.0 (commit 3f9ace5, built 2025-06-01T12:00:00Z)`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintf(c.OutOrStdout(), "deployctl %s (commit %s, built %s)\n", version, commit, date)
			return nil
		},
	}
}

func newExitCodesHelp() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "The exit codes deployctl returns, for CI scripts",
		Long:  ExitCodesHelp(),
	}
}
