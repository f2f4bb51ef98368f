package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Target is a declared service's target state (docs/design.md, "Compose
// services"): the configuration every new container of the rollout gets,
// given rather than copied from a running container, and the labels the
// tool that declares the service expects on each of them. A rollout
// without one copies the configuration of the newest old container that
// Traefik serves (the template).
type Target struct {
	// Config is the new containers' configuration; its labels are the
	// service's own (the user's, traefik.* included). A rollback's
	// Target has none: the retained containers are the configuration,
	// and the Target only numbers those it makes.
	Config *ContainerConfig
	// NumberLabel, when not empty, is the label that numbers the
	// service's containers: each new one gets the highest number any
	// container the rollout's Select finds has, stopped ones included,
	// plus one; numbers are never reused (compose's rule).
	NumberLabel string
	// Labels returns the labels of the new container numbered n (0 when
	// NumberLabel is empty), made from the image with ID imageID, set on
	// top of Config's.
	Labels func(n int, imageID string) (map[string]string, error)
	// Networks and Volumes are what the new containers need that is not
	// a container (a compose project's networks and named volumes, named
	// and labelled as compose makes them): made, when missing, after the
	// plan and before the first container; what exists is left as it is.
	Networks []NetworkSpec
	Volumes  []VolumeSpec
	// PostStart hooks run in each new container once it started (a
	// failing one fails the container, as a crash would); PreStop hooks
	// in each old container once it is out of Traefik, before its stop
	// signal (a failing one is a warning). Compose's post_start and
	// pre_stop.
	PostStart, PreStop []Hook
	// OneOffLabels are set on the containers the rollout runs beside the
	// service's replicas (route containers, the release command's), so
	// that the declaring tool knows them as one-offs of the service.
	OneOffLabels map[string]string
}

// WarnComposeIgnored: a setting of a compose service deployctl does not
// honour (an update_config field), or honours with a cost (stop-first).
const WarnComposeIgnored = "compose-setting-ignored"

// WarnHookFailed: a pre_stop hook failed; the container was stopped all
// the same.
const WarnHookFailed = "hook-failed"

// templateOf is the target as the template the engine reads (its labels
// for the routing and the port, its healthcheck, its read-only root):
// a container that does not exist (no ID, so nothing is copied).
func (t *Target) templateOf() *Container {
	c := t.Config
	tmpl := &Container{Name: "(target)", Labels: maps.Clone(c.Labels), ReadOnlyRootfs: c.ReadOnly, StopSignal: c.StopSignal, StopTimeout: c.StopTimeout}
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Env = c.Env // redacted from relayed output (redact.go), as a copied container's
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		tmpl.OwnHealthcheck, tmpl.Healthcheck = &h, &h
	}
	return tmpl
}

// targetLabels are the labels of a new container of r's Target: a new
// number when the target numbers its containers, then the target's
// labels for it.
func (r *rollout) targetLabels(ctx context.Context) (map[string]string, error) {
	t := r.o.Target
	n := 0
	if t.NumberLabel != "" {
		var err error
		if n, err = r.nextNumber(ctx); err != nil {
			return nil, err
		}
	}
	if t.Labels == nil {
		return nil, nil
	}
	labels, err := t.Labels(n, r.image.ID)
	if err != nil {
		return nil, &Error{Phase: PhaseCreate, Kind: KindFailed, Err: err}
	}
	return labels, nil
}

// nextNumber is the number of the next new container of the target: one
// above the highest of the containers Select finds, stopped ones
// included, and of those this run made. It is safe to call from the
// goroutines that create a batch.
func (r *rollout) nextNumber(ctx context.Context) (int, error) {
	r.numberMu.Lock()
	defer r.numberMu.Unlock()
	if !r.numbered {
		cs, err := r.e.Runtime.List(ctx, r.o.Select)
		if err != nil {
			return 0, unreachable("Docker", err)
		}
		for _, c := range cs {
			if n, err := strconv.Atoi(c.Labels[r.o.Target.NumberLabel]); err == nil && n > r.lastNumber {
				r.lastNumber = n
			}
		}
		r.numbered = true
	}
	r.lastNumber++
	return r.lastNumber, nil
}

// declared reports whether the rollout's new containers are made from a
// Target's configuration (not on a rollback, whose retained containers
// are the configuration; its Target, if any, only numbers them).
func (o Options) declared() bool {
	return o.Target != nil && o.Target.Config != nil && o.Reuse == ""
}

// checkTarget refuses a Target the engine cannot number.
func (o Options) checkTarget() error {
	t := o.Target
	if t == nil {
		return nil
	}
	if t.NumberLabel != "" && len(o.Select) == 0 {
		return usageError("a target that numbers its containers needs Select to find them")
	}
	return nil
}

// NetworkSpec is a network a Target's containers join.
type NetworkSpec struct {
	Name       string
	Driver     string
	Options    map[string]string
	Labels     map[string]string
	Internal   bool
	Attachable bool
	// External: someone else makes it; a missing one fails the rollout.
	External bool
}

// VolumeSpec is a named volume a Target's containers mount.
type VolumeSpec struct {
	Name     string
	Driver   string
	Options  map[string]string
	Labels   map[string]string
	External bool
}

// Resources is the Runtime's capability to make networks and volumes,
// which a Target with any needs (dockerutil has it).
type Resources interface {
	// EnsureNetwork makes the network unless one of its name exists;
	// created says whether it made it. An external one is only looked up
	// (ErrNotFound wrapped when missing).
	EnsureNetwork(ctx context.Context, n NetworkSpec) (created bool, err error)
	// EnsureVolume is EnsureNetwork for a named volume.
	EnsureVolume(ctx context.Context, v VolumeSpec) (created bool, err error)
}

// prepareTarget makes the Target's missing networks and volumes, for a
// rollout that makes containers from it.
func (r *rollout) prepareTarget(ctx context.Context) error {
	t := r.o.Target
	if t == nil || r.o.Reuse != "" || r.dryRun || len(t.Networks)+len(t.Volumes) == 0 {
		return nil
	}
	res, ok := r.e.Runtime.(Resources)
	if !ok {
		return &Error{Kind: KindFailed, Err: errors.New("this container engine cannot make networks and volumes, which the service needs")}
	}
	fail := func(kind, name string, external bool, err error) error {
		if external {
			return &Error{Kind: KindFailed, Err: fmt.Errorf("external %s %s: %w", kind, name, err),
				Hint: fmt.Sprintf("create it first (docker %s create %s), or remove external: from its definition", kind, name)}
		}
		return &Error{Kind: KindFailed, Err: fmt.Errorf("making %s %s: %w", kind, name, err),
			Hint: "no container of the new version was made"}
	}
	for _, n := range t.Networks {
		created, err := res.EnsureNetwork(ctx, n)
		if err != nil {
			return fail("network", n.Name, n.External, err)
		}
		if created {
			r.info(PhaseCreate, Event{Message: "created network " + n.Name})
		}
	}
	for _, v := range t.Volumes {
		created, err := res.EnsureVolume(ctx, v)
		if err != nil {
			return fail("volume", v.Name, v.External, err)
		}
		if created {
			r.info(PhaseCreate, Event{Message: "created volume " + v.Name})
		}
	}
	return nil
}

// routedOld is the newest old container whose labels are the split ones
// of an atomic rollout (LabelRoutingBase): the app is routed by a route
// container. nil when none is.
func (r *rollout) routedOld() *Container {
	var newest *Container
	for _, old := range r.olds {
		if old.Labels[LabelRoutingBase] != "" && (newest == nil || old.Created.After(newest.Created)) {
			newest = &old.Container
		}
	}
	return newest
}

// traefikKeys are the traefik.* keys of labels, sorted.
func traefikKeys(labels map[string]string) []string {
	var out []string
	for k := range labels {
		if strings.HasPrefix(k, "traefik.") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Hook is a command run in a container of a Target at a point of its
// life (compose's post_start and pre_stop), as docker exec runs it.
type Hook struct {
	Command    []string
	User       string
	WorkingDir string
	Privileged bool
	Env        []string // KEY=VALUE
}

// HookRunner is the Runtime's capability to run a Hook in a running
// container and wait for it (dockerutil has it).
type HookRunner interface {
	RunHook(ctx context.Context, id string, h Hook) (ExecResult, error)
}

// runHooks runs hooks (what names them: "post_start") in container c, in
// order; the first that fails or exits non-zero is the error, with its
// output.
func (r *rollout) runHooks(ctx context.Context, what string, c Container, hooks []Hook) error {
	if len(hooks) == 0 {
		return nil
	}
	hr, ok := r.e.Runtime.(HookRunner)
	if !ok {
		return fmt.Errorf("this container engine cannot run %s hooks", what)
	}
	for _, h := range hooks {
		res, err := hr.RunHook(ctx, c.ID, h)
		if err != nil {
			return fmt.Errorf("%s hook %q in %s: %w", what, strings.Join(h.Command, " "), c.Short(), err)
		}
		if res.ExitCode != 0 {
			out := strings.TrimSpace(r.relay(res.Stdout + res.Stderr))
			if out == "" {
				out = "(no output)"
			}
			return fmt.Errorf("%s hook %q in %s exited with code %d: %s", what, strings.Join(h.Command, " "), c.Short(), res.ExitCode, lastLine(out))
		}
	}
	return nil
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
