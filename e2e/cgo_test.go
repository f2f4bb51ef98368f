package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/deploy"
)

// TestCgoBuildDrainsWithoutLoss: deployctl built the way `go build` and
// `go install` build it on a machine with a C compiler (cgo on, so
// dynamically linked) drains exactly like a static release build, because
// the probe it copies into containers is the static one it embeds, not
// itself. v1 is deployed by the static build; the cgo build rolls v1 -> v2
// and rolls back to v1, under load through Traefik: no request fails, the
// old containers are drained through the probe, and the plan never calls a
// container deployctl made "not created by deployctl". (Before the embedded
// probe, this build stopped old containers by signal: 186 of 1,537 requests
// failed in a rollback at 200 req/s.)
func TestCgoBuildDrainsWithoutLoss(t *testing.T) {
	cgoBin := filepath.Join(t.TempDir(), "deployctl")
	build := exec.Command("go", "build", "-o", cgoBin, "github.com/deployctl/deployctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with CGO_ENABLED=1 (needs a C compiler): %v\n%s", err, out)
	}
	if !dynamicallyLinked(t, cgoBin) {
		t.Fatalf("%s is statically linked: this test needs a cgo build, as go build makes with a C compiler around", cgoBin)
	}

	e := newEnv(t, "v3.0.0")
	repo := appImages(t, e.cli, "v1", "v2")
	app := e.appName("cgo")
	e.firstDeploy(app, repo, "v1") // by the static build

	// expectDrained checks a run of the cgo build: it succeeded, every old
	// container was drained through the probe, and nothing called a
	// container deployctl made one it did not make, or without the probe.
	expectDrained := func(what string, r result) {
		t.Helper()
		if r.code != 0 || r.json.Result == nil {
			t.Fatalf("%s with the cgo build: exit %d", what, r.code)
		}
		for _, old := range r.json.Result.Old {
			// The atomic switch (the default) counts the old containers'
			// connections with the probe, and runs it in its route
			// containers; the gradual one drains through it.
			if old.Drain != deploy.DrainHealth && old.Drain != deploy.DrainSwitch {
				t.Errorf("%s: old container %s drained by %s, want %s or %s (through the probe)", what, old.Name, old.Drain, deploy.DrainSwitch, deploy.DrainHealth)
			}
		}
		for _, bad := range []string{"not created by deployctl", "drain probe", "by signal"} {
			if strings.Contains(r.stderr, bad) {
				t.Errorf("%s: the output says %q:\n%s", what, bad, r.stderr)
			}
		}
	}

	keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, app+".test", 100, false)
	r := e.deployctlBuild(cgoBin, "rollout", "--image", repo, "--version", "v2", "--app", app)
	expectDrained("rollout v1 -> v2", r)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	e.expectServing(app, "v2")
	for _, c := range e.containers(app) {
		if c.Labels[deploy.LabelVersion] == "v2" && (c.Labels[deploy.LabelDrain] != "probe" || c.Healthcheck == nil || c.Healthcheck.Test[1] != deploy.ProbePath) {
			t.Errorf("v2 container made by the cgo build: labels %v healthcheck %+v; want the probe at %s", c.Labels, c.Healthcheck, deploy.ProbePath)
		}
	}

	// The cgo build's plan of the next run, as check shows it: the
	// containers are deployctl's, with the probe; nothing to fix.
	if code, out, _ := e.runBuild(cgoBin, "check", "--app", app); code != 0 || strings.Contains(out, "not created by deployctl") {
		t.Errorf("check with the cgo build after its rollout: exit %d\n%s", code, out)
	}

	keep = startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh = startLoad(t, e.traefik.EntryURL, app+".test", 100, false)
	r = e.deployctlBuild(cgoBin, "rollback", "--app", app)
	expectDrained("rollback v2 -> v1", r)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	e.expectServing(app, "v1")
}

func dynamicallyLinked(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}
