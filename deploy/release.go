package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// LabelReleaseOf names the app whose release command a container runs
// (Options.PreDeploy, PostDeploy): a one-off of the new image, none of
// the app's containers and never routed.
const LabelReleaseOf = "deployctl.release-of"

// PhaseRelease is a release command's run: --pre-deploy before the first
// new container starts, --post-deploy after the rollout succeeded.
const PhaseRelease Phase = "release"

// releaseOutputLines bounds the output of a release command shown in the
// progress (and on failure, in the error), the last lines.
const releaseOutputLines = 50

// runRelease runs cmd once in a one-off container of the new image with the
// configuration its new containers get (the Target's, else the current
// container's, else the flags'), but no Traefik label, no healthcheck and
// no restart policy, and waits until it exits: its output goes to the
// progress, and it is removed afterwards, also when ctx ends (a signal
// stops it). An exit code other than 0 is an error that shows its last
// lines. what is "pre-deploy" or "post-deploy".
func (r *rollout) runRelease(ctx context.Context, what string, cmd []string) error {
	o := r.o
	labels := map[string]string{}
	var remove []string
	var tmpl map[string]string
	if r.template != nil {
		tmpl = r.template.Labels
	}
	for _, m := range []map[string]string{tmpl, o.Labels} {
		for k := range m {
			if strings.HasPrefix(k, "traefik.") {
				remove = append(remove, k)
			}
		}
	}
	maps.Copy(labels, o.Labels)
	for _, k := range remove {
		delete(labels, k)
	}
	if o.Target != nil {
		maps.Copy(labels, o.Target.OneOffLabels)
	}
	labels["traefik.enable"] = "false"
	labels[LabelReleaseOf] = o.App
	labels[LabelVersion] = o.Version
	spec := CreateSpec{
		Name:         containerName(o.App+"-"+what, o.Version, randomSuffix()),
		Image:        o.ImageRef(),
		Labels:       labels,
		RemoveLabels: remove,
		Env:          o.Env,
		Volumes:      o.Volumes,
		Command:      cmd,
		Healthcheck:  &Healthcheck{Test: []string{"NONE"}},
		Restart:      "no",
	}
	if r.template != nil {
		spec.From = r.template.ID
	}
	if o.declared() {
		spec.Config, spec.From = o.Target.Config, ""
	}
	if r.network != "" {
		spec.Networks = []string{r.network}
	}
	r.begin(PhaseRelease, fmt.Sprintf("running the %s command in a one-off container of %s: %s", what, o.ImageRef(), strings.Join(cmd, " ")))
	c, _, err := r.e.Runtime.Create(ctx, spec)
	if err != nil {
		return &Error{Phase: PhaseRelease, Kind: KindFailed, Err: fmt.Errorf("creating the %s container: %w", what, err)}
	}
	// Removed however the run ends: a signal, a timeout, a failure.
	defer func() {
		cctx, cancel := r.cleanupContext(ctx)
		defer cancel()
		_ = r.e.Runtime.Remove(cctx, c.ID)
	}()
	if err := r.e.Runtime.Start(ctx, c.ID); err != nil {
		return &Error{Phase: PhaseRelease, Kind: KindFailed, Err: fmt.Errorf("starting the %s container %s: %w", what, c.Short(), err)}
	}
	for {
		got, err := r.e.Runtime.Inspect(ctx, c.ID)
		switch {
		case ctx.Err() != nil:
			return &Error{Phase: PhaseRelease, Kind: KindInterrupted, Err: fmt.Errorf("the %s command was stopped: %w", what, context.Cause(ctx))}
		case errors.Is(err, ErrContainerNotFound):
			return &Error{Phase: PhaseRelease, Kind: KindFailed, Err: fmt.Errorf("the %s container %s was removed by someone else while it ran", what, c.Short())}
		case err != nil:
			return classifyDocker(err)
		}
		if got.State == "exited" || got.State == "dead" {
			out := r.releaseOutput(ctx, c.ID)
			for _, line := range out {
				r.info(PhaseRelease, Event{Container: c.Short(), Message: line})
			}
			if got.ExitCode != 0 {
				return &Error{Phase: PhaseRelease, Kind: KindFailed,
					Err:      fmt.Errorf("the %s command %q exited with code %d", what, strings.Join(cmd, " "), got.ExitCode),
					Observed: "last lines of its output:\n" + indent(strings.Join(lastLines(out, 20), "\n"), "    "),
					Hint:     "fix the command or what it needs (its output above), then roll out again"}
			}
			r.done(PhaseRelease, Event{Container: c.Short(), Message: fmt.Sprintf("the %s command exited 0", what)})
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(max(o.PollInterval, 100*time.Millisecond)):
		}
	}
}

// releaseOutput is the last lines of a release container's output,
// secrets redacted.
func (r *rollout) releaseOutput(ctx context.Context, id string) []string {
	ctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	out, err := r.e.Runtime.Logs(ctx, id, releaseOutputLines)
	if err != nil {
		return []string{"(output unavailable: " + err.Error() + ")"}
	}
	out = strings.TrimRight(r.relay(out), "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

func lastLines(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return []string{"(no output)"}
	}
	return lines
}

// preDeploy runs the pre-deploy command, once the plan is made and
// before any new container is, on a rollout that makes containers.
func (r *rollout) preDeploy(ctx context.Context) error {
	if len(r.o.PreDeploy) == 0 || r.o.Reuse != "" || r.dryRun || r.scale {
		return nil
	}
	return r.runRelease(ctx, "pre-deploy", r.o.PreDeploy)
}

// postDeploy runs the post-deploy command after a rollout succeeded,
// its lock released: the new version serves whatever it does, and a
// failure says so.
func (r *rollout) postDeploy(ctx context.Context) error {
	if len(r.o.PostDeploy) == 0 || r.o.Reuse != "" || r.dryRun || r.scale {
		return nil
	}
	err := r.runRelease(ctx, "post-deploy", r.o.PostDeploy)
	var de *Error
	if err != nil && !errors.As(err, &de) {
		de = &Error{Phase: PhaseRelease, Kind: KindFailed, Err: err}
	}
	if de != nil {
		de = r.classify(ctx, PhaseRelease, de)
		de.State = fmt.Sprintf("%s serves: the rollout succeeded before the post-deploy command ran", r.o.Version)
		r.e.emit(Event{Phase: PhaseRelease, Status: StatusFail, Message: de.Err.Error()})
		return de
	}
	return nil
}
