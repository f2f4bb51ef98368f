package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/harness"
)

// Swarm is a Docker Swarm of the test's own ([harness.Swarm]).
type Swarm struct{ *harness.Swarm }

// StartSwarm starts a Swarm of n nodes, each a dockerd in network
// namespaces of its own (see [harness.StartSwarm]): the machine's engine
// never becomes a Swarm node. It needs root and dockerd: without them the
// test skips, or fails under DEPLOYCTL_REQUIRE_DOCKER_TESTS=1 /
// DEPLOYCTL_REQUIRE_ROOT_TESTS=1. The swarm is removed in t.Cleanup, with
// each node's dockerd log dumped if the test failed.
func StartSwarm(t testing.TB, n int) *Swarm {
	t.Helper()
	RequireRoot(t, "to make network namespaces and run dockerds in them")
	for _, bin := range []string{"dockerd", "docker"} {
		if _, err := exec.LookPath(bin); err != nil {
			NoDocker(t, "a swarm of its own needs %s: %v", bin, err)
		}
	}
	start := time.Now()
	s, err := harness.StartSwarm(n, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swarm of %d node(s) up in %v", n, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, node := range s.Nodes {
				t.Logf("dockerd log of %s:\n%s", node.Name, harness.Tail(node.Log(), 32<<10))
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("removing the swarm: %v", err)
		}
	})
	return &Swarm{s}
}

// Docker runs the docker CLI against node's engine and returns its
// combined output; it fails the test when the command fails.
func (s *Swarm) Docker(t testing.TB, node *harness.SwarmNode, args ...string) string {
	t.Helper()
	out, err := s.TryDocker(node, args...)
	if err != nil {
		t.Fatalf("docker %s (on %s): %v\n%s", strings.Join(args, " "), node.Name, err, out)
	}
	return out
}

// TryDocker is [Swarm.Docker] that returns the error.
func (s *Swarm) TryDocker(node *harness.SwarmNode, args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(cleanDockerEnv(), "DOCKER_HOST="+node.Host)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%w", err)
	}
	return string(out), nil
}

// StartTraefik runs Traefik on the swarm's manager ([harness.Swarm.StartTraefik]),
// removed in t.Cleanup with its log dumped if the test failed.
func (s *Swarm) StartTraefik(t testing.TB, version, overlay string, opts harness.SwarmTraefikOptions) *Traefik {
	t.Helper()
	tr, err := s.Swarm.StartTraefik(version, overlay, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Traefik %s on the swarm %s\nlog:\n%s", tr.Version, strings.Join(tr.Args, " "), harness.Tail(tr.Log(), 256<<10))
		}
		tr.Close()
	})
	return &Traefik{tr}
}

// cleanDockerEnv is this process's environment without the variables that
// choose a Docker engine (DOCKER_HOST, DOCKER_CONTEXT, DOCKER_TLS_VERIFY,
// DOCKER_CERT_PATH), so that a command aims at the engine it is given.
func cleanDockerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH":
			continue
		}
		env = append(env, kv)
	}
	return env
}
