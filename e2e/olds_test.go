package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
)

// Two containers of the old version serve at once (as after an earlier run
// that crashed half-way, or a container started by hand): the rollout
// drains and stops both, and no request fails.
func TestTwoOldContainersDrainedAndStopped(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	app := e.appName("twoold")
	// Gradually: containers with their own routers, as deployctl made
	// them before its first deploy split the routing (and docker run or
	// compose make them).
	e.firstDeploy(app, repo, "v1", "--switch", "gradual")
	first := e.containers(app)[0]
	// A second v1 container: redeploy v1 (gradually: both in the
	// service app@docker, each with its own routers), then start the
	// first one again and set its drain marker back to serve. The
	// rollout to v2 then switches atomically, the default.
	if r := e.deployctl("rollout", "--image", repo, "--version", "v1", "--app", app, "--force", "--switch", "gradual"); r.code != 0 {
		t.Fatalf("redeploy of v1: exit %d", r.code)
	}
	ctx := context.Background()
	if _, err := e.cli.ContainerStart(ctx, first.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := runtime(t).CopyFiles(ctx, first.ID, []deploy.File{{Path: deploy.MarkerPath, Mode: 0o644, Data: []byte(deploy.MarkerServe)}}); err != nil {
		t.Fatal(err)
	}
	var olds []deploy.Container
	deadline := time.Now().Add(30 * time.Second)
	for {
		olds = olds[:0]
		for _, c := range e.containers(app) {
			if c.Running() && c.Health == "healthy" {
				olds = append(olds, c)
			}
		}
		svc, err := e.api.Service(ctx, app+"@docker")
		if len(olds) == 2 && err == nil && len(svc.Servers) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two v1 containers never both served: %d healthy, Traefik: %+v %v", len(olds), svc.Servers, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
	time.Sleep(300 * time.Millisecond)
	r := e.deployctl("rollout", "--image", repo, "--version", "v2", "--app", app)
	if r.code != 0 {
		t.Fatalf("rollout v1 (two containers) -> v2: exit %d", r.code)
	}
	time.Sleep(300 * time.Millisecond)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	e.expectServing(app, "v2")
	if res := r.json.Result; res == nil || len(res.Old) != 2 {
		t.Errorf("result lists old containers %+v, want both v1 containers", res)
	}
	for _, c := range e.containers(app) {
		for _, o := range olds {
			if c.ID == o.ID && c.State != "exited" {
				t.Errorf("old container %s is %s, want exited", c.Name, c.State)
			}
		}
	}
}
