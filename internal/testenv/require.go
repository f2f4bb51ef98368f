package testenv

import (
	"fmt"
	"os"
	"testing"
)

// The variables that make a run refuse to skip. They are explicit, and not
// the generic CI variable: hosted CI (GitHub Actions, GitLab) sets CI=true
// and runs as a non-root user in the docker group, where the Docker tests
// can run but the root-only ones cannot; the project's own CI (.ci/run)
// runs as root with an engine and sets both.
const (
	// RequireDockerEnv=1: a test that needs a Docker engine fails, rather
	// than skips, when none answers.
	RequireDockerEnv = "DEPLOYCTL_REQUIRE_DOCKER_TESTS"
	// RequireRootEnv=1: a test that needs root fails, rather than skips,
	// when the tests do not run as root.
	RequireRootEnv = "DEPLOYCTL_REQUIRE_ROOT_TESTS"
)

// required reports whether the variable name is set to 1 (0 or empty: not
// required); any other value fails the test, so that a typo does not turn
// a required test into a skipped one.
func required(t testing.TB, name string) bool {
	t.Helper()
	switch v := os.Getenv(name); v {
	case "", "0":
		return false
	case "1":
		return true
	default:
		t.Fatalf("%s=%q: want 1 (these tests must not skip) or unset", name, v)
		return true
	}
}

// NoDocker reports that the Docker engine (or a Docker component, such as
// dockerd) a test needs is missing: the test is skipped with the reason,
// or fails when DEPLOYCTL_REQUIRE_DOCKER_TESTS=1.
func NoDocker(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required(t, RequireDockerEnv) {
		t.Fatalf("needs Docker (%s=1, not skipping): %s", RequireDockerEnv, msg)
	}
	t.Skipf("needs Docker, skipping (set %s=1 to make this fatal): %s", RequireDockerEnv, msg)
}

// RequireRoot skips the test with "needs root (why)" unless it runs as
// root (effective uid 0); with DEPLOYCTL_REQUIRE_ROOT_TESTS=1 it fails
// instead.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	requireRoot(t, os.Geteuid(), why)
}

func requireRoot(t testing.TB, euid int, why string) {
	t.Helper()
	if euid == 0 {
		return
	}
	if required(t, RequireRootEnv) {
		t.Fatalf("needs root (%s), runs as uid %d (%s=1, not skipping)", why, euid, RequireRootEnv)
	}
	t.Skipf("needs root (%s), runs as uid %d; set %s=1 to make this fatal", why, euid, RequireRootEnv)
}
