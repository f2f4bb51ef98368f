package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/compose"
	"github.com/deployctl/deployctl/deploy"
)

// composeProject is a compose project of two services on the test's
// Traefik network: web, routed by Traefik, with 3 replicas, and db, a
// database-like dependency of web on a project network with a named
// volume; updateConfig is web's deploy.update_config body ("" for none).
type composeProject struct {
	name, dir, file string
	repo            string
	cli             *composeCLI
}

func (e *env) composeProject(base, repo, updateConfig string) *composeProject {
	return e.composeProjectWith(base, repo, updateConfig, "")
}

// composeProjectWith is composeProject with webExtra added to web's
// definition (indented as its keys).
func (e *env) composeProjectWith(base, repo, updateConfig, webExtra string) *composeProject {
	e.t.Helper()
	name := e.appName(base)
	dir := filepath.Join(e.t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	update := ""
	if updateConfig != "" {
		update = "      update_config:\n" + updateConfig
	}
	file := fmt.Sprintf(`name: %[1]s
services:
  web:
    image: ${REPO}:${TAG}
    labels:
      traefik.enable: "true"
      traefik.http.routers.%[1]s.rule: Host(`+"`%[1]s.test`"+`)
      traefik.http.services.%[1]s.loadbalancer.server.port: "8080"
      traefik.docker.network: %[2]s
    environment:
      APP_VERSION: ${TAG}
    depends_on: [db]
    networks: [proxy, backend]
    deploy:
      replicas: 3
%[3]s
%[4]s
  db:
    image: ${REPO}:v1
    networks: [backend]
    volumes: [dbdata:/data]
networks:
  proxy:
    external: true
    name: %[2]s
  backend: {}
volumes:
  dbdata: {}
`, name, e.network, update, webExtra)
	path := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		e.t.Fatal(err)
	}
	p := &composeProject{name: name, dir: dir, file: path, repo: repo, cli: newComposeCLI(e.t, dir, "REPO="+repo)}
	e.cleanupApp(p.app())
	e.t.Cleanup(func() {
		// The file needs its image's tag variable to load.
		p.cli.withEnv("TAG=cleanup").run("down", "--remove-orphans", "--volumes", "--timeout", "1")
		// What is left, whatever compose says: the project's containers,
		// networks and volumes, by compose's labels.
		ctx := context.Background()
		byProject := client.Filters{}.Add("label", compose.LabelProject+"="+name)
		list, _ := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: byProject})
		for _, c := range list.Items {
			e.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
		if nets, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: byProject}); err == nil {
			for _, n := range nets.Items {
				if _, err := e.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
					e.t.Errorf("removing network %s of compose project %s: %v", n.Name, name, err)
				}
			}
		}
		if vols, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: byProject}); err == nil {
			for _, v := range vols.Items {
				e.cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
			}
		}
	})
	return p
}

// app is deployctl's app of the project's web service.
func (p *composeProject) app() string { return p.name + "-web" }

// host is what Traefik routes to web.
func (p *composeProject) host() string { return p.name + ".test" }

// up runs docker compose up -d with web's image at tag.
func (p *composeProject) up(t *testing.T, tag string) {
	t.Helper()
	out, err := p.cli.withEnv("TAG="+tag).run("up", "-d", "--wait", "--wait-timeout", "90")
	if err != nil {
		t.Fatalf("TAG=%s docker compose up -d: %v\n%s", tag, err, out)
	}
}

func (c *composeCLI) withEnv(env ...string) *composeCLI {
	d := *c
	d.env = append(slices.Clone(c.env), env...)
	return &d
}

// running are the project's running containers of service by ID, with
// their names and versions (the TAG of web's APP_VERSION).
func (e *env) composeRunning(project, service string) map[string]string {
	e.t.Helper()
	ctx := context.Background()
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{Filters: client.Filters{}.
		Add("label", compose.LabelProject+"="+project).Add("label", compose.LabelService+"="+service).Add("label", compose.LabelOneoff+"=False")})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range list.Items {
		out[c.ID] = strings.TrimPrefix(c.Names[0], "/") + " " + c.Image
	}
	return out
}

// waitServers waits until Traefik routes host to n servers.
func (e *env) waitServers(app string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		svc, err := e.routedService(context.Background(), app)
		if err == nil && len(svc.Servers) == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Traefik never listed %d servers of %s: %+v %v", n, app, svc.Servers, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// composeRolloutUnderLoad runs deployctl with args under load through
// Traefik, and fails the test on any failed request or a non-zero exit.
func (e *env) composeRolloutUnderLoad(t *testing.T, p *composeProject, what string, args ...string) result {
	t.Helper()
	keep := startLoad(t, e.traefik.EntryURL, p.host(), 100, true)
	fresh := startLoad(t, e.traefik.EntryURL, p.host(), 50, false)
	time.Sleep(300 * time.Millisecond)
	r := e.deployctl(args...)
	time.Sleep(300 * time.Millisecond)
	t.Logf("%s: keep-alive %d of %d failed, fresh %d of %d failed", what, keep.failed.Load(), keep.sent.Load(), fresh.failed.Load(), fresh.sent.Load())
	keep.expectNoFailures(t)
	fresh.expectNoFailures(t)
	if r.code != 0 {
		t.Fatalf("%s: exit %d", what, r.code)
	}
	return r
}

// TestComposeRollout: a compose project of two services, web (3
// replicas, routed by Traefik) and db, made by a plain `docker compose up
// -d`; then, under load through Traefik, with update_config parallelism
// 1, parallelism 2 and none (the atomic switch):
//   - the first deployctl rollout after compose made the containers (v1
//     -> v2): 0 failed;
//   - another (v2 -> v3), and a rollback (to v2): 0 failed;
//   - `TAG=v2 docker compose up -d` then recreates nothing (the running
//     containers' IDs are unchanged; db's too) and `docker compose ps`
//     lists deployctl's v2 containers;
//   - `docker compose down` leaves no container of web or db behind but
//     the route container, a one-off of web, which `down
//     --remove-orphans` removes (docs/design.md).
//
// Beside them, what users do today: `TAG=v2 docker compose up -d` under
// the same load, its failures counted and reported.
func TestComposeRollout(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3")

	t.Run("baseline-compose-up", func(t *testing.T) {
		e := e.with(t)
		p := e.composeProject("cbase", repo, "")
		p.up(t, "v1")
		e.waitServers(p.name, 3)
		keep := startLoad(t, e.traefik.EntryURL, p.host(), 100, true)
		fresh := startLoad(t, e.traefik.EntryURL, p.host(), 50, false)
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		p.up(t, "v2")
		took := time.Since(start)
		time.Sleep(time.Second)
		keep.finish()
		fresh.finish()
		// Reported, not asserted: it is expected to lose some.
		t.Logf("BASELINE docker compose up -d (v1 -> v2, 3 replicas) in %s: keep-alive %d of %d failed, fresh %d of %d failed",
			took.Round(10*time.Millisecond), keep.failed.Load(), keep.sent.Load(), fresh.failed.Load(), fresh.sent.Load())
	})

	for _, tc := range []struct {
		name, updateConfig string
		steps              int
	}{
		{"parallelism-1", "        parallelism: 1\n        order: start-first\n", 3},
		{"parallelism-2", "        parallelism: 2\n", 2},
		{"atomic", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.withEnv("REPO=" + repo).with(t)
			p := e.composeProject("c"+strings.TrimPrefix(tc.name, "parallelism-"), repo, tc.updateConfig)
			p.up(t, "v1")
			e.waitServers(p.name, 3)
			dbBefore := e.composeRunning(p.name, "db")

			// compose's containers have no drain probe: the first rollout
			// switches atomically, in one step, whatever update_config says.
			r := e.composeRolloutUnderLoad(t, p, "first rollout after docker compose up (v1 -> v2)", "rollout", "-f", p.file, "web", "--version", "v2")
			if res := r.json.Result; res == nil || len(res.NewContainers) != 3 || len(res.Steps) > 1 || res.SwitchedAt == nil {
				t.Fatalf("first rollout after compose up: want 3 new containers switched atomically in one step: %+v", res)
			}
			e.expectServing(p.name, "v2")
			if tc.steps == 1 {
				// The plan and the preflight of a compose service.
				if r := e.deployctl("rollout", "-f", p.file, "web", "--version", "v3", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, `"version": "v3"`) {
					t.Errorf("--dry-run: exit %d\n%s", r.code, r.stdout)
				}
				if code, out, _ := e.run("check", "-f", p.file, "web"); code != 0 || !strings.Contains(out, p.app()+": nothing found") {
					t.Errorf("check: exit %d, want 0 (nothing found)\n%s", code, out)
				}
			}
			r = e.composeRolloutUnderLoad(t, p, "rollout v2 -> v3", "rollout", "-f", p.file, "web", "--version", "v3")
			if res := r.json.Result; res == nil || len(res.Steps) != tc.steps {
				t.Errorf("rollout v2 -> v3 with %s: want %d step(s): %+v", tc.name, tc.steps, res)
			}
			e.expectServing(p.name, "v3")
			e.composeRolloutUnderLoad(t, p, "rollback v3 -> v2", "rollback", "-f", p.file, "web")
			e.expectServing(p.name, "v2")

			// docker compose agrees: up recreates nothing, ps lists them.
			before := e.composeRunning(p.name, "web")
			if len(before) != 3 {
				t.Fatalf("running web containers %v, want 3", before)
			}
			for id, desc := range before {
				if !strings.HasSuffix(desc, ":v2") {
					t.Errorf("running web container %s (%s) is not v2", id[:12], desc)
				}
			}
			for _, c := range e.projectContainers(p.name) {
				t.Logf("before up: %s %s number=%s oneoff=%s hash=%.12s image=%.19s", c.Name, c.State, c.Labels[compose.LabelNumber], c.Labels[compose.LabelOneoff], c.Labels[compose.LabelConfigHash], c.Labels[compose.LabelImage])
			}
			p.up(t, "v2")
			after := e.composeRunning(p.name, "web")
			if !sameKeys(before, after) {
				t.Errorf("TAG=v2 docker compose up -d recreated web: before %v, after %v", before, after)
			}
			if dbAfter := e.composeRunning(p.name, "db"); !sameKeys(dbBefore, dbAfter) {
				t.Errorf("docker compose up -d recreated db: before %v, after %v", dbBefore, dbAfter)
			}
			e.expectServing(p.name, "v2")
			out := p.cli.withEnv("TAG=v2").must("ps", "--format", "json")
			listed := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var row struct{ ID, Service, Image string }
				if err := json.Unmarshal([]byte(line), &row); err != nil {
					t.Fatalf("docker compose ps --format json: %v\n%s", err, out)
				}
				if row.Service == "web" {
					listed[row.ID] = true
				}
			}
			for id := range after {
				if !listed[id[:12]] && !listed[id] {
					t.Errorf("docker compose ps does not list web container %s: %s", id[:12], out)
				}
			}

			// docker compose down removes it all (the retained containers
			// deployctl keeps for rollback included).
			p.cli.withEnv("TAG=v2").must("down", "--timeout", "2")
			// But the route container: a one-off of web, which only
			// down --remove-orphans removes (docs/design.md).
			left := e.projectContainers(p.name)
			for _, c := range left {
				if c.Labels[deploy.LabelRouteOf] != p.app() || c.Labels[compose.LabelOneoff] != "True" {
					t.Errorf("docker compose down left %s (%v)", c.Name, c.Labels)
				}
			}
			p.cli.withEnv("TAG=v2").must("down", "--remove-orphans", "--timeout", "2")
			left = e.projectContainers(p.name)
			for _, c := range left {
				t.Errorf("docker compose down left container %s (%s)", c.Name, c.State)
			}
			if cs := e.containers(p.app()); len(cs) != 0 {
				t.Errorf("docker compose down left %d containers of app %s", len(cs), p.app())
			}
		})
	}
}

// projectContainers are the containers, in any state, with the project's
// compose label.
func (e *env) projectContainers(project string) []deploy.Container {
	e.t.Helper()
	cs, err := e.rt.List(context.Background(), map[string]string{compose.LabelProject: project})
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}

func sameKeys(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// TestComposeFirstDeploy: deployctl's first deploy of a compose service
// makes what `docker compose up -d web` would (the project network and
// named volume as compose names and labels them, 3 replicas), health-gated
// and confirmed in Traefik; `docker compose up -d` then recreates none of
// web's containers.
func TestComposeFirstDeploy(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1")
	e = e.withEnv("REPO=" + repo)
	p := e.composeProject("cfirst", repo, "")
	// web's own named volume: made by deployctl as compose would.
	r := e.deployctl("rollout", "-f", p.file, "web", "--version", "v1")
	if r.code != 0 {
		t.Fatalf("first deploy: exit %d", r.code)
	}
	e.expectServing(p.name, "v1")
	ctx := context.Background()
	nets, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", compose.LabelProject+"="+p.name)})
	if err != nil {
		t.Fatal(err)
	}
	if len(nets.Items) != 1 || nets.Items[0].Name != p.name+"_backend" || nets.Items[0].Labels[compose.LabelNetwork] != "backend" {
		t.Errorf("project networks %+v, want %s_backend labelled as compose labels it", nets.Items, p.name)
	}
	web := e.composeRunning(p.name, "web")
	if len(web) != 3 {
		t.Fatalf("web containers %v, want 3", web)
	}
	p.up(t, "v1")
	if after := e.composeRunning(p.name, "web"); !sameKeys(web, after) {
		t.Errorf("docker compose up -d after deployctl's first deploy recreated web: before %v, after %v", web, after)
	}
	e.expectServing(p.name, "v1")
}

// TestComposePreDeploy: a release command, under load through Traefik.
// A failing --pre-deploy (exit 3) fails the rollout with exit 1 and its
// last output lines, before anything changed: the same v1 containers
// serve, no v2 and no release container is left. The one in the file's
// x-deployctl key then runs exactly once for a rollout of 3 replicas,
// in a container of the new image, before the new containers; compose's
// post_start and pre_stop hooks run in each new and each old container.
func TestComposePreDeploy(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	e = e.withEnv("REPO=" + repo)
	p := e.composeProjectWith("cpre", repo, "", `    volumes: ["./releases:/releases"]
    post_start:
      - command: [/app, release, -mark, /releases/started]
    pre_stop:
      - command: [/app, release, -mark, /releases/stopping]
    x-deployctl:
      pre-deploy: [release, -mark, /releases/ran]`)
	marks := filepath.Join(p.dir, "releases", "ran")
	if err := os.MkdirAll(filepath.Dir(marks), 0o777); err != nil {
		t.Fatal(err)
	}
	p.up(t, "v1")
	e.waitServers(p.name, 3)
	before := e.composeRunning(p.name, "web")

	keep := startLoad(t, e.traefik.EntryURL, p.host(), 100, true)
	r := e.deployctl("rollout", "-f", p.file, "web", "--version", "v2", "--pre-deploy", "release -mark /releases/ran -exit 3")
	keep.expectNoFailures(t)
	if r.code != 1 {
		t.Fatalf("failing pre-deploy: exit %d, want 1", r.code)
	}
	for _, want := range []string{"the pre-deploy command \"release -mark /releases/ran -exit 3\" exited with code 3", "release step=2 version=v2 exit=3", "nothing was changed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := e.composeRunning(p.name, "web"); !sameKeys(before, after) {
		t.Errorf("a failed pre-deploy changed web: before %v, after %v", before, after)
	}
	for _, c := range e.projectContainers(p.name) {
		if c.Labels[deploy.LabelReleaseOf] != "" || c.Labels[deploy.LabelVersion] == "v2" {
			t.Errorf("left after a failed pre-deploy: %s (%v)", c.Name, c.Labels)
		}
	}
	e.expectServing(p.name, "v1")

	r = e.composeRolloutUnderLoad(t, p, "rollout with the file's pre-deploy", "rollout", "-f", p.file, "web", "--version", "v2")
	e.expectServing(p.name, "v2")
	b, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "v2 ") || !strings.HasPrefix(lines[1], "v2 ") {
		t.Errorf("release runs %q: want the failed one and exactly one more, both of v2", lines)
	}
	// Compose's lifecycle hooks: post_start in each new container (and
	// in compose's own v1 ones), pre_stop in each old one before its stop.
	for file, want := range map[string]map[string]int{"started": {"v1": 3, "v2": 3}, "stopping": {"v1": 3}} {
		b, err := os.ReadFile(filepath.Join(p.dir, "releases", file))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			v, _, _ := strings.Cut(line, " ")
			got[v]++
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s hooks ran %v, want %v", file, got, want)
		}
	}
	if !strings.Contains(r.stderr, "release step=2 version=v2 exit=0") {
		t.Errorf("the release command's output is not in the progress:\n%s", r.stderr)
	}
	for _, c := range e.projectContainers(p.name) {
		if c.Labels[deploy.LabelReleaseOf] != "" {
			t.Errorf("release container %s left", c.Name)
		}
	}
}
