package traefikapi_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestUnitTestsOnly keeps this package's tests unit tests: nothing here may
// reach the end-to-end harness or Docker. A live test here made
// `go test ./traefikapi/` build two Traefik versions on a fresh machine,
// longer than go test's default 10 minutes, and leave a Docker network and
// a half-done build behind when it timed out. Tests against a real Traefik
// belong in e2e/ (TestTraefikAPIClient).
func TestUnitTestsOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-test", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -test -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"github.com/deployctl/deployctl/internal/testenv",
			"github.com/deployctl/deployctl/internal/harness",
			"github.com/moby/moby/client",
		} {
			if dep == banned {
				t.Errorf("the tests of traefikapi import %s: tests that need Docker or a real Traefik go in e2e/", dep)
			}
		}
	}
}
