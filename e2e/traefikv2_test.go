package e2e

import (
	"testing"

	"github.com/deployctl/deployctl/internal/harness"
)

// This file sorts last, so its test runs after the others: a fresh machine
// builds Traefik v2.11.0 (about 10 minutes on 2 cores) while they run
// against v3.0.0; TestMain starts that build.

// TestRolloutV1ToV2TraefikV2 is TestRolloutV1ToV2 against Traefik v2.11.0.
func TestRolloutV1ToV2TraefikV2(t *testing.T) {
	testRolloutV1ToV2(t, "v2.11.0")
}

// prebuildTraefik starts building the Traefik versions the tests use, in
// the background (a cache hit costs a stat; concurrent builds of a version
// are serialised by the harness's file lock).
func prebuildTraefik() {
	go func() {
		for _, v := range harness.TraefikVersions {
			_, _ = harness.TraefikBinary(v, nil) // errors show in the tests that need it
		}
	}()
}

// TestTraefikAPIClientTraefikV2 is TestTraefikAPIClient against Traefik
// v2.11.0.
func TestTraefikAPIClientTraefikV2(t *testing.T) {
	testTraefikAPIClient(t, "v2.11.0")
}
