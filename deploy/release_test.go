package deploy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// releaseOps are the names of the release containers the world made.
func releaseOps(w *world) (created []string) {
	for _, op := range w.ops {
		if strings.HasPrefix(op, "create web-pre-deploy-") || strings.HasPrefix(op, "create web-post-deploy-") {
			created = append(created, strings.TrimPrefix(op, "create "))
		}
	}
	return created
}

// The pre-deploy command runs once, in a one-off container of the new
// image that Traefik does not route, before any new container is made;
// its output is in the progress; the container is removed.
func TestPreDeployRunsOnceBeforeAnyNewContainer(t *testing.T) {
	w, _ := threeV1()
	w.logs = "migrating\nmigrated 3\n"
	var spec *CreateSpec
	w.createHook = func(s CreateSpec) {
		if s.Labels[LabelReleaseOf] != "" {
			spec = &s
		}
	}
	e, ev := engine(w)
	o := testOptions("v2")
	o.Replicas, o.PreDeploy = 3, []string{"bin/rails", "db:migrate"}
	if _, err := e.Rollout(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	made := releaseOps(w)
	if len(made) != 1 || spec == nil {
		t.Fatalf("release containers made: %v, want one", made)
	}
	if i, j := indexOf(t, w.ops, "create web-pre-deploy-"), indexOf(t, w.ops, "create web-v2-"); i > j {
		t.Errorf("the pre-deploy container was made after a new container: %q", w.ops)
	}
	if i, j := indexOf(t, w.ops, "remove web-pre-deploy-"), indexOf(t, w.ops, "create web-v2-"); i > j {
		t.Errorf("the pre-deploy container was removed after a new container was made: %q", w.ops)
	}
	if !slices.Equal(spec.Command, o.PreDeploy) || spec.Image != "web:v2" || spec.Labels["traefik.enable"] != "false" || spec.Restart != "no" {
		t.Errorf("pre-deploy spec %+v", spec)
	}
	for _, k := range spec.RemoveLabels {
		if !strings.HasPrefix(k, "traefik.") {
			t.Errorf("removes label %s", k)
		}
	}
	if len(spec.RemoveLabels) == 0 {
		t.Error("the app's Traefik labels are not removed from the release container")
	}
	var out []string
	for _, e := range ev.all {
		if e.Phase == PhaseRelease && e.Status == StatusInfo {
			out = append(out, e.Message)
		}
	}
	if !slices.Equal(out, []string{"migrating", "migrated 3"}) {
		t.Errorf("release output in the progress: %q", out)
	}
}

// A pre-deploy command that fails stops the rollout before anything
// changed: exit 1 (KindFailed) with its last lines, no new container,
// its own removed, the old version serving.
func TestFailingPreDeployChangesNothing(t *testing.T) {
	w, _ := threeV1()
	w.releaseExit, w.logs = 1, "migration 42 failed: column exists\n"
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.PreDeploy = 3, []string{"migrate"}
	_, err := e.Rollout(context.Background(), o)
	var de *Error
	if !errors.As(err, &de) || de.Kind != KindFailed || de.Phase != PhaseRelease {
		t.Fatalf("err %v, want a failure of the release phase", err)
	}
	if !strings.Contains(de.Err.Error(), "exited with code 1") || !strings.Contains(de.Observed, "migration 42 failed") || !strings.Contains(de.State, "nothing was changed") {
		t.Errorf("error %q, observed %q, state %q", de.Err, de.Observed, de.State)
	}
	for _, op := range w.ops {
		if strings.HasPrefix(op, "create web-v2-") || strings.HasPrefix(op, "stop ") {
			t.Errorf("op %q after a failed pre-deploy", op)
		}
	}
	for _, c := range w.containers {
		if c.Labels[LabelReleaseOf] != "" {
			t.Errorf("release container %s left", c.Name)
		}
	}
	assertRestored(t, w)
}

// A post-deploy command runs after the rollout succeeded; when it fails,
// the error says the new version serves.
func TestFailingPostDeploySaysTheNewVersionServes(t *testing.T) {
	w, _ := threeV1()
	w.releaseExit = 2
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.PostDeploy = 3, []string{"notify"}
	res, err := e.Rollout(context.Background(), o)
	var de *Error
	if !errors.As(err, &de) || de.Phase != PhaseRelease || !strings.Contains(de.State, "v2 serves") {
		t.Fatalf("err %v, want a post-deploy failure that says v2 serves", err)
	}
	if res == nil || len(res.NewContainers) != 3 {
		t.Fatalf("result %+v", res)
	}
	if got := versionsRunning(w); got["v2"] != 3 {
		t.Errorf("running %v", got)
	}
	if i, j := indexOf(t, w.ops, "create web-post-deploy-"), indexOf(t, w.ops, "stop web-c"); i < j {
		t.Errorf("post-deploy ran before the old version stopped: %q", w.ops)
	}
}

// A signal (the run's context cancelled) stops a pre-deploy command that
// is still running: the rollout ends interrupted, the release container
// is removed, and nothing else changed.
func TestSignalStopsThePreDeployCommand(t *testing.T) {
	w, _ := threeV1()
	w.releaseHangs = true
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.PreDeploy = 3, []string{"migrate"}
	ctx, cancel := context.WithCancelCause(context.Background())
	w.createHook = func(s CreateSpec) {
		if s.Labels[LabelReleaseOf] != "" {
			go func() { time.Sleep(50 * time.Millisecond); cancel(ErrInterrupted) }()
		}
	}
	_, err := e.Rollout(ctx, o)
	var de *Error
	if !errors.As(err, &de) || de.Kind != KindInterrupted {
		t.Fatalf("err %v, want interrupted", err)
	}
	for _, c := range w.containers {
		if c.Labels[LabelReleaseOf] != "" {
			t.Errorf("release container %s left (%s)", c.Name, c.State)
		}
	}
	assertRestored(t, w)
}
