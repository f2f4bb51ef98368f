// Package dockerutil adapts the Docker Engine SDK to deploy.Runtime. It is
// the only package that imports the SDK.
package dockerutil

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
)

// MinAPIVersion is the oldest Docker Engine API deployctl works with
// (Docker 20.10, as in Debian 12).
const MinAPIVersion = "1.41"

// Runtime implements deploy.Runtime over a Docker Engine.
type Runtime struct {
	cli *client.Client

	mu     sync.Mutex
	images map[string]image.InspectResponse // by image ID: image configs never change
	// role is the engine's Swarm role (SwarmRole), once roleKnown.
	role      string
	roleKnown bool
	// nodes maps Swarm node IDs to their hostnames (nodeName).
	nodes map[string]string
}

var _ deploy.Runtime = (*Runtime)(nil)

// New connects to the Docker engine named by the environment (DOCKER_HOST,
// DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_API_VERSION), negotiating the
// API version, and checks that the engine answers and is recent enough.
func New(ctx context.Context, opts ...client.Opt) (*Runtime, error) {
	hostOpts, host, err := hostOptions(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrUnreachable, err)
	}
	// The client negotiates the API version by default (moby client v0.6+).
	opts = append(hostOpts, opts...)
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: Docker client: %v (check DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)", deploy.ErrUnreachable, err)
	}
	if host == "" {
		host = cli.DaemonHost()
	}
	ping, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if m := unsupportedAPI.FindStringSubmatch(fmt.Sprint(err)); m != nil {
		// The SDK itself refuses engines older than it supports.
		ping.APIVersion, err = m[1], nil
	}
	if err != nil {
		_ = cli.Close()
		if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
			// The engine runs; this user may not open its socket.
			return nil, fmt.Errorf("%w: Docker engine at %s: %v (this user, uid %d, may not use it: run deployctl as root or as a user in the docker group, or set DOCKER_HOST to an engine this user may use)", deploy.ErrUnreachable, host, err, os.Getuid())
		}
		return nil, fmt.Errorf("%w: Docker engine at %s: %v (is the engine running? is DOCKER_HOST right?)", deploy.ErrUnreachable, host, err)
	}
	if ping.APIVersion != "" && versionLess(ping.APIVersion, MinAPIVersion) {
		_ = cli.Close()
		return nil, fmt.Errorf("%w: Docker engine at %s speaks API %s; deployctl needs %s or newer (Docker 20.10+)", deploy.ErrUnreachable, host, ping.APIVersion, MinAPIVersion)
	}
	return &Runtime{cli: cli, images: map[string]image.InspectResponse{}}, nil
}

// unsupportedAPI is the SDK's refusal of an old engine at ping.
var unsupportedAPI = regexp.MustCompile(`API version ([0-9]+\.[0-9]+) is not supported by this client`)

// DockerVersion implements deploy.DockerVersioner: the engine's release
// and the oldest API version it accepts (check compares them with what
// Traefik's docker provider asks for).
func (r *Runtime) DockerVersion(ctx context.Context) (deploy.DockerVersion, error) {
	v, err := r.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return deploy.DockerVersion{}, err
	}
	return deploy.DockerVersion{Version: v.Version, MinAPIVersion: v.MinAPIVersion}, nil
}

// Close closes the connection to the engine.
func (r *Runtime) Close() error { return r.cli.Close() }

// List implements deploy.Runtime.
func (r *Runtime) List(ctx context.Context, selector map[string]string) ([]deploy.Container, error) {
	f := client.Filters{}
	for k, v := range selector {
		if v == "" {
			f.Add("label", k)
		} else {
			f.Add("label", k+"="+v)
		}
	}
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, wrap(err)
	}
	// Inspect them a few at a time: one after the other, at 30-400 ms
	// each on a busy host, they add up with 8 replicas and their old
	// versions (the benchmark's plan phase took 2.2-2.9 s at N = 8).
	cs := make([]deploy.Container, len(res.Items))
	errs := make([]error, len(res.Items))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, s := range res.Items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			cs[i], errs[i] = r.Inspect(ctx, s.ID)
		}()
	}
	wg.Wait()
	out := make([]deploy.Container, 0, len(res.Items))
	for i, c := range cs {
		if errors.Is(errs[i], deploy.ErrContainerNotFound) {
			continue // removed between list and inspect
		}
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, c)
	}
	return out, nil
}

// listConcurrency is how many inspects List has in flight at once.
const listConcurrency = 8

// Inspect implements deploy.Runtime.
func (r *Runtime) Inspect(ctx context.Context, id string) (deploy.Container, error) {
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return deploy.Container{}, wrap(err)
	}
	ci := res.Container
	if ci.State != nil && ci.State.Status == "removing" {
		// Being removed (docker rm -f by someone else): gone for a rollout.
		return deploy.Container{}, fmt.Errorf("%w: %s is being removed", deploy.ErrContainerNotFound, shortID(ci.ID))
	}
	var img *image.InspectResponse
	if i, err := r.imageByID(ctx, ci.Image); err == nil {
		img = &i
	}
	return toContainer(ci, img), nil
}

func toContainer(ci container.InspectResponse, img *image.InspectResponse) deploy.Container {
	c := deploy.Container{
		ID:           ci.ID,
		Name:         strings.TrimPrefix(ci.Name, "/"),
		ImageID:      ci.Image,
		RestartCount: ci.RestartCount,
		Networks:     map[string]string{},
	}
	c.Created, _ = time.Parse(time.RFC3339Nano, ci.Created)
	if st := ci.State; st != nil {
		c.State, c.ExitCode = string(st.Status), st.ExitCode
		if t, err := time.Parse(time.RFC3339Nano, st.FinishedAt); err == nil && t.Year() > 1 {
			c.Finished = t
		}
		if st.Health != nil {
			c.Health, c.FailingStreak = string(st.Health.Status), st.Health.FailingStreak
			for _, l := range st.Health.Log {
				if l != nil {
					c.HealthLog = append(c.HealthLog, deploy.HealthRun{Start: l.Start, ExitCode: l.ExitCode, Output: strings.TrimSpace(l.Output)})
				}
			}
		}
	}
	if cfg := ci.Config; cfg != nil {
		c.Image, c.Labels, c.StopSignal = cfg.Image, cfg.Labels, cfg.StopSignal
		if cfg.StopTimeout != nil {
			c.StopTimeout = time.Duration(*cfg.StopTimeout) * time.Second
		}
		for p := range cfg.ExposedPorts {
			if p.Proto() == network.TCP {
				c.Ports = append(c.Ports, int(p.Num()))
			}
		}
		sort.Ints(c.Ports)
		c.Env = ownEnv(cfg.Env, img)
		c.Healthcheck = toHealthcheck(cfg.Healthcheck)
		c.OwnHealthcheck = c.Healthcheck
		if img != nil && img.Config != nil && sameHealthcheck(cfg.Healthcheck, img.Config.Healthcheck) {
			c.OwnHealthcheck = nil
		}
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if hc := ci.HostConfig; hc != nil {
		c.ReadOnlyRootfs = hc.ReadonlyRootfs
	}
	if ns := ci.NetworkSettings; ns != nil {
		for name, ep := range ns.Networks {
			ip := ""
			if ep != nil && ep.IPAddress.IsValid() {
				ip = ep.IPAddress.String()
			}
			c.Networks[name] = ip
		}
	}
	return c
}

// ownEnv is env without the entries the image set (PATH and the like): what
// the user gave the container, or a run copied from the one before. When the
// image is unknown, all of env.
func ownEnv(env []string, img *image.InspectResponse) []string {
	if img == nil || img.Config == nil {
		return env
	}
	var own []string
	for _, e := range env {
		if !slices.Contains(img.Config.Env, e) {
			own = append(own, e)
		}
	}
	return own
}

func toHealthcheck(h *container.HealthConfig) *deploy.Healthcheck {
	if h == nil || len(h.Test) == 0 {
		return nil
	}
	return &deploy.Healthcheck{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
}

func fromHealthcheck(h *deploy.Healthcheck) *container.HealthConfig {
	if h == nil {
		return nil
	}
	return &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
}

func sameHealthcheck(a, b *container.HealthConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equalStrings(a.Test, b.Test) && a.Interval == b.Interval && a.Timeout == b.Timeout &&
		a.StartPeriod == b.StartPeriod && a.Retries == b.Retries
}

// Image implements deploy.Runtime.
func (r *Runtime) Image(ctx context.Context, ref string) (deploy.Image, error) {
	res, err := r.cli.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return deploy.Image{}, fmt.Errorf("%w: %s", deploy.ErrImageNotFound, ref)
		}
		return deploy.Image{}, wrap(err)
	}
	img := res.InspectResponse
	r.mu.Lock()
	r.images[img.ID] = img
	r.mu.Unlock()
	out := deploy.Image{ID: img.ID, OS: img.Os, Arch: img.Architecture}
	if cfg := img.Config; cfg != nil {
		out.Healthcheck = toHealthcheck(cfg.Healthcheck)
		for p := range cfg.ExposedPorts {
			port, err := network.ParsePort(p)
			if err == nil && port.Proto() == network.TCP {
				out.ExposedPorts = append(out.ExposedPorts, int(port.Num()))
			}
		}
		sort.Ints(out.ExposedPorts)
	}
	return out, nil
}

// imageByID inspects an image by ID, cached: an ID names immutable content.
func (r *Runtime) imageByID(ctx context.Context, id string) (image.InspectResponse, error) {
	r.mu.Lock()
	img, ok := r.images[id]
	r.mu.Unlock()
	if ok {
		return img, nil
	}
	res, err := r.cli.ImageInspect(ctx, id)
	if err != nil {
		return image.InspectResponse{}, wrap(err)
	}
	r.mu.Lock()
	r.images[id] = res.InspectResponse
	r.mu.Unlock()
	return res.InspectResponse, nil
}

// Pull implements deploy.Runtime.
func (r *Runtime) Pull(ctx context.Context, ref string) error {
	resp, err := r.cli.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: registryAuth(ref)})
	if err != nil {
		return wrap(err)
	}
	defer resp.Close()
	return resp.Wait(ctx)
}

// Start implements deploy.Runtime.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
	return wrap(err)
}

// Stop implements deploy.Runtime.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(math.Ceil(timeout.Seconds()))
	_, err := r.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
	return wrap(err)
}

// Remove implements deploy.Runtime.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	_, err := r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && (cerrdefs.IsNotFound(err) || strings.Contains(err.Error(), "is already in progress")) {
		return nil // gone, or going: someone else's docker rm
	}
	return wrap(err)
}

// Logs implements deploy.Runtime.
func (r *Runtime) Logs(ctx context.Context, id string, lines int) (string, error) {
	insp, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", wrap(err)
	}
	rc, err := r.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(lines)})
	if err != nil {
		return "", wrap(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	src := io.LimitReader(rc, 1<<20)
	if insp.Container.Config != nil && insp.Container.Config.Tty {
		_, err = io.Copy(&buf, src)
	} else {
		_, err = stdcopy.StdCopy(&buf, &buf, src)
	}
	return buf.String(), err
}

// Exec implements deploy.Runtime.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string) (deploy.ExecResult, error) {
	return r.exec(ctx, id, client.ExecCreateOptions{Cmd: cmd})
}

// RunHook implements deploy.HookRunner: h as docker exec runs it.
func (r *Runtime) RunHook(ctx context.Context, id string, h deploy.Hook) (deploy.ExecResult, error) {
	return r.exec(ctx, id, client.ExecCreateOptions{Cmd: h.Command, User: h.User, WorkingDir: h.WorkingDir, Privileged: h.Privileged, Env: h.Env})
}

var _ deploy.HookRunner = (*Runtime)(nil)

// exec runs an exec of o in container id and waits for its end.
func (r *Runtime) exec(ctx context.Context, id string, o client.ExecCreateOptions) (deploy.ExecResult, error) {
	cmd := o.Cmd
	o.AttachStdout, o.AttachStderr = true, true
	created, err := r.cli.ExecCreate(ctx, id, o)
	if err != nil {
		return deploy.ExecResult{}, wrap(err)
	}
	att, err := r.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return deploy.ExecResult{}, wrap(err)
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		att.Close()
		<-done
		return deploy.ExecResult{}, context.Cause(ctx)
	}
	if err != nil {
		return deploy.ExecResult{}, fmt.Errorf("reading the output of %s in %s: %w", cmd[0], shortID(id), err)
	}
	ins, err := r.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
	if err != nil {
		return deploy.ExecResult{}, wrap(err)
	}
	return deploy.ExecResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: ins.ExitCode}, nil
}

// CopyFiles implements deploy.Runtime. A path ending in "/" is a directory.
// The tar stream is written while Docker reads it, so a large Source file
// (the probe) is never held in memory.
func (r *Runtime) CopyFiles(ctx context.Context, id string, files []deploy.File) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, files)) }()
	defer pr.Close()
	_, err := r.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: pr})
	return wrap(err)
}

func writeTar(w io.Writer, files []deploy.File) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	for _, f := range files {
		name := strings.TrimPrefix(f.Path, "/")
		hdr := &tar.Header{Name: name, Mode: f.Mode, ModTime: now, Typeflag: tar.TypeReg, Size: int64(len(f.Data))}
		var src io.Reader = bytes.NewReader(f.Data)
		switch {
		case strings.HasSuffix(name, "/"):
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		case f.Source != "":
			file, err := os.Open(f.Source)
			if err != nil {
				return err
			}
			defer file.Close()
			st, err := file.Stat()
			if err != nil {
				return err
			}
			hdr.Size, src = st.Size(), file
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, src); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Create implements deploy.Runtime.
func (r *Runtime) Create(ctx context.Context, spec deploy.CreateSpec) (deploy.Container, []string, error) {
	var tmpl *container.InspectResponse
	var oldImg *image.InspectResponse
	var warnings []string
	if spec.From != "" {
		res, err := r.cli.ContainerInspect(ctx, spec.From, client.ContainerInspectOptions{})
		if err != nil {
			return deploy.Container{}, nil, wrap(err)
		}
		tmpl = &res.Container
		if img, err := r.imageByID(ctx, tmpl.Image); err == nil {
			oldImg = &img
		} else {
			warnings = append(warnings, fmt.Sprintf("the current container's image %s is gone, so its configuration cannot be told apart from its image's defaults: all of it (env, command, ...) is copied to the new container", shortID(tmpl.Image)))
		}
	}
	if spec.Config != nil {
		// A given configuration is all the new container's: nothing of it
		// came from an image, so nothing is told apart (oldImg nil).
		t, err := given(spec.Config)
		if err != nil {
			return deploy.Container{}, nil, err
		}
		tmpl, oldImg = t, nil
	}
	plan, err := buildCreate(tmpl, oldImg, spec)
	if err != nil {
		return deploy.Container{}, nil, err
	}
	warnings = append(warnings, plan.warnings...)
	// From here on a cancellation (a signal, --timeout) waits for the
	// answer: a create the client gave up on may still happen in the
	// engine, and a container whose ID the caller never learnt could not be
	// removed. Either the container is returned, or it does not exist.
	ctx, cancel := uncancelled(ctx)
	defer cancel()
	res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: spec.Name, Config: plan.config, HostConfig: plan.host, NetworkingConfig: plan.netConfig,
	})
	if err != nil {
		return deploy.Container{}, nil, wrap(err)
	}
	warnings = append(warnings, res.Warnings...)
	// API < 1.44 attaches only one network at create; connect the others
	// before the container starts.
	for _, n := range plan.extraNetworks {
		if _, err := r.cli.NetworkConnect(ctx, n.name, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: n.endpoint}); err != nil {
			_ = r.Remove(ctx, res.ID)
			return deploy.Container{}, nil, fmt.Errorf("connecting the new container to network %s: %w", n.name, wrap(err))
		}
	}
	c, err := r.Inspect(ctx, res.ID)
	if err != nil {
		_ = r.Remove(ctx, res.ID)
		return deploy.Container{}, nil, err
	}
	return c, warnings, nil
}

// uncancelledTimeout bounds a Docker call that must not be abandoned
// half-way (see [uncancelled]).
const uncancelledTimeout = time.Minute

// uncancelled returns a context for Docker calls whose effect the caller
// must learn even when ctx is cancelled meanwhile (creating a container or
// the lock): it keeps ctx's values, not its cancellation, and is bounded
// by uncancelledTimeout.
func uncancelled(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), uncancelledTimeout)
}

// wrap marks connection failures with deploy.ErrUnreachable and missing
// containers with deploy.ErrContainerNotFound.
func wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%w: %v", deploy.ErrUnreachable, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%w: %v", deploy.ErrContainerNotFound, err)
	}
	return err
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// versionLess compares Docker API versions such as 1.41 and 1.9.
func versionLess(a, b string) bool {
	var a1, a2, b1, b2 int
	fmt.Sscanf(a, "%d.%d", &a1, &a2)
	fmt.Sscanf(b, "%d.%d", &b1, &b2)
	return a1 < b1 || (a1 == b1 && a2 < b2)
}

// registryAuth finds credentials for ref's registry in the Docker CLI's
// config file (~/.docker/config.json or $DOCKER_CONFIG), as `docker pull`
// would; "" when there are none. Credential helpers are not consulted.
func registryAuth(ref string) string {
	return lookupAuth(ref, dockerConfigPath())
}

var _ deploy.DockerVersioner = (*Runtime)(nil)
