package deploy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// The probe copied into a new container is the one built for its image's
// platform; a platform deployctl has no probe for is refused before
// anything changes, with a message that names the platform and what to do,
// unless --drain=signal accepts the lossy drain.
func TestProbeChosenByImagePlatform(t *testing.T) {
	cases := []struct {
		name, os, arch string
		drain          DrainMode
		wantProbe      string // the probe's bytes in the new container; "" none
		wantErr        []string
	}{
		{name: "amd64", os: "linux", arch: "amd64", wantProbe: "probe for linux/amd64"},
		{name: "arm64", os: "linux", arch: "arm64", wantProbe: "probe for linux/arm64"},
		{name: "arm64 drain=health", os: "linux", arch: "arm64", drain: DrainHealth, wantProbe: "probe for linux/arm64"},
		{name: "s390x refused", os: "linux", arch: "s390x", wantErr: []string{
			"image web:v2 is linux/s390x, and this deployctl carries its drain probe only for linux/amd64, linux/arm64",
			"old containers cannot be taken out of Traefik before they are stopped",
			"state:    nothing was changed", "pass --drain=signal to deploy anyway with the lossy stop-then-wait drain"}},
		{name: "windows refused", os: "windows", arch: "amd64", drain: DrainHealth, wantErr: []string{"image web:v2 is windows/amd64"}},
		{name: "unknown platform refused", wantErr: []string{"image web:v2 is of an unknown platform"}},
		{name: "s390x with drain=signal", os: "linux", arch: "s390x", drain: DrainSignal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.addImage("web:v2", nil)
			img := w.images["web:v2"]
			img.OS, img.Arch = tc.os, tc.arch
			w.images["web:v2"] = img
			w.addRunning("web-v1", "v1", true)
			var spec CreateSpec
			w.createHook = func(s CreateSpec) { spec = s }
			e, _ := engine(w)
			j := newMemJournal()
			e.Journal = j
			o := testOptions("v2")
			o.Drain = tc.drain
			_, err := e.Rollout(context.Background(), o)
			if tc.wantErr != nil {
				var de *Error
				if !errors.As(err, &de) || de.Kind != KindUsage || !errors.Is(err, ErrNoProbe) {
					t.Fatalf("got %v, want a usage error wrapping ErrNoProbe", err)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(de.Error(), want) {
						t.Errorf("message lacks %q:\n%s", want, de.Error())
					}
				}
				if hasOp(w.ops, "create") || hasOp(w.ops, "marker") || hasOp(w.ops, "stop") {
					t.Errorf("refused, but changed something: %q", w.ops)
				}
				if h, _ := j.LockHolder(context.Background(), "web"); h != nil {
					t.Errorf("refused, but the lock is still held by %s", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := w.copied[spec.Name][ProbePath]
			if string(got) != tc.wantProbe {
				t.Errorf("probe copied into the new container: %q, want %q", got, tc.wantProbe)
			}
			if tc.wantProbe != "" && (spec.Healthcheck == nil || spec.Healthcheck.Test[1] != ProbePath || spec.Labels[LabelDrain] != "probe") {
				t.Errorf("healthcheck %+v labels %v: want the probe at %s", spec.Healthcheck, spec.Labels, ProbePath)
			}
		})
	}
}

// A container made by an earlier deployctl runs `/.deployctl/deployctl
// probe ...` as its healthcheck. Rolling out from it rebuilds the new
// container's healthcheck from the recorded app healthcheck and the new
// probe path; rolling back to it installs the probe at the old path.
func TestContainersOfEarlierVersionsKeepAWorkingProbe(t *testing.T) {
	own := &Healthcheck{Test: []string{"CMD", "/app", "health"}, Interval: 5 * time.Second, Retries: 2}
	legacy := func(c *fakeContainer) {
		c.Labels[LabelHealthcheck] = encodeHealthcheck(own)
		c.Healthcheck = &Healthcheck{Test: []string{"CMD", LegacyProbePath, "probe", "--marker", MarkerPath, "--state", ProbeState,
			"--interval", "5s", "--timeout", "30s", "--retries", "2", "--", "CMD", "/app", "health"}, Interval: time.Second, Retries: 1}
	}

	t.Run("rollout from it", func(t *testing.T) {
		w := newWorld()
		w.addImage("web:v2", nil)
		legacy(w.addRunning("web-v1", "v1", true))
		var spec CreateSpec
		w.createHook = func(s CreateSpec) { spec = s }
		e, _ := engine(w)
		if _, err := e.Rollout(context.Background(), testOptions("v2")); err != nil {
			t.Fatal(err)
		}
		want := []string{"CMD", ProbePath, "--marker", MarkerPath, "--state", ProbeState, "--interval", "5s", "--timeout", "30s", "--retries", "2", "--", "CMD", "/app", "health"}
		if spec.Healthcheck == nil || !slices.Equal(spec.Healthcheck.Test, want) {
			t.Errorf("new healthcheck %+v, want %q", spec.Healthcheck, want)
		}
		if string(w.copied[spec.Name][ProbePath]) != "probe for linux/amd64" {
			t.Errorf("probe not copied to %s: %v", ProbePath, w.copied[spec.Name])
		}
	})

	t.Run("rollback to it", func(t *testing.T) {
		s := rollbackScenario()
		v1 := s.w.containers[s.target()]
		legacy(v1)
		e, _ := engine(s.w)
		e.Journal = s.j
		if _, _, err := e.Rollback(context.Background(), rollbackOptions()); err != nil {
			t.Fatal(err)
		}
		got := s.w.copied[v1.Name]
		if string(got[LegacyProbePath]) != "probe for linux/amd64" || string(got[MarkerPath]) != MarkerServe {
			t.Errorf("restarted container got %v; want the probe at %s and the marker reset", got, LegacyProbePath)
		}
		if i, j := indexOf(t, s.w.ops, "marker web-v1 serve"), indexOf(t, s.w.ops, "start web-v1"); i > j {
			t.Errorf("probe installed after the start: %q", s.w.ops)
		}
	})
}
