package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/compose"
	"github.com/deployctl/deployctl/internal/testenv"
)

// composeCLI runs the Docker Compose v2 CLI (built from modules:
// testenv.ComposeBinary) in dir with env added, against the engine the
// tests use.
type composeCLI struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func newComposeCLI(t *testing.T, dir string, env ...string) *composeCLI {
	return &composeCLI{t: t, bin: testenv.ComposeBinary(t, testenv.ComposeVersion), dir: dir, env: env}
}

func (c *composeCLI) run(args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *composeCLI) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// writeProject writes a compose project of one service web, on the
// test's Traefik network (external: the test creates no network), with
// an env_file, an environment, labels and an update_config, and returns
// its directory.
func writeProject(t *testing.T, app, network string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), app)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf(`name: %[1]s
services:
  web:
    image: ${REPO}:${TAG}
    labels:
      traefik.enable: "true"
      traefik.http.routers.%[1]s.rule: Host(`+"`%[1]s.test`"+`)
    env_file: web.env
    environment:
      APP_VERSION: ${TAG}
    networks: [proxy]
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
networks:
  proxy:
    external: true
    name: %[2]s
`, app, network)
	for name, content := range map[string]string{"compose.yaml": file, "web.env": "GREETING=hello\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestComposeLabelsAndHashMatchCompose: the labels deployctl's compose
// package computes for a service (config hash included) are those the real
// `docker compose up` (v2.40.3, built from modules) puts on the containers
// it makes from the same files and variables: so the containers deployctl
// makes for a compose service are, to a later `docker compose up`, up to
// date. A compose-go other than the one compose links would change the
// hash (compose: TestServiceHashGolden).
func TestComposeLabelsAndHashMatchCompose(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1")
	app := e.appName("cmp")
	dir := writeProject(t, app, e.network)
	c := newComposeCLI(t, dir, "REPO="+repo, "TAG=v1")
	t.Cleanup(func() {
		if out, err := c.run("down", "--timeout", "1"); err != nil {
			t.Errorf("docker compose down: %v\n%s", err, out)
		}
	})
	c.must("up", "-d", "--wait", "--wait-timeout", "60")

	s, err := compose.Load(context.Background(), compose.LoadOptions{ProjectDir: dir, Env: []string{"REPO=" + repo}}, "web", "v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", compose.LabelProject+"="+app)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("docker compose up made %d containers, want 2", len(list.Items))
	}
	for _, ct := range list.Items {
		ins, err := e.cli.ContainerInspect(ctx, ct.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := ins.Container.Config.Labels
		n := 0
		fmt.Sscan(got[compose.LabelNumber], &n)
		want, err := compose.ContainerLabels(s, n, ins.Container.Image, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("container %s: label %s = %q, compose set %q", ins.Container.Name, k, v, got[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok && strings.HasPrefix(k, "com.docker.compose.") {
				t.Errorf("container %s: compose set label %s = %q, deployctl does not", ins.Container.Name, k, got[k])
			}
		}
		if name := compose.ContainerName(s, n); strings.TrimPrefix(ins.Container.Name, "/") != name {
			t.Errorf("container name %s, deployctl names it %s", ins.Container.Name, name)
		}
	}
	// And with another version, another hash: up would recreate.
	other, err := compose.Load(ctx, compose.LoadOptions{ProjectDir: dir, Env: []string{"REPO=" + repo}}, "web", "v2")
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := compose.ServiceHash(s.Config)
	h2, _ := compose.ServiceHash(other.Config)
	if h1 == h2 {
		t.Errorf("the same hash for v1 and v2: %s", h1)
	}
}
