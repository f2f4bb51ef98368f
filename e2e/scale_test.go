package e2e

import (
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// TestScaleUpAndDown: one v1 container scaled to 3 and back to 1 under
// load through Traefik: no failed request; each of the 3 replicas answered
// requests; Traefik never had fewer UP servers than before each scale,
// Docker never more running containers than 3 + the surge; down removes the
// two oldest and keeps the newest.
func TestScaleUpAndDown(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1")
	app := e.appName("scale")
	e.firstDeploy(app, repo, "v1")
	first := e.containers(app)[0]

	keep := startLoad(t, e.traefik.EntryURL, app+".test", 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, app+".test", 50, false)
	s := e.sample(app)
	time.Sleep(300 * time.Millisecond)
	up := e.deployctl("scale", "--app", app, "--replicas", "3", "--max-surge", "1")
	// Long enough for the load to reach every replica.
	time.Sleep(2 * time.Second)
	s.expect(t, 1, 3+1)
	if up.code != 0 {
		t.Fatalf("scale up: exit %d", up.code)
	}
	if got := e.runningVersions(app); got["v1"] != 3 || len(got) != 1 {
		t.Fatalf("running %v, want 3 v1", got)
	}
	var replicas []deploy.Container
	for _, c := range e.containers(app) {
		if c.Running() {
			replicas = append(replicas, c)
		}
	}

	s = e.sample(app)
	down := e.deployctl("scale", "--app", app, "--replicas", "1")
	time.Sleep(300 * time.Millisecond)
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	// Budget of 1 replica, surge 25% (1), unavailable 0: at least 1 UP,
	// and no container started.
	s.expect(t, 1, 3)
	for _, c := range replicas {
		host := c.ID[:12]
		n := keep.answered(host) + fresh.answered(host)
		t.Logf("replica %s (%s) answered %d requests", c.Name, host, n)
		if n == 0 {
			t.Errorf("replica %s answered no request", c.Name)
		}
	}
	if down.code != 0 {
		t.Fatalf("scale down: exit %d", down.code)
	}
	left := e.containers(app)
	if len(left) != 1 || !left[0].Running() || left[0].ID == first.ID {
		t.Errorf("after scaling down, containers %v; want only the newest running, the two oldest removed", names(left))
	}
	if res := down.json.Result; res == nil || len(res.NewContainers) != 1 || len(res.Old) != 2 {
		t.Errorf("result %+v", res)
	}
	e.expectServing(app, "v1")
	noop := e.deployctl("scale", "--app", app, "--replicas", "1")
	if noop.code != 0 {
		t.Errorf("scale to the current count: exit %d", noop.code)
	}
}

func names(cs []deploy.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+" "+c.State)
	}
	return out
}
