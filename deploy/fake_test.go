package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// world is a fake Docker host plus a fake Traefik docker provider: a
// running container is a server of the service its labels name while its
// Docker health is healthy (or it has no healthcheck), as Traefik does it.
// Everything the engine does is recorded in ops, in order.
type world struct {
	mu         sync.Mutex
	containers map[string]*fakeContainer
	images     map[string]Image
	ops        []string
	seq        int
	clock      time.Time

	// knobs
	pullErr      error
	traefikErr   error                // every Router call fails with it
	behave       func(*fakeContainer) // called for each new container at start
	logs         string               // what Logs returns; "" for a crash's few lines
	healthyAfter int                  // inspects before a starting container turns healthy
	drainIgnored bool                 // Traefik never drops drained containers
	throttle     time.Duration        // the router's Propagation; 0: 1ms
	onInspect    func(*fakeContainer)
	unlisted     func(*fakeContainer) bool // while true, Traefik does not list that container
	routerCalls  int
	healthRuns   int // health checks run, all containers (their Start times)
	copyErr      error
	startErr     func(*fakeContainer) error // Start fails with it (nil: starts)
	createHook   func(CreateSpec)
	copied       map[string]map[string][]byte // container name -> path -> data, of CopyFiles
	removeErr    error
	releaseExit  int            // the exit code of a release command's container (exits once started)
	hookExit     map[string]int // the exit code of a hook, by its command's first word
	releaseHangs bool           // a release command's container runs until stopped
	// trackServed: after each op, served gets how many servers Traefik
	// routes to in service web@docker (served[i] is after ops[i]).
	trackServed bool
	served      []int
	// running: after each op (and each router call), how many of the
	// app's containers run; routed: how many servers web@docker lists.
	running, routed []int
}

type fakeContainer struct {
	Container
	marker   string
	inspects int
	crash    bool // exits once started
	never    bool // never healthy
	sick     bool // turns unhealthy
	// drainLag: Traefik still lists it for this many Router calls after
	// its drain marker is written (a later health check, Traefik's throttle).
	drainLag int
	// failsIn: its health check has started failing (the probe says
	// "check failed"); Docker turns it unhealthy after this many more
	// Router calls (Traefik drops it then). 0: not failing.
	failsIn int
	// staleRestore: when its marker goes from drain back to serve, a
	// check that read drain is still under way: it fails this many more
	// health checks (Inspects), and Traefik, behind, lists it for
	// staleListed more Router calls all the same, then drops it until it
	// is healthy again.
	staleRestore, staleListed int
	network                   string
	spec                      CreateSpec
}

func newWorld() *world {
	return &world{
		containers: map[string]*fakeContainer{},
		images:     map[string]Image{},
		clock:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func (w *world) op(format string, args ...any) {
	w.ops = append(w.ops, fmt.Sprintf(format, args...))
	w.sample()
	if w.trackServed {
		n := 0
		routed := w.routedServiceLocked()
		for _, svc := range w.servicesLocked() {
			if svc.Name == routed {
				n = len(svc.Servers)
			}
		}
		w.served = append(w.served, n)
	}
}

// sample records the running containers and routed servers; w.mu is held.
func (w *world) sample() {
	n := 0
	for _, c := range w.containers {
		if c.State == "running" {
			n++
		}
	}
	r := 0
	for _, svc := range w.servicesLocked() {
		if svc.Name == "web@docker" {
			r = len(svc.Servers)
		}
	}
	w.running, w.routed = append(w.running, n), append(w.routed, r)
}

// addImage registers image ref with an exposed port 8080.
func (w *world) addImage(ref string, hc *Healthcheck) {
	w.images[ref] = Image{ID: "sha256:" + ref, OS: "linux", Arch: "amd64", Healthcheck: hc, ExposedPorts: []int{8080}}
}

// webLabels are the Traefik labels of the app "web".
func webLabels() map[string]string {
	return map[string]string{
		"traefik.enable":                                     "true",
		"traefik.http.routers.web.rule":                      "PathPrefix(`/`)",
		"traefik.http.services.web.loadbalancer.server.port": "8080",
	}
}

// addRunning adds a running, healthy container of app web at version v.
func (w *world) addRunning(name, version string, byDeployctl bool) *fakeContainer {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	labels := webLabels()
	if byDeployctl {
		labels[LabelApp] = "web"
		labels[LabelVersion] = version
		labels[LabelDrain] = "probe"
		labels[LabelHealthcheck] = ""
	} else {
		labels["app"] = "web"
	}
	c := &fakeContainer{Container: Container{
		ID: fmt.Sprintf("id-%s", name), Name: name, Image: "web:" + version, Labels: labels,
		Created: w.clock.Add(time.Duration(w.seq) * time.Minute), State: "running", Health: "healthy",
		Networks:    map[string]string{"proxy": fmt.Sprintf("10.0.0.%d", w.seq+1)},
		Ports:       []int{8080},
		Healthcheck: &Healthcheck{Test: []string{"CMD", "probe"}},
	}, marker: MarkerServe, network: "proxy"}
	w.containers[c.ID] = c
	if _, ok := w.images[c.Image]; !ok {
		w.images[c.Image] = Image{ID: "sha256:" + c.Image, OS: "linux", Arch: "amd64", ExposedPorts: []int{8080}}
	}
	return c
}

func (w *world) runtime() *fakeRuntime { return &fakeRuntime{w} }
func (w *world) router() *fakeRouter   { return &fakeRouter{w} }

type fakeRuntime struct{ w *world }

func (f *fakeRuntime) List(ctx context.Context, sel map[string]string) ([]Container, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Container
	for _, c := range w.containers {
		match := true
		for k, v := range sel {
			if got, ok := c.Labels[k]; !ok || (v != "" && got != v) {
				match = false
			}
		}
		if match {
			out = append(out, c.Container)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeRuntime) Inspect(ctx context.Context, id string) (Container, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.containers[id]
	if !ok {
		return Container{}, fmt.Errorf("%w: %s", ErrContainerNotFound, id)
	}
	c.inspects++
	if c.State == "running" && c.Health != "starting" && !c.Healthcheck.Disabled() {
		w.healthRun(c) // Docker ran the healthcheck since the last look
	}
	if c.State == "running" && c.Health == "starting" {
		switch {
		case c.sick && c.inspects > w.healthyAfter:
			c.Health = "unhealthy"
			c.HealthLog = append(c.HealthLog, HealthRun{ExitCode: 1, Output: "deployctl: unhealthy: 503"})
		case !c.never && c.inspects > w.healthyAfter:
			c.Health = "healthy"
		}
	}
	if w.onInspect != nil {
		w.onInspect(c)
	}
	return c.Container, nil
}

// healthRun is one run of c's healthcheck, logged: it says what it said
// last time unless the container changed. w.mu is held.
func (w *world) healthRun(c *fakeContainer) {
	w.healthRuns++
	run := HealthRun{Output: "deployctl: ok"}
	if n := len(c.HealthLog); n > 0 {
		run = c.HealthLog[n-1]
	}
	run.Start = w.clock.Add(time.Duration(w.healthRuns) * time.Second)
	switch {
	case c.staleRestore > 0:
		c.staleRestore--
		c.Health = "unhealthy"
		run.Output = "deployctl: draining"
	case c.Health == "unhealthy" && c.marker == MarkerServe && run.Output == "deployctl: draining":
		c.Health = "healthy" // the check after the stale one reads serve
		run.Output = "deployctl: ok"
	}
	run.ExitCode = 0
	if c.Health != "healthy" {
		run.ExitCode = 1
	}
	c.HealthLog = append(c.HealthLog, run)
	if n := len(c.HealthLog); n > 5 {
		c.HealthLog = c.HealthLog[n-5:]
	}
}

func (f *fakeRuntime) Image(ctx context.Context, ref string) (Image, error) {
	img, ok := f.w.images[ref]
	if !ok {
		return Image{}, fmt.Errorf("%w: %s", ErrImageNotFound, ref)
	}
	return img, nil
}

func (f *fakeRuntime) Pull(ctx context.Context, ref string) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.op("pull %s", ref)
	return f.w.pullErr
}

func (f *fakeRuntime) Create(ctx context.Context, spec CreateSpec) (Container, []string, error) {
	w := f.w
	if w.createHook != nil {
		w.createHook(spec)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	labels := map[string]string{}
	network := "proxy"
	var env []string
	if spec.From != "" {
		tmpl := w.containers[spec.From]
		env = slices.Clone(tmpl.Env)
		for k, v := range tmpl.Labels {
			if !strings.HasPrefix(k, "deployctl.") {
				labels[k] = v
			}
		}
		network = tmpl.network
	}
	if spec.Config != nil { // a Target's: nothing copied
		env = slices.Clone(spec.Config.Env)
		maps.Copy(labels, spec.Config.Labels)
		if len(spec.Config.Networks) > 0 {
			network = spec.Config.Networks[0].Name
		}
	}
	if len(spec.Networks) > 0 && spec.From == "" && spec.Config == nil {
		network = spec.Networks[0]
	}
	for _, k := range spec.RemoveLabels {
		delete(labels, k)
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	hc := spec.Healthcheck
	if hc == nil {
		hc = w.images[spec.Image].Healthcheck
	}
	c := &fakeContainer{Container: Container{
		ID: fmt.Sprintf("id-%s", spec.Name), Name: spec.Name, Image: spec.Image, Labels: labels,
		Created: w.clock.Add(time.Duration(w.seq) * time.Minute), State: "created",
		Networks: map[string]string{network: ""}, Ports: []int{8080}, Healthcheck: hc,
		Env: append(env, spec.Env...), // overrides last: Docker keeps the last of a key
	}, network: network, spec: spec}
	w.containers[c.ID] = c
	w.op("create %s", spec.Name)
	return c.Container, nil, nil
}

func (f *fakeRuntime) CopyFiles(ctx context.Context, id string, files []File) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.copyErr != nil {
		return w.copyErr
	}
	c, ok := w.containers[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrContainerNotFound, id)
	}
	for _, file := range files {
		if w.copied == nil {
			w.copied = map[string]map[string][]byte{}
		}
		if w.copied[c.Name] == nil {
			w.copied[c.Name] = map[string][]byte{}
		}
		w.copied[c.Name][file.Path] = file.Data
		if file.Path == MarkerPath {
			was := c.marker
			c.marker = string(file.Data)
			w.op("marker %s %s", c.Name, strings.TrimSpace(c.marker))
			if c.State == "running" && c.Labels[LabelDrain] == "probe" {
				if c.marker == MarkerDrain {
					c.Health = "unhealthy"
				} else if was == MarkerDrain && c.staleRestore > 0 {
					c.Health = "healthy" // for now: the stale check has not ended
				} else if was == MarkerDrain {
					c.Health = "healthy" // the app itself is fine
				}
			}
		}
	}
	return nil
}

func (f *fakeRuntime) Start(ctx context.Context, id string) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.containers[id]
	if w.startErr != nil {
		if err := w.startErr(c); err != nil {
			w.op("start %s failed", c.Name)
			return err
		}
	}
	if w.behave != nil {
		w.behave(c)
	}
	c.State = "running"
	c.Networks[c.network] = fmt.Sprintf("10.0.1.%d", w.seq)
	if c.crash {
		c.State, c.ExitCode = "exited", 3
	}
	if c.Labels[LabelReleaseOf] != "" && !w.releaseHangs {
		c.State, c.ExitCode = "exited", w.releaseExit
	}
	if !c.Healthcheck.Disabled() {
		c.Health = "starting"
	}
	w.op("start %s", c.Name)
	return nil
}

func (f *fakeRuntime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.containers[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrContainerNotFound, id)
	}
	w.seq++
	c.State, c.Health, c.Finished = "exited", "", w.clock.Add(time.Duration(1000+w.seq)*time.Minute)
	w.op("stop %s", c.Name)
	return nil
}

func (f *fakeRuntime) Remove(ctx context.Context, id string) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.removeErr != nil {
		return w.removeErr
	}
	if c, ok := w.containers[id]; ok {
		w.op("remove %s", c.Name)
		delete(w.containers, id)
	}
	return nil
}

func (f *fakeRuntime) Logs(ctx context.Context, id string, lines int) (string, error) {
	if f.w.logs != "" {
		return f.w.logs, nil
	}
	return "listening on :8080\npanic: boom\n", nil
}

func (f *fakeRuntime) RunHook(ctx context.Context, id string, h Hook) (ExecResult, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.containers[id]
	if !ok {
		return ExecResult{}, fmt.Errorf("%w: %s", ErrContainerNotFound, id)
	}
	w.op("hook %s %s", c.Name, strings.Join(h.Command, " "))
	code := w.hookExit[h.Command[0]]
	return ExecResult{Stderr: fmt.Sprintf("%s: exit %d\n", h.Command[0], code), ExitCode: code}, nil
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string) (ExecResult, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.containers[id]
	switch {
	case !ok:
		return ExecResult{}, fmt.Errorf("%w: %s", ErrContainerNotFound, id)
	case c.State != "running":
		return ExecResult{}, fmt.Errorf("container %s is not running", id)
	case len(cmd) > 1 && cmd[1] == "conns":
		w.op("conns %s", c.Name)
		return ExecResult{Stdout: `{"port":8080,"established":0,"in_flight":0}` + "\n"}, nil
	}
	return ExecResult{}, fmt.Errorf("exec %s in %s: not supported by the fake", cmd[0], id)
}

// fakeRouter is Traefik's docker provider as the engine sees it
// (traefikapi.DockerProvider's protocol): it drains through the probe's
// marker, written with the fake runtime's CopyFiles, as the real one
// does with the engine's runtime, so the fault tests see the same calls.
type fakeRouter struct{ w *world }

var (
	_ Router     = (*fakeRouter)(nil)
	_ Drainer    = (*fakeRouter)(nil)
	_ Propagator = (*fakeRouter)(nil)
)

func (f *fakeRouter) Name() string { return "Traefik" }

// Endpoint reads Traefik's docker labels the way traefikapi.LabelEndpoint
// does, for the labels these tests use: a service's server port, else the
// lowest exposed port, over http; traefik.docker.network; the v2 services
// (<name>@docker), else the v1 backend.
func (f *fakeRouter) Endpoint(c Container) (Endpoint, error) {
	ep := Endpoint{Scheme: "http", Network: c.Labels["traefik.docker.network"]}
	port := ""
	for _, k := range sortedKeys(c.Labels) {
		rest, ok := strings.CutPrefix(k, "traefik.http.services.")
		if !ok {
			continue
		}
		name, key, _ := strings.Cut(rest, ".")
		if !slices.Contains(ep.Services, name+"@docker") {
			ep.Services = append(ep.Services, name+"@docker")
		}
		if key == "loadbalancer.server.port" && port == "" {
			port = c.Labels[k]
		}
	}
	if b := c.Labels["traefik.backend"]; len(ep.Services) == 0 && b != "" {
		ep.Services = []string{"backend-" + b}
	}
	switch {
	case port != "":
		if _, err := fmt.Sscan(port, &ep.Port); err != nil {
			return ep, fmt.Errorf("port label %q: %v", port, err)
		}
	case len(c.Ports) > 0:
		ep.Port = c.Ports[0]
	default:
		return ep, fmt.Errorf("container %s exposes no port", c.Short())
	}
	return ep, nil
}

func (f *fakeRouter) Drain(ctx context.Context, c Container) error {
	return f.w.runtime().CopyFiles(ctx, c.ID, []File{{Path: MarkerPath, Mode: 0o644, Data: []byte(MarkerDrain)}})
}

func (f *fakeRouter) Restore(ctx context.Context, c Container) error {
	return f.w.runtime().CopyFiles(ctx, c.ID, []File{{Path: MarkerPath, Mode: 0o644, Data: []byte(MarkerServe)}})
}

func (f *fakeRouter) Drained(ctx context.Context, c Container) (bool, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	fc, ok := f.w.containers[c.ID]
	return ok && fc.marker == MarkerDrain, nil
}

func (f *fakeRouter) Propagation() time.Duration {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if f.w.throttle == 0 {
		return time.Millisecond // the engine's waits take the margin only
	}
	return f.w.throttle
}

// serviceFromLabels is the service Traefik puts a container in, by its
// labels: the one its labels name, "" for none or several.
func serviceFromLabels(labels map[string]string) string {
	ep, _ := (&fakeRouter{}).Endpoint(Container{Labels: labels})
	if len(ep.Services) != 1 {
		return ""
	}
	return ep.Services[0]
}

// services computes what Traefik's docker provider would list now.
func (f *fakeRouter) services() ([]Service, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.traefikErr != nil {
		return nil, w.traefikErr
	}
	w.routerCalls++
	svcs := w.servicesLocked()
	for _, c := range w.containers {
		if c.marker == MarkerDrain && c.drainLag > 0 {
			c.drainLag--
		}
		if c.marker == MarkerServe && c.staleListed > 0 {
			c.staleListed--
		}
		if c.marker == MarkerServe && c.staleRestore > 0 && c.State == "running" {
			w.healthRun(c) // the stale check ends
		}
		if c.failsIn > 0 && c.State == "running" {
			if c.failsIn--; c.failsIn == 0 {
				c.Health = "unhealthy"
				c.HealthLog = append(c.HealthLog, HealthRun{ExitCode: 1, Output: "deployctl: unhealthy: GET /health: 503"})
			}
		}
	}
	return svcs, nil
}

// servicesLocked is what Traefik lists now; w.mu is held.
func (w *world) servicesLocked() []Service {
	byName := map[string]*Service{}
	ids := sortedKeys(w.containers)
	for _, id := range ids {
		c := w.containers[id]
		if c.State != "running" {
			continue
		}
		if c.Health != "" && c.Health != "healthy" && !((w.drainIgnored || c.drainLag > 0) && c.marker == MarkerDrain) && c.staleListed == 0 {
			continue
		}
		if c.network != "proxy" {
			continue // Traefik watches network proxy only
		}
		if w.unlisted != nil && w.unlisted(c) {
			continue
		}
		name := serviceFromLabels(c.Labels)
		if name == "" {
			continue
		}
		svc := byName[name]
		if svc == nil {
			svc = &Service{Name: name}
			byName[name] = svc
		}
		svc.Servers = append(svc.Servers, Server{URL: "http://" + c.Networks[c.network] + ":8080", Status: "UP"})
	}
	var out []Service
	for _, n := range sortedKeys(byName) {
		out = append(out, *byName[n])
	}
	return out
}

func (f *fakeRouter) Services(ctx context.Context) ([]Service, error) {
	svcs, err := f.services()
	if err == nil {
		f.w.mu.Lock()
		f.w.op("traefik list")
		f.w.mu.Unlock()
	}
	return svcs, err
}

func (f *fakeRouter) Service(ctx context.Context, name string) (Service, error) {
	svcs, err := f.services()
	if err != nil {
		return Service{}, err
	}
	f.w.mu.Lock()
	f.w.sample()
	f.w.mu.Unlock()
	for _, s := range svcs {
		if s.Name == name {
			return s, nil
		}
	}
	return Service{}, fmt.Errorf("%w: %s", ErrServiceNotFound, name)
}

// events collects the engine's events.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) Event(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) warnings() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		if ev.Status == StatusWarn {
			out = append(out, ev.Message)
		}
	}
	return out
}

// fakeProbes has a probe for linux/amd64 and linux/arm64, whose bytes name
// the platform.
type fakeProbes struct{}

func (fakeProbes) Platforms() []string { return []string{"linux/amd64", "linux/arm64"} }

func (fakeProbes) Probe(os, arch string) ([]byte, error) {
	if os == "linux" && (arch == "amd64" || arch == "arm64") {
		return []byte("probe for " + os + "/" + arch), nil
	}
	return nil, fmt.Errorf("%w: %s/%s", ErrNoProbe, os, arch)
}
