package harness

import (
	"fmt"
	"path/filepath"
)

// ComposeVersion is the Docker Compose v2 CLI the end-to-end tests run: the
// release that links compose-go v2.9.1, as deployctl's compose package
// does (the config hash is the JSON of its ServiceConfig).
const ComposeVersion = "v2.40.3"

// ComposeBinary returns the path of a Docker Compose v2 CLI binary of the
// given version, built from the build module testdata/compose/<version>
// and cached beside the Traefik binaries (TraefikBinary says how). It
// runs standalone: `<binary> -p P -f F up -d` is `docker compose -p P -f F
// up -d`, against the engine DOCKER_HOST names. The version is stamped as
// compose's release builds do (Makefile: -X .../internal.Version), so
// that the containers it makes carry com.docker.compose.version.
//
// Not Debian's /usr/bin/docker-compose: that is compose v1 (Python),
// which neither labels nor hashes as v2 does.
func ComposeBinary(version string, logf func(string, ...any)) (string, error) {
	version = normVersion(version)
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	ldflags := fmt.Sprintf("-s -w -X github.com/docker/compose/v2/internal.Version=%s", version)
	b, err := newGoBuild("compose", "compose", version, filepath.Join(root, "testdata", "compose", version),
		"github.com/docker/compose/v2/cmd", ldflags)
	if err != nil {
		return "", err
	}
	return b.binary(logf)
}
