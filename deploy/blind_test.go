package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// blindOptions: a rollout whose waits outlast Traefik's (tiny) throttle plus
// the witness margin.
func blindOptions(w *world, version string) Options {
	o := testOptions(version)
	w.throttle = time.Millisecond
	o.DeregisterTimeout = 5 * time.Second
	return o
}

// traefikDownAt makes every Router call fail from the first event matching
// phase and message on.
func traefikDownAt(w *world, ev *events, phase Phase, message string, then func()) Reporter {
	return ReporterFunc(func(e Event) {
		ev.Event(e)
		if e.Phase == phase && strings.Contains(e.Message, message) {
			w.mu.Lock()
			w.traefikErr = fmt.Errorf("%w: connection refused", ErrUnreachable)
			w.mu.Unlock()
			if then != nil {
				then()
			}
		}
	})
}

func (w *world) byVersion(v string) *fakeContainer {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.containers {
		if c.Labels[LabelVersion] == v {
			return c
		}
	}
	return nil
}

// Traefik's API goes down once the drain marker is written: Docker's health
// of the drained container, for longer than Traefik's throttle, stands in
// for Traefik's answer and the rollout finishes, saying so.
func TestTraefikDownDuringDrainFinishesOnDockerHealth(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	w.addRunning("web-v1", "v1", true)
	e, ev := engine(w)
	e.Reporter = traefikDownAt(w, ev, PhaseDrain, "drain marker written", nil)
	start := time.Now()
	res, err := e.Rollout(context.Background(), blindOptions(w, "v2"))
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	// One bound (throttle + margin) for the old and the new container at
	// once, not one after the other.
	if d := time.Since(start); d < blindMargin || d > 2*blindMargin-50*time.Millisecond {
		t.Errorf("finished after %s, want one wait of Traefik's throttle + margin (%s)", d, blindMargin)
	}
	if res.New.Version != "v2" {
		t.Errorf("result %+v", res)
	}
	ops := w.ops
	if indexOf(t, ops, "marker web-v1 drain") > indexOf(t, ops, "stop web-v1") {
		t.Errorf("stopped before draining: %q", ops)
	}
	if ws := strings.Join(ev.warnings(), "\n"); !strings.Contains(ws, "Traefik's API stopped answering") || !strings.Contains(ws, "web-v1") {
		t.Errorf("warnings %q, want one saying Traefik's API stopped answering and naming web-v1", ws)
	}
}

// Traefik's API goes down during the drain and the new container turns
// unhealthy: nothing confirms that it serves, so the drain is undone (the
// old container healthy again for Traefik's throttle) and the new one is
// drained by Docker health and removed.
func TestTraefikDownDuringDrainAndNewFailsRestoresOld(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, ev := engine(w)
	e.Reporter = traefikDownAt(w, ev, PhaseDrain, "drain marker written", func() {
		if c := w.byVersion("v2"); c != nil {
			w.mu.Lock()
			c.Health = "unhealthy"
			w.mu.Unlock()
		}
	})
	o := blindOptions(w, "v2")
	o.DeregisterTimeout = time.Second
	_, err := e.Rollout(context.Background(), o)
	var de *Error
	if !errors.As(err, &de) || de.Kind != KindUnreachable {
		t.Fatalf("err %v, want an unreachable-Traefik error", err)
	}
	if !strings.Contains(err.Error(), "did not confirm") || !strings.Contains(de.State, "serving again") {
		t.Errorf("message %q", err)
	}
	if old.marker != MarkerServe || old.State != "running" || old.Health != "healthy" {
		t.Errorf("old container: marker %q state %s health %s; want serving", old.marker, old.State, old.Health)
	}
	if c := w.byVersion("v2"); c != nil {
		t.Errorf("new container left: %s (%s)", c.Name, c.State)
	}
	if ws := strings.Join(ev.warnings(), "\n"); !strings.Contains(ws, "the restore went on Docker's health") {
		t.Errorf("warnings %q", ws)
	}
}

// Traefik's API stops answering while deployctl waits for it to list the
// new container: the rollout cannot confirm routing, so it gives up at the
// register timeout with Traefik named as unreachable, drains the new
// container by Docker health and removes it.
func TestTraefikDownWhileRegistering(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, ev := engine(w)
	e.Reporter = traefikDownAt(w, ev, PhaseRegister, "", nil)
	_, err := e.Rollout(context.Background(), blindOptions(w, "v2"))
	var de *Error
	if !errors.As(err, &de) || de.Kind != KindUnreachable || de.Phase != PhaseRegister {
		t.Fatalf("err %v, want Traefik unreachable in the register phase", err)
	}
	if !strings.Contains(err.Error(), "Traefik's API did not answer") || !strings.Contains(de.Hint, "--traefik-url") {
		t.Errorf("message %q", err)
	}
	if old.marker != MarkerServe || old.State != "running" {
		t.Errorf("old container touched: marker %q state %s", old.marker, old.State)
	}
	if c := w.byVersion("v2"); c != nil {
		t.Errorf("new container left: %s (%s)", c.Name, c.State)
	}
	// The new container was drained before it was stopped: the marker
	// first, its stop only once Docker called it unhealthy for the bound.
	ops := w.ops
	var newName string
	for _, op := range ops {
		if name, ok := strings.CutPrefix(op, "create "); ok {
			newName, _, _ = strings.Cut(name, " ")
		}
	}
	if newName == "" {
		t.Fatalf("no create op in %q", ops)
	}
	if indexOf(t, ops, "marker "+newName+" drain") > indexOf(t, ops, "stop "+newName) {
		t.Errorf("new container stopped before it was drained: %q", ops)
	}
}
