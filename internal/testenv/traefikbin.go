package testenv

import (
	"testing"

	"github.com/deployctl/deployctl/internal/harness"
)

// TraefikVersions are the Traefik versions that have a build module under
// testdata/traefik.
var TraefikVersions = harness.TraefikVersions

// TraefikCacheDir is where built Traefik binaries are kept: the environment
// variable DEPLOYCTL_TRAEFIK_CACHE, else <os.UserCacheDir()>/deployctl-test.
func TraefikCacheDir() (string, error) { return harness.TraefikCacheDir() }

// repoRoot returns the root directory of the deployctl module.
func repoRoot() (string, error) { return harness.RepoRoot() }

// TraefikBinary returns the path of a Traefik binary of the given version
// ("v3.0.0" or "3.0.0"), built from the build module
// testdata/traefik/<version> and cached in [TraefikCacheDir] (see
// [harness.TraefikBinary]). A cache hit costs a stat; a miss builds Traefik
// (many minutes on 2 cores), once for all concurrent callers.
func TraefikBinary(t testing.TB, version string) string {
	t.Helper()
	path, err := harness.TraefikBinary(version, func(format string, args ...any) { t.Logf(format, args...) })
	if err != nil {
		t.Fatalf("Traefik %s: %v", version, err)
	}
	return path
}

// ComposeVersion is the Docker Compose v2 CLI the end-to-end tests run.
const ComposeVersion = harness.ComposeVersion

// ComposeBinary returns the path of the Docker Compose v2 CLI of the given
// version, built from testdata/compose/<version> and cached like Traefik
// (see [harness.ComposeBinary]).
func ComposeBinary(t testing.TB, version string) string {
	t.Helper()
	path, err := harness.ComposeBinary(version, func(format string, args ...any) { t.Logf(format, args...) })
	if err != nil {
		t.Fatalf("compose %s: %v", version, err)
	}
	return path
}
