package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
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

// NetworkPrefix starts the name of every network made by [Network].
const NetworkPrefix = "deployctl-test-"

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

// RunID identifies this test process; it is part of the names of the Docker
// objects it makes, so that test packages running in parallel do not clash.
func RunID() string { return runID }

// uniqueName returns prefix + run id + a per-process sequence number.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%s-%d", prefix, runID, seq.Add(1))
}

// cleanupTimeout bounds each Docker call made from a t.Cleanup.
const cleanupTimeout = 60 * time.Second

// requireEngine reports that no Docker engine is usable: t.Skip when the
// environment variable CI is unset, t.Fatal when it is set.
func requireEngine(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if _, ci := os.LookupEnv("CI"); ci {
		t.Fatalf("Docker engine required (CI is set, not skipping): %s", msg)
	}
	t.Skipf("no Docker engine, skipping (set CI to make this fatal): %s", msg)
}

// Docker returns a client for the local Docker engine (DOCKER_HOST and the
// other DOCKER_* variables are honoured; the API version is negotiated). It
// closes the client in t.Cleanup.
//
// When no engine answers, the test is skipped, unless the environment
// variable CI is set: then it fails.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		requireEngine(t, "creating client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		requireEngine(t, "ping %s: %v", cli.DaemonHost(), err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Network creates a bridge network named "deployctl-test-<run id>-<n>" and
// returns its name. In t.Cleanup it force-removes every container still
// attached to it (running or not: the name is unique, so whatever is on it
// was made by the test, including containers made by the code under test),
// then removes the network.
func Network(t testing.TB, cli *client.Client) string {
	t.Helper()
	name := uniqueName(NetworkPrefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver: "bridge",
		Labels: map[string]string{LabelKey: runID},
	})
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
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
		for id := range ids {
			if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !isNotFound(err) {
				t.Errorf("cleanup: remove container %.12s on network %s: %v", id, name, err)
			}
		}
		if _, err := cli.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			t.Errorf("cleanup: remove network %s: %v", name, err)
		}
	})
	return name
}

func isNotFound(err error) bool {
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
}

// StartContainer creates and starts a container and returns its ID. The
// container carries the label [LabelKey]. In t.Cleanup its log is dumped with
// t.Log if the test failed, then it is force-removed.
func StartContainer(t testing.TB, cli *client.Client, opts ContainerOptions) string {
	t.Helper()
	if opts.Image == "" {
		t.Fatal("StartContainer: Image is required")
	}
	name := opts.Name
	if name == "" {
		name = uniqueName(NetworkPrefix)
	}
	labels := map[string]string{LabelKey: runID}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	hc := &container.HostConfig{}
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
		t.Fatalf("create container %s from %s: %v", name, opts.Image, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if t.Failed() {
			t.Logf("log of container %s (%.12s):\n%s", name, res.ID, ContainerLog(ctx, cli, res.ID))
		}
		if _, err := cli.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !isNotFound(err) {
			t.Errorf("cleanup: remove container %s: %v", name, err)
		}
	})
	for _, n := range opts.ExtraNetworks {
		if _, err := cli.NetworkConnect(ctx, n, client.NetworkConnectOptions{Container: res.ID}); err != nil {
			t.Fatalf("connect container %s to network %s: %v", name, n, err)
		}
	}
	if !opts.NoStart {
		if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("start container %s: %v", name, err)
		}
	}
	return res.ID
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

// Inspect returns the container's inspect data or fails the test.
func Inspect(t testing.TB, cli *client.Client, id string) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect container %.12s: %v", id, err)
	}
	return res.Container
}

// ContainerIP returns the container's IPv4 address on the named network or
// fails the test.
func ContainerIP(t testing.TB, cli *client.Client, id, networkName string) string {
	t.Helper()
	c := Inspect(t, cli, id)
	if c.NetworkSettings != nil {
		if ep, ok := c.NetworkSettings.Networks[networkName]; ok && ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String()
		}
	}
	t.Fatalf("container %.12s has no IP address on network %s", id, networkName)
	return ""
}

// WaitHealth waits until the container's Docker health status is want
// ("healthy", "unhealthy", "starting") and returns how long it waited. It
// fails the test on timeout or if the container stops running.
func WaitHealth(t testing.TB, cli *client.Client, id string, want container.HealthStatus, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last container.HealthStatus
	for {
		c := Inspect(t, cli, id)
		if c.State == nil {
			t.Fatalf("container %.12s: no state", id)
		}
		if c.State.Health != nil {
			last = c.State.Health.Status
		}
		if last == want {
			return time.Since(start)
		}
		if !c.State.Running {
			t.Fatalf("container %.12s stopped (exit %d) while waiting for health %q (last %q)", id, c.State.ExitCode, want, last)
		}
		if time.Since(start) > timeout {
			t.Fatalf("container %.12s: health still %q after %v, want %q", id, last, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
