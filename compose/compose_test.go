package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// project writes files (name -> content) into a new directory named dir
// and returns its path.
func project(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), dir)
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func mustLoad(t *testing.T, o LoadOptions, service, version string) *Service {
	t.Helper()
	if o.Env == nil {
		o.Env = []string{} // not this process's: the tests decide
	}
	s, err := Load(context.Background(), o, service, version)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const shopFile = `
services:
  web:
    image: registry.example.com/shop/web:${WEB_VERSION:-latest}
    labels:
      traefik.enable: "true"
      traefik.http.routers.web.rule: Host(` + "`shop.test`" + `)
    env_file: web.env
    environment:
      RAILS_ENV: production
    depends_on:
      db:
        condition: service_healthy
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        order: start-first
  db:
    image: postgres:16
  worker:
    image: registry.example.com/shop/web:${WEB_VERSION:-latest}
    profiles: [jobs]
`

// The version goes into the variable of the image's tag, so the image and
// the config hash are those of WEB_VERSION=<version> docker compose up;
// env_file is folded into environment as compose does before it hashes;
// the project name is the directory's.
func TestLoadSetsTheImagesTagVariableToTheVersion(t *testing.T) {
	dir := project(t, "Shop_App", map[string]string{
		"compose.yaml": shopFile,
		"web.env":      "SECRET_KEY_BASE=abc\n",
		".env":         "WEB_VERSION=old\n",
	})
	s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "3f9ace5")
	if s.Config.Image != "registry.example.com/shop/web:3f9ace5" || !slices.Equal(s.VersionVars, []string{"WEB_VERSION"}) {
		t.Errorf("image %q, version variables %v", s.Config.Image, s.VersionVars)
	}
	if s.Project.Name != "shop_app" {
		t.Errorf("project %q, want the directory's name, normalized", s.Project.Name)
	}
	env := s.Config.Environment
	if v := env["SECRET_KEY_BASE"]; v == nil || *v != "abc" || len(s.Config.EnvFiles) != 0 {
		t.Errorf("environment %v, env_file %v: want web.env folded in", env, s.Config.EnvFiles)
	}
	if s.Replicas() != 3 {
		t.Errorf("replicas %d", s.Replicas())
	}
	// A service of a profile is there when named, as with docker compose up worker.
	if w := mustLoad(t, LoadOptions{ProjectDir: dir}, "worker", "v2"); w.Config.Image != "registry.example.com/shop/web:v2" {
		t.Errorf("worker image %q", w.Config.Image)
	}
}

// An image without a variable in its tag gets the version as its tag.
func TestLoadTagsAnImageWithoutAVariable(t *testing.T) {
	for raw, want := range map[string]string{
		"web":                           "web:v2",
		"web:latest":                    "web:v2",
		"registry:5000/team/web":        "registry:5000/team/web:v2",
		"registry:5000/team/web:stable": "registry:5000/team/web:v2",
	} {
		dir := project(t, "p", map[string]string{"compose.yaml": "services:\n  web:\n    image: " + raw + "\n"})
		s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v2")
		if s.Config.Image != want || len(s.VersionVars) != 0 {
			t.Errorf("%s: image %q variables %v, want %q", raw, s.Config.Image, s.VersionVars, want)
		}
	}
}

func TestTagVariables(t *testing.T) {
	for raw, want := range map[string][]string{
		"web:${TAG}":                     {"TAG"},
		"web:$TAG":                       {"TAG"},
		"web:${TAG:-latest}":             {"TAG"},
		"${REGISTRY}/web:${TAG?set TAG}": {"TAG"},
		"${REGISTRY:-r:5000}/web":        nil,
		"web:${A}-${B}-${A}":             {"A", "B"},
		"web@sha256:${DIGEST}":           nil,
	} {
		if got := tagVariables(raw); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", raw, got, want)
		}
	}
}

// The project name as compose decides it: -p, else COMPOSE_PROJECT_NAME,
// else the file's name:, else the directory's. Several -f merge, later
// ones over earlier ones.
func TestLoadProjectNameAndFiles(t *testing.T) {
	dir := project(t, "dirname", map[string]string{
		"compose.yaml":      "services:\n  web:\n    image: web\n    labels:\n      a: base\n",
		"compose.prod.yaml": "name: named\nservices:\n  web:\n    labels:\n      a: prod\n",
	})
	files := []string{filepath.Join(dir, "compose.yaml"), filepath.Join(dir, "compose.prod.yaml")}
	cases := []struct {
		o    LoadOptions
		want string
	}{
		{LoadOptions{Files: files[:1]}, "dirname"},
		{LoadOptions{Files: files}, "named"},
		{LoadOptions{Files: files, Env: []string{"COMPOSE_PROJECT_NAME=fromenv"}}, "fromenv"},
		{LoadOptions{Files: files, Project: "flag", Env: []string{"COMPOSE_PROJECT_NAME=fromenv"}}, "flag"},
	}
	for _, tc := range cases {
		s := mustLoad(t, tc.o, "web", "v2")
		if s.Project.Name != tc.want {
			t.Errorf("%+v: project %q, want %q", tc.o, s.Project.Name, tc.want)
		}
		if len(tc.o.Files) == 2 && s.Config.Labels["a"] != "prod" {
			t.Errorf("labels %v: the second file's should win", s.Config.Labels)
		}
	}
}

func TestLoadNamesTheServicesWhenOneIsMissing(t *testing.T) {
	dir := project(t, "p", map[string]string{"compose.yaml": shopFile})
	_, err := Load(context.Background(), LoadOptions{ProjectDir: dir, Env: []string{}}, "api", "v2")
	if err == nil || !strings.Contains(err.Error(), `no service "api"`) || !strings.Contains(err.Error(), "db, web, worker") {
		t.Errorf("error %v: want the missing service and the project's services named", err)
	}
}

// The config hash's input, byte for byte: compose v2.40.3 hashes the JSON
// of compose-go v2.9.1's ServiceConfig without build, pull_policy, scale,
// deploy.replicas, depends_on and profiles. Another compose-go (v2.16
// moved the fields: docs/research/compose.md) changes it, and every
// container compose made would look changed: this test fails first.
func TestServiceHashGolden(t *testing.T) {
	dir := project(t, "p", map[string]string{"compose.yaml": shopFile, "web.env": "K=v\n"})
	s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v2")
	b, err := hashInput(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"command":null,"deploy":{"update_config":{"parallelism":1,"order":"start-first"},"resources":{},"placement":{}},"entrypoint":null,"environment":{"K":"v","RAILS_ENV":"production"},"image":"registry.example.com/shop/web:v2","labels":{"traefik.enable":"true","traefik.http.routers.web.rule":"Host(` + "`shop.test`" + `)"},"networks":{"default":null}}`
	if string(b) != want {
		t.Errorf("hashed:\n%s\nwant:\n%s", b, want)
	}
	if s.Config.Deploy.Replicas == nil || *s.Config.Deploy.Replicas != 3 {
		t.Errorf("the hash changed the service's deploy.replicas: %v", s.Config.Deploy.Replicas)
	}
	h1, _ := ServiceHash(s.Config)
	other := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v3")
	if h2, _ := ServiceHash(other.Config); h1 == h2 || len(h1) != 64 {
		t.Errorf("hashes %q %q: want 64 hex digits, different for another image", h1, h2)
	}
}

func TestContainerLabels(t *testing.T) {
	dir := project(t, "p", map[string]string{"compose.yaml": shopFile, "web.env": "K=v\n"})
	s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v2")
	l, err := ContainerLabels(s, 2, "sha256:abc", nil)
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := ServiceHash(s.Config)
	want := map[string]string{
		LabelProject: "p", LabelService: "web", LabelNumber: "2", LabelOneoff: "False",
		LabelConfigHash: hash, LabelImage: "sha256:abc", LabelVersion: ComposeVersion,
		LabelWorkingDir: dir, LabelConfigFiles: filepath.Join(dir, "compose.yaml"),
		LabelDependsOn: "db:service_healthy:false", "traefik.enable": "true",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %q, want %q", k, l[k], v)
		}
	}
	if _, ok := l[LabelEnvFile]; ok {
		t.Errorf("%s set without --env-file", LabelEnvFile)
	}
	if ContainerName(s, 2) != "p-web-2" {
		t.Errorf("name %q", ContainerName(s, 2))
	}
}

// What cannot run twice side by side is refused, with the field and the
// fix named.
func TestRefuse(t *testing.T) {
	cases := map[string]struct{ service, field string }{
		"container_name: web-1":        {"    container_name: web-1\n", "container_name"},
		"published host port":          {"    ports: [\"8080:80\"]\n", "ports"},
		"network_mode: host":           {"    network_mode: host\n", "network_mode"},
		"build only":                   {"    build: .\n", "build"},
		"a port without a host port":   {"    ports: [\"80\"]\n", ""},
		"a routed service, as it must": {"    labels: {traefik.enable: \"true\"}\n", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			image := "    image: web\n"
			if tc.field == "build" {
				image = ""
			}
			dir := project(t, "p", map[string]string{"compose.yaml": "services:\n  web:\n" + image + tc.service})
			s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v2")
			err := Refuse(s)
			var re *RefusalError
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.field != "" && (!errors.As(err, &re) || re.Field != tc.field || re.Fix == ""):
				t.Errorf("error %v, want a refusal of %s with a fix", err, tc.field)
			}
		})
	}
}

// The service's configuration as the containers docker compose up makes
// would have it.
func TestContainerConfig(t *testing.T) {
	dir := project(t, "shop", map[string]string{
		"compose.yaml": `
services:
  web:
    image: web
    command: ["serve", "--port", "8080"]
    user: "1000"
    working_dir: /app
    environment:
      A: "1"
      BARE:
    labels: {traefik.enable: "true"}
    healthcheck:
      test: ["CMD", "/app", "probe"]
      interval: 2s
      retries: 3
    stop_signal: SIGINT
    stop_grace_period: 15s
    expose: ["9090"]
    ports: ["8080"]
    read_only: true
    tmpfs: ["/tmp:size=64m"]
    volumes:
      - data:/data
      - ./static:/static:ro
    secrets: [key]
    configs: [{source: conf, target: /etc/app.conf}]
    networks:
      front: {aliases: [www]}
      back: {priority: 10}
    deploy:
      resources: {limits: {memory: 256M, cpus: "0.5"}}
      restart_policy: {condition: on-failure, max_attempts: 3}
volumes:
  data: {}
networks:
  front: {}
  back: {external: true, name: shared-back}
secrets:
  key: {file: ./key.txt}
configs:
  conf: {file: ./app.conf}
`,
		"key.txt": "k", "app.conf": "c",
	})
	s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v2")
	c, err := s.ContainerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Command, []string{"serve", "--port", "8080"}) || c.User != "1000" || c.WorkingDir != "/app" || c.StopSignal != "SIGINT" || c.StopTimeout != 15e9 || !c.ReadOnly {
		t.Errorf("config %+v", c)
	}
	if !slices.Equal(c.Env, []string{"A=1", "BARE"}) || c.Labels["traefik.enable"] != "true" {
		t.Errorf("env %v labels %v", c.Env, c.Labels)
	}
	if c.Healthcheck == nil || c.Healthcheck.Interval != 2e9 || c.Healthcheck.Retries != 3 || !slices.Equal(c.Healthcheck.Test, []string{"CMD", "/app", "probe"}) {
		t.Errorf("healthcheck %+v", c.Healthcheck)
	}
	if c.Memory != 256<<20 || c.NanoCPUs != 5e8 || c.Restart != "on-failure:3" || c.Tmpfs["/tmp"] != "size=64m" {
		t.Errorf("memory %d cpus %d restart %q tmpfs %v", c.Memory, c.NanoCPUs, c.Restart, c.Tmpfs)
	}
	wantBinds := []string{"shop_data:/data:rw", filepath.Join(dir, "static") + ":/static:ro", filepath.Join(dir, "key.txt") + ":/run/secrets/key:ro", filepath.Join(dir, "app.conf") + ":/etc/app.conf:ro"}
	if !slices.Equal(c.Binds, wantBinds) {
		t.Errorf("binds\n %q\nwant\n %q", c.Binds, wantBinds)
	}
	if !slices.Equal(c.Expose, []string{"9090"}) || !slices.Equal(c.Publish, []string{"8080/tcp"}) {
		t.Errorf("expose %v publish %v, want 9090 and 8080/tcp (on a host port Docker picks)", c.Expose, c.Publish)
	}
	if len(c.Networks) != 2 || c.Networks[0].Name != "shared-back" || c.Networks[1].Name != "shop_front" || !slices.Equal(c.Networks[1].Aliases, []string{"web", "www"}) {
		t.Errorf("networks %+v: want shared-back (priority 10) first, then shop_front with aliases web, www", c.Networks)
	}
}

// A field deployctl does not carry over is named, not dropped.
func TestContainerConfigRefusesWhatItDoesNotCarryOver(t *testing.T) {
	dir := project(t, "p", map[string]string{"compose.yaml": "services:\n  web:\n    image: web\n    ulimits: {nofile: 1024}\n    pid: host\n"})
	s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v2")
	_, err := s.ContainerConfig()
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !slices.Contains(ue.Fields, "ulimits") || !slices.Contains(ue.Fields, "pid") {
		t.Errorf("error %v, want ulimits and pid named", err)
	}
}

// Interpolated values where the schema wants a number (replicas:
// ${N:-2}) load: the image is read before interpolation without the
// schema's check.
func TestLoadWithVariablesWhereNumbersGo(t *testing.T) {
	dir := project(t, "p", map[string]string{"compose.yaml": "services:\n  web:\n    image: web:${TAG}\n    deploy:\n      replicas: ${WEB_REPLICAS:-2}\n"})
	s := mustLoad(t, LoadOptions{ProjectDir: dir}, "web", "v2")
	if s.Config.Image != "web:v2" || s.Replicas() != 2 {
		t.Errorf("image %q replicas %d", s.Config.Image, s.Replicas())
	}
}
