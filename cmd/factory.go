package cmd

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/dockerutil"
	"github.com/deployctl/deployctl/internal/procid"
	"github.com/deployctl/deployctl/traefikapi"
)

// factory builds what a command's run function needs. Its constructors are
// lazy (nothing connects until a run asks), and each can be replaced: the
// run functions' tests give them fakes of the engine's interfaces, so they
// need neither Docker nor Traefik (GitHub CLI's cmdutil.Factory).
type factory struct {
	// Docker connects to the Docker engine as the docker CLI does
	// (DOCKER_HOST, DOCKER_CONTEXT, ...): the engine's runtime and journal.
	// The caller closes it.
	Docker func(ctx context.Context) (dockerClient, error)
	// Router connects to Traefik's API as the --traefik-* flags say; a bad
	// value is a usage error. The engine's router is Traefik's docker
	// provider over it (traefikapi.DockerProvider).
	Router func(t *traefikOptions) (deploy.Observer, error)
	// Progress renders the engine's events as --progress says, to w.
	Progress func(mode string, w io.Writer) progress
	// Completer connects to the Docker engine for shell completion. The
	// caller closes it.
	Completer func(ctx context.Context) (completer, error)
	// Probes are the drain-aware probes the engine copies into containers.
	Probes deploy.ProbeSource
	// Processes looks at this machine's processes (stale locks).
	Processes deploy.Processes
	// Now is the clock.
	Now func() time.Time
}

// dockerClient is what the engine uses of the Docker engine.
type dockerClient interface {
	deploy.Runtime
	deploy.Journal
	Close() error
}

// completer is what shell completion asks of the Docker engine: one list
// call each, for a shell is waiting.
type completer interface {
	// LabelValues returns label's value on every container (running or
	// not) that has filter, a label key or key=value.
	LabelValues(ctx context.Context, filter, label string) ([]string, error)
	// RepoTags returns the repo:tag references of the local images that
	// match reference.
	RepoTags(ctx context.Context, reference string) ([]string, error)
	Close() error
}

var (
	_ dockerClient = (*dockerutil.Runtime)(nil)
	_ completer    = (*dockerutil.Runtime)(nil)
)

// newFactory is the factory of the real thing: Docker through dockerutil,
// Traefik through traefikapi, the probes embedded in this binary.
func newFactory() *factory {
	return &factory{
		Docker: func(ctx context.Context) (dockerClient, error) {
			rt, err := dockerutil.New(ctx)
			if err != nil {
				return nil, err
			}
			return rt, nil
		},
		Router:   (*traefikOptions).router,
		Progress: func(mode string, w io.Writer) progress { return newProgressFor(mode, w, os.Getenv) },
		Completer: func(ctx context.Context) (completer, error) {
			rt, err := dockerutil.New(ctx)
			if err != nil {
				return nil, err
			}
			return rt, nil
		},
		Probes:    embeddedProbes{},
		Processes: procid.Local{},
		Now:       time.Now,
	}
}

// ioStreams are where a command writes, and how it shows progress.
type ioStreams struct {
	out, errOut io.Writer
	progress    string // --progress (DEPLOYCTL_PROGRESS)
}

// streamsOf is c's output and its --progress mode.
func streamsOf(c *cobra.Command) ioStreams {
	mode := progressAuto
	if f := c.Flags().Lookup("progress"); f != nil {
		mode = f.Value.String()
	}
	return ioStreams{out: c.OutOrStdout(), errOut: c.ErrOrStderr(), progress: mode}
}

// docker connects to the Docker engine; a failure is the engine's
// unreachable error (exit 4), before anything was changed.
func (f *factory) docker(ctx context.Context) (dockerClient, error) {
	rt, err := f.Docker(ctx)
	if err != nil {
		return nil, &deploy.Error{Phase: deploy.PhasePlan, Kind: deploy.KindUnreachable, Err: err, State: "nothing was changed"}
	}
	return rt, nil
}

// engine opens Traefik's API (first: a bad --traefik-* flag is a usage
// error found before Docker is contacted) and the Docker engine, and
// returns an engine that reports to reporter; done closes the connection.
func (f *factory) engine(ctx context.Context, t *traefikOptions, reporter deploy.Reporter) (eng *deploy.Engine, done func(), err error) {
	api, err := f.Router(t)
	if err != nil {
		return nil, nil, err
	}
	rt, err := f.docker(ctx)
	if err != nil {
		return nil, nil, err
	}
	// Traefik's docker provider: it drains through the probe's marker,
	// which it copies in through the engine's runtime.
	router := traefikapi.DockerProvider{API: api, Runtime: rt, Throttle: t.throttle}
	eng = &deploy.Engine{Runtime: rt, Router: router, Journal: rt, Reporter: reporter, Processes: f.Processes, Secrets: t.secrets(), Now: f.Now}
	return eng, func() { rt.Close() }, nil
}

// engineRun is one command's run of the engine: its context (bounded by
// --timeout), the progress renderer and the engine.
type engineRun struct {
	ctx      context.Context
	progress progress
	eng      *deploy.Engine
	close    func()
}

// startEngine connects to Docker and Traefik for a command that runs the
// engine; Close ends the run (stops the spinner, closes the connection).
func (f *factory) startEngine(ctx context.Context, s ioStreams, t *traefikOptions, timeout time.Duration) (*engineRun, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, context.DeadlineExceeded)
	progress := f.Progress(s.progress, s.errOut)
	for _, w := range t.warnings() {
		progress.Event(deploy.Event{Time: f.Now(), Phase: deploy.PhasePlan, Status: deploy.StatusWarn, Code: w.Code, Message: w.Message})
	}
	eng, done, err := f.engine(ctx, t, progress)
	if err != nil {
		progress.Close()
		cancel()
		return nil, err
	}
	return &engineRun{ctx: ctx, progress: progress, eng: eng, close: func() {
		progress.Close()
		done()
		cancel()
	}}, nil
}

// Close ends the run.
func (r *engineRun) Close() { r.close() }
