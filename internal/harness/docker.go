package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// LabelKey labels every container, network and image made by this package;
// its value is [RunID]. It is outside the "deployctl." namespace, which
// belongs to deployctl itself (and which deployctl does not copy when it
// clones a container).
const LabelKey = "deployctl-testenv"

// NetworkPrefix starts the name of every network made by [NewNetwork].
const NetworkPrefix = "deployctl-test-"

// CleanupTimeout bounds each Docker call made by a Close/remove function.
const CleanupTimeout = 60 * time.Second

var (
	runID = func() string {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			panic(err)
		}
		return hex.EncodeToString(b)
	}()
	seq atomic.Int64
)

// RunID identifies this process; it is part of the names of the Docker
// objects it makes, so that processes running in parallel do not clash.
func RunID() string { return runID }

// UniqueName returns prefix + run id + a per-process sequence number.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s%s-%d", prefix, runID, seq.Add(1))
}

// ErrNoEngine wraps the error of [Docker] when no engine answers.
var ErrNoEngine = errors.New("no Docker engine")

// Docker returns a client for the local Docker engine (DOCKER_HOST and the
// other DOCKER_* variables are honoured; the API version is negotiated),
// after a successful ping. The error wraps [ErrNoEngine] when no engine
// answers. The caller closes the client. The engine is registered with the
// janitor (see janitorEnv): whatever this process leaves on it labelled
// [LabelKey]=[RunID] is removed when the process ends, however it ends.
func Docker() (*client.Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("%w: creating client: %v", ErrNoEngine, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("%w: ping %s: %v", ErrNoEngine, cli.DaemonHost(), err)
	}
	// What this process makes on this engine is removed when it ends, also
	// when it is killed before its cleanups run (see janitorEnv).
	registerDockerHost(cli.DaemonHost())
	return cli, nil
}

// NewNetwork creates a bridge network named "deployctl-test-<run id>-<n>"
// and returns its name and the function that removes it: it force-removes
// every container still attached to it (running or not: the name is unique,
// so whatever is on it was made by this process, including containers made
// by the code under test), then the network.
func NewNetwork(cli *client.Client) (name string, remove func() error, err error) {
	name = UniqueName(NetworkPrefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver: "bridge",
		Labels: map[string]string{LabelKey: runID},
	})
	if err != nil {
		return "", nil, fmt.Errorf("create network %s: %w", name, err)
	}
	remove = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
		defer cancel()
		ids := map[string]bool{}
		if insp, err := cli.NetworkInspect(ctx, res.ID, client.NetworkInspectOptions{}); err == nil {
			for id := range insp.Network.Containers {
				ids[id] = true
			}
		}
		// Stopped containers have no endpoint but still name the network.
		if l, err := cli.ContainerList(ctx, client.ContainerListOptions{
			All:     true,
			Filters: make(client.Filters).Add("network", res.ID),
		}); err == nil {
			for _, c := range l.Items {
				ids[c.ID] = true
			}
		}
		var errs []error
		for id := range ids {
			if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove container %.12s on network %s: %w", id, name, err))
			}
		}
		if _, err := cli.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{}); err != nil && !IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", name, err))
		}
		return errors.Join(errs...)
	}
	return name, remove, nil
}

// IsNotFound reports whether err is Docker's "no such object".
func IsNotFound(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "No such") || strings.Contains(strings.ToLower(err.Error()), "not found"))
}

// ContainerOptions describes a container for [StartContainer].
type ContainerOptions struct {
	Image string // required
	// Name defaults to "deployctl-test-<run id>-<n>".
	Name string
	// Network, if set, is the only network the container is attached to
	// (network mode); otherwise the engine's default bridge.
	Network string
	// Aliases are DNS aliases on Network.
	Aliases []string
	// ExtraNetworks are connected after creation, before the start.
	ExtraNetworks []string
	Env           []string // KEY=value
	Labels        map[string]string
	Cmd           []string
	// StopTimeout is the container's stop timeout in seconds (nil: engine
	// default, 10s).
	StopTimeout *int
	// NoStart creates the container without starting it.
	NoStart bool
	// ReadOnly gives the container a read-only root filesystem (docker run
	// --read-only).
	ReadOnly bool
}

// StartContainer creates and starts a container and returns its ID and the
// function that force-removes it. The container carries the label
// [LabelKey]. When an error is returned after the container was created,
// remove is not nil either: the caller still removes it.
func StartContainer(cli *client.Client, opts ContainerOptions) (id string, remove func() error, err error) {
	if opts.Image == "" {
		return "", nil, errors.New("StartContainer: Image is required")
	}
	name := opts.Name
	if name == "" {
		name = UniqueName(NetworkPrefix)
	}
	labels := map[string]string{LabelKey: runID}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	hc := &container.HostConfig{ReadonlyRootfs: opts.ReadOnly}
	var nc *network.NetworkingConfig
	if opts.Network != "" {
		hc.NetworkMode = container.NetworkMode(opts.Network)
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			opts.Network: {Aliases: opts.Aliases},
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:       opts.Image,
			Env:         opts.Env,
			Labels:      labels,
			Cmd:         opts.Cmd,
			StopTimeout: opts.StopTimeout,
		},
		HostConfig:       hc,
		NetworkingConfig: nc,
	})
	if err != nil {
		return "", nil, fmt.Errorf("create container %s from %s: %w", name, opts.Image, err)
	}
	remove = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
		defer cancel()
		if _, err := cli.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !IsNotFound(err) {
			return fmt.Errorf("remove container %s: %w", name, err)
		}
		return nil
	}
	for _, n := range opts.ExtraNetworks {
		if _, err := cli.NetworkConnect(ctx, n, client.NetworkConnectOptions{Container: res.ID}); err != nil {
			return res.ID, remove, fmt.Errorf("connect container %s to network %s: %w", name, n, err)
		}
	}
	if !opts.NoStart {
		if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			return res.ID, remove, fmt.Errorf("start container %s: %w", name, err)
		}
	}
	return res.ID, remove, nil
}

// ContainerLog returns stdout and stderr of a container (interleaved as
// written), or a description of the error.
func ContainerLog(ctx context.Context, cli *client.Client, id string) string {
	rc, err := cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil && err != io.EOF {
		fmt.Fprintf(&buf, "\n(reading log: %v)", err)
	}
	return buf.String()
}

// Inspect returns the container's inspect data.
func Inspect(cli *client.Client, id string) (container.InspectResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect container %.12s: %w", id, err)
	}
	return res.Container, nil
}

// ContainerIP returns the container's IPv4 address on the named network.
func ContainerIP(cli *client.Client, id, networkName string) (string, error) {
	c, err := Inspect(cli, id)
	if err != nil {
		return "", err
	}
	if c.NetworkSettings != nil {
		if ep, ok := c.NetworkSettings.Networks[networkName]; ok && ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("container %.12s has no IP address on network %s", id, networkName)
}

// WaitHealth polls the container every interval until its Docker health
// status is want ("healthy", "unhealthy", "starting") and returns how long
// it waited. It fails on timeout, when the container stops running, or when
// ctx is done.
func WaitHealth(ctx context.Context, cli *client.Client, id string, want container.HealthStatus, timeout, interval time.Duration) (time.Duration, error) {
	start := time.Now()
	var last container.HealthStatus
	for {
		c, err := Inspect(cli, id)
		if err != nil {
			return time.Since(start), err
		}
		if c.State == nil {
			return time.Since(start), fmt.Errorf("container %.12s: no state", id)
		}
		if c.State.Health != nil {
			last = c.State.Health.Status
		}
		if last == want {
			return time.Since(start), nil
		}
		if !c.State.Running {
			return time.Since(start), fmt.Errorf("container %.12s stopped (exit %d) while waiting for health %q (last %q)", id, c.State.ExitCode, want, last)
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("container %.12s: health still %q after %v, want %q", id, last, timeout, want)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), context.Cause(ctx)
		case <-time.After(interval):
		}
	}
}
