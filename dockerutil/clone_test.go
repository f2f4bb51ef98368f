package dockerutil

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/deployctl/deployctl/deploy"
)

func template() (*container.InspectResponse, *image.InspectResponse) {
	imgHealth := &container.HealthConfig{Test: []string{"CMD", "/app", "probe"}, Interval: 5 * time.Second}
	img := &image.InspectResponse{ID: "sha256:old", Config: &dockerspec.DockerOCIImageConfig{
		ImageConfig: ocispec.ImageConfig{
			Env:          []string{"PATH=/usr/bin", "APP_VERSION=v1"},
			Cmd:          []string{"/app", "serve"},
			WorkingDir:   "/srv",
			Labels:       map[string]string{"org.opencontainers.image.version": "v1"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Volumes:      map[string]struct{}{"/data": {}},
		},
		DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{Healthcheck: imgHealth},
	}}
	stop := 20
	tmpl := &container.InspectResponse{
		ID:    "0123456789abcdef0123",
		Name:  "/web-v1-aaaaaa",
		Image: "sha256:old",
		Config: &container.Config{
			Hostname:     "0123456789ab",
			Env:          []string{"PATH=/usr/bin", "APP_VERSION=v1", "DATABASE_URL=postgres://db"},
			Cmd:          []string{"/app", "serve"},
			WorkingDir:   "/srv",
			Image:        "web:v1",
			Labels:       map[string]string{"org.opencontainers.image.version": "v1", "traefik.enable": "true", "deployctl.app": "web", "deployctl.drain": "probe"},
			ExposedPorts: network.PortSet{network.MustParsePort("8080/tcp"): {}, network.MustParsePort("9090/tcp"): {}},
			Volumes:      map[string]struct{}{"/data": {}},
			Healthcheck:  imgHealth,
			StopTimeout:  &stop,
		},
		HostConfig: &container.HostConfig{
			NetworkMode:   "proxy",
			Binds:         []string{"/srv/uploads:/uploads", "cache:/cache"},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways},
			PortBindings:  network.PortMap{network.MustParsePort("8080/tcp"): {{HostPort: "8080"}}},
			Links:         []string{"/db:/web-v1-aaaaaa/database"},
			MaskedPaths:   []string{"/proc/kcore"},
		},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			"proxy":   {Aliases: []string{"0123456789ab", "web"}, IPAddress: netip.MustParseAddr("172.18.0.3")},
			"backend": {Aliases: []string{"web-v1-aaaaaa", "api"}, IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: netip.MustParseAddr("172.19.0.9")}},
		}},
	}
	return tmpl, img
}

func TestCloneTakesContainerConfigNotOldImageDefaults(t *testing.T) {
	tmpl, img := template()
	p, err := buildCreate(tmpl, img, deploy.CreateSpec{
		Image: "web:v2", Labels: map[string]string{"deployctl.app": "web", "deployctl.version": "v2"},
		Env: []string{"DATABASE_URL=postgres://db2", "NEW=1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := p.config
	if c.Image != "web:v2" || c.Hostname != "" {
		t.Errorf("image %q hostname %q", c.Image, c.Hostname)
	}
	// The old image's env, cmd, workdir, labels, ports, volumes and
	// healthcheck must not be pinned onto the new container.
	if !slices.Equal(c.Env, []string{"DATABASE_URL=postgres://db2", "NEW=1"}) {
		t.Errorf("env %q", c.Env)
	}
	if c.Cmd != nil || c.WorkingDir != "" || c.Healthcheck != nil {
		t.Errorf("cmd %q workdir %q healthcheck %+v: want the new image's", c.Cmd, c.WorkingDir, c.Healthcheck)
	}
	if _, ok := c.Labels["org.opencontainers.image.version"]; ok {
		t.Errorf("old image label copied: %v", c.Labels)
	}
	if c.Labels["traefik.enable"] != "true" || c.Labels["deployctl.version"] != "v2" || c.Labels["deployctl.drain"] != "" {
		t.Errorf("labels %v", c.Labels)
	}
	if len(c.ExposedPorts) != 1 || len(c.Volumes) != 0 {
		t.Errorf("ports %v volumes %v: want only the container's own 9090", c.ExposedPorts, c.Volumes)
	}
	if *c.StopTimeout != 20 {
		t.Errorf("stop timeout %d", *c.StopTimeout)
	}
	h := p.host
	if h.PortBindings != nil || h.MaskedPaths != nil {
		t.Errorf("port bindings %v masked %v", h.PortBindings, h.MaskedPaths)
	}
	if h.RestartPolicy.Name != container.RestartPolicyAlways || !slices.Equal(h.Binds, tmpl.HostConfig.Binds) {
		t.Errorf("restart %v binds %v", h.RestartPolicy, h.Binds)
	}
	if !slices.Equal(h.Links, []string{"db:database"}) {
		t.Errorf("links %v", h.Links)
	}
	// Networks: the primary at create, the other connected afterwards,
	// user aliases kept, Docker's own and the fixed IP dropped.
	if ep := p.netConfig.EndpointsConfig["proxy"]; ep == nil || !slices.Equal(ep.Aliases, []string{"web"}) {
		t.Errorf("primary endpoint %+v", p.netConfig.EndpointsConfig)
	}
	if len(p.extraNetworks) != 1 || p.extraNetworks[0].name != "backend" || !slices.Equal(p.extraNetworks[0].endpoint.Aliases, []string{"api"}) || p.extraNetworks[0].endpoint.IPAMConfig != nil {
		t.Errorf("extra networks %+v", p.extraNetworks)
	}
	joined := strings.Join(p.warnings, "\n")
	for _, want := range []string{"host port bindings", "8080->8080/tcp", "fixed IP address on network backend"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings lack %q:\n%s", want, joined)
		}
	}
	// The template itself is not modified.
	if tmpl.Config.Labels["deployctl.drain"] != "probe" || tmpl.HostConfig.PortBindings == nil {
		t.Errorf("template modified")
	}
}

func TestCloneOverrides(t *testing.T) {
	tmpl, img := template()
	hc := &deploy.Healthcheck{Test: []string{"CMD", "x"}, Interval: time.Second}
	p, err := buildCreate(tmpl, img, deploy.CreateSpec{
		Image: "web:v2", Volumes: []string{"/srv/new:/uploads:ro"}, Networks: []string{"proxy", "extra"},
		Healthcheck: hc, StopTimeout: 3 * time.Second, Restart: "on-failure:5",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.host.Binds, []string{"cache:/cache", "/srv/new:/uploads:ro"}) {
		t.Errorf("binds %v", p.host.Binds)
	}
	if p.config.Healthcheck.Interval != time.Second || *p.config.StopTimeout != 3 {
		t.Errorf("healthcheck %+v stop %d", p.config.Healthcheck, *p.config.StopTimeout)
	}
	if p.host.RestartPolicy.Name != container.RestartPolicyOnFailure || p.host.RestartPolicy.MaximumRetryCount != 5 {
		t.Errorf("restart %+v", p.host.RestartPolicy)
	}
	var extra []string
	for _, n := range p.extraNetworks {
		extra = append(extra, n.name)
	}
	if !slices.Equal(extra, []string{"backend", "extra"}) {
		t.Errorf("extra networks %v", extra)
	}
}

func TestCloneWithoutOldImageKeepsEverything(t *testing.T) {
	tmpl, _ := template()
	p, err := buildCreate(tmpl, nil, deploy.CreateSpec{Image: "web:v2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.config.Env) != 3 || p.config.Cmd == nil {
		t.Errorf("env %v cmd %v", p.config.Env, p.config.Cmd)
	}
}

func TestFirstDeployFromFlags(t *testing.T) {
	p, err := buildCreate(nil, nil, deploy.CreateSpec{
		Image: "web:v1", Networks: []string{"proxy", "db"}, Labels: map[string]string{"a": "b"},
		Env: []string{"X=1"}, Volumes: []string{"/data"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.host.NetworkMode != "proxy" || p.netConfig == nil || p.netConfig.EndpointsConfig["proxy"] == nil {
		t.Errorf("network mode %q config %+v", p.host.NetworkMode, p.netConfig)
	}
	if len(p.extraNetworks) != 1 || p.extraNetworks[0].name != "db" {
		t.Errorf("extra %+v", p.extraNetworks)
	}
	if p.host.RestartPolicy.Name != DefaultRestartPolicy || p.config.Labels["a"] != "b" || !slices.Equal(p.host.Binds, []string{"/data"}) {
		t.Errorf("host %+v config %+v", p.host, p.config)
	}
}

func TestBadVolumesAndRestart(t *testing.T) {
	for _, v := range []string{"relative", "a:b", "a:/b:ro:x"} {
		if _, err := buildCreate(nil, nil, deploy.CreateSpec{Image: "x:1", Volumes: []string{v}}); err == nil {
			t.Errorf("volume %q accepted", v)
		}
	}
	if _, err := buildCreate(nil, nil, deploy.CreateSpec{Image: "x:1", Restart: "sometimes"}); err == nil {
		t.Errorf("bad restart accepted")
	}
}

func TestRegistryAuth(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.json"
	writeFile(t, path, `{"auths":{"registry.example.com":{"auth":"dXNlcjpwYXNz"}}}`)
	if got := lookupAuth("registry.example.com/team/web:v1", path); got == "" {
		t.Errorf("no auth found")
	}
	if got := lookupAuth("web:v1", path); got != "" {
		t.Errorf("auth for Docker Hub from another registry's entry: %q", got)
	}
	if registryHost("localhost:5000/web") != "localhost:5000" || registryHost("team/web") != "https://index.docker.io/v1/" {
		t.Errorf("registryHost")
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A container's Env is its own environment, without what its image set:
// the values the engine redacts from relayed output.
func TestContainerEnvLeavesOutTheImages(t *testing.T) {
	ci, img := template()
	ci.Config.Env = []string{"PATH=/usr/bin", "API_KEY=k-123456", "LANG=C.UTF-8"}
	img.Config.Env = []string{"PATH=/usr/bin", "LANG=C.UTF-8"}
	if got := toContainer(*ci, img).Env; !slices.Equal(got, []string{"API_KEY=k-123456"}) {
		t.Errorf("Env %q, want only API_KEY", got)
	}
	if got := toContainer(*ci, nil).Env; len(got) != 3 {
		t.Errorf("image unknown: Env %q, want all of it", got)
	}
}

// A given configuration (a compose service's) is the new container's
// whole configuration, the spec's labels and env on top, its networks
// with their aliases, the first the primary one.
func TestCreateFromAGivenConfig(t *testing.T) {
	init := true
	pids := int64(100)
	cfg := &deploy.ContainerConfig{
		Env: []string{"A=1", "B=2"}, Labels: map[string]string{"traefik.enable": "true", "deployctl.app": "stale"},
		Command: []string{"serve", "--port", "8080"}, User: "1000", WorkingDir: "/app", StopSignal: "SIGINT",
		StopTimeout: 15 * time.Second, Healthcheck: &deploy.Healthcheck{Test: []string{"CMD", "/app", "probe"}},
		Restart: "unless-stopped", Networks: []deploy.NetworkAttachment{{Name: "shop_default", Aliases: []string{"web"}}, {Name: "proxy"}},
		Binds: []string{"/srv/data:/data:ro"}, Tmpfs: map[string]string{"/tmp": "size=64m"}, ReadOnly: true, Init: &init,
		CapDrop: []string{"ALL"}, DNS: []string{"10.0.0.53"}, Memory: 512 << 20, NanoCPUs: 1e9, PidsLimit: &pids,
		Expose: []string{"9090"}, Publish: []string{"8080/tcp"},
	}
	tmpl, err := given(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := buildCreate(tmpl, nil, deploy.CreateSpec{Image: "web:v2", Config: cfg, Labels: map[string]string{"deployctl.app": "web"}, Env: []string{"B=3"}})
	if err != nil {
		t.Fatal(err)
	}
	c, h := p.config, p.host
	if c.Image != "web:v2" || !slices.Equal(c.Env, []string{"A=1", "B=3"}) || c.Labels["deployctl.app"] != "web" || c.Labels["traefik.enable"] != "true" {
		t.Errorf("image %q env %v labels %v", c.Image, c.Env, c.Labels)
	}
	if !slices.Equal(c.Cmd, []string{"serve", "--port", "8080"}) || c.User != "1000" || c.WorkingDir != "/app" || c.StopSignal != "SIGINT" || c.StopTimeout == nil || *c.StopTimeout != 15 {
		t.Errorf("config %+v", c)
	}
	if c.Healthcheck == nil || !slices.Equal(c.Healthcheck.Test, []string{"CMD", "/app", "probe"}) {
		t.Errorf("healthcheck %+v", c.Healthcheck)
	}
	if h.RestartPolicy.Name != "unless-stopped" || !h.ReadonlyRootfs || h.Init == nil || !*h.Init || h.Memory != 512<<20 || h.NanoCPUs != 1e9 ||
		!slices.Equal(h.Binds, []string{"/srv/data:/data:ro"}) || h.Tmpfs["/tmp"] != "size=64m" || len(h.DNS) != 1 || !slices.Equal(h.CapDrop, []string{"ALL"}) {
		t.Errorf("host %+v", h)
	}
	if h.NetworkMode != "shop_default" || p.netConfig == nil || !slices.Equal(p.netConfig.EndpointsConfig["shop_default"].Aliases, []string{"web"}) {
		t.Errorf("primary network %q %+v", h.NetworkMode, p.netConfig)
	}
	if len(p.extraNetworks) != 1 || p.extraNetworks[0].name != "proxy" {
		t.Errorf("extra networks %+v", p.extraNetworks)
	}
	// expose, and ports without a host port: a host port Docker picks,
	// which the old and the new container can both have.
	if _, ok := c.ExposedPorts[network.MustParsePort("9090/tcp")]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if b := h.PortBindings[network.MustParsePort("8080/tcp")]; len(b) != 1 || b[0].HostPort != "" || len(h.PortBindings) != 1 {
		t.Errorf("port bindings %v, want 8080/tcp on a host port Docker picks", h.PortBindings)
	}
	for _, bad := range []*deploy.ContainerConfig{{DNS: []string{"dns.example"}}, {Restart: "sometimes"}, {Expose: []string{"http"}}} {
		if _, err := given(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
