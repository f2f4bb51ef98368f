package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/internal/harness"
)

// LabelKey labels every container, network and image made by this package;
// its value is [RunID]. It is outside the "deployctl." namespace, which
// belongs to deployctl itself (and which deployctl does not copy when it
// clones a container).
const LabelKey = harness.LabelKey

// NetworkPrefix starts the name of every network made by [Network].
const NetworkPrefix = harness.NetworkPrefix

var runID = harness.RunID()

// RunID identifies this test process; it is part of the names of the Docker
// objects it makes, so that test packages running in parallel do not clash.
func RunID() string { return runID }

// uniqueName returns prefix + run id + a per-process sequence number.
func uniqueName(prefix string) string { return harness.UniqueName(prefix) }

// Docker returns a client for the local Docker engine (DOCKER_HOST and the
// other DOCKER_* variables are honoured; the API version is negotiated). It
// closes the client in t.Cleanup.
//
// When no engine answers, the test is skipped, unless
// DEPLOYCTL_REQUIRE_DOCKER_TESTS=1: then it fails (see [NoDocker]).
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := harness.Docker()
	if err != nil {
		NoDocker(t, "%v", err)
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
	name, remove, err := harness.NewNetwork(cli)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// ContainerOptions describes a container for [StartContainer].
type ContainerOptions = harness.ContainerOptions

// StartContainer creates and starts a container and returns its ID. The
// container carries the label [LabelKey]. In t.Cleanup its log is dumped with
// t.Log if the test failed, then it is force-removed.
func StartContainer(t testing.TB, cli *client.Client, opts ContainerOptions) string {
	t.Helper()
	id, remove, err := harness.StartContainer(cli, opts)
	if remove != nil {
		t.Cleanup(func() {
			if t.Failed() {
				ctx, cancel := context.WithTimeout(context.Background(), harness.CleanupTimeout)
				t.Logf("log of container %.12s:\n%s", id, ContainerLog(ctx, cli, id))
				cancel()
			}
			if err := remove(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ContainerLog returns stdout and stderr of a container (interleaved as
// written), or a description of the error.
func ContainerLog(ctx context.Context, cli *client.Client, id string) string {
	return harness.ContainerLog(ctx, cli, id)
}

// Inspect returns the container's inspect data or fails the test.
func Inspect(t testing.TB, cli *client.Client, id string) container.InspectResponse {
	t.Helper()
	c, err := harness.Inspect(cli, id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ContainerIP returns the container's IPv4 address on the named network or
// fails the test.
func ContainerIP(t testing.TB, cli *client.Client, id, networkName string) string {
	t.Helper()
	ip, err := harness.ContainerIP(cli, id, networkName)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// WaitHealth waits until the container's Docker health status is want
// ("healthy", "unhealthy", "starting") and returns how long it waited. It
// fails the test on timeout or if the container stops running.
func WaitHealth(t testing.TB, cli *client.Client, id string, want container.HealthStatus, timeout time.Duration) time.Duration {
	t.Helper()
	d, err := harness.WaitHealth(context.Background(), cli, id, want, timeout, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
