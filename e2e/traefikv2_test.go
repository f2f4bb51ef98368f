package e2e

import (
	"slices"
	"testing"

	"github.com/deployctl/deployctl/internal/harness"
)

// This file sorts last, so its test runs after the others: a fresh machine
// builds Traefik v2.11.0 (about 10 minutes on 2 cores) while they run;
// TestMain starts that build.

// TestRolloutV1ToV2TraefikV2 is TestRolloutV1ToV2 against Traefik v2.11.0.
func TestRolloutV1ToV2TraefikV2(t *testing.T) {
	testRolloutV1ToV2(t, traefikV2)
}

// prebuildTraefik starts building the Traefik versions the tests use, in
// the background (a cache hit costs a stat; concurrent builds of a version
// are serialised by the harness's file lock), in the order the tests need
// them: v3.0.0 for TestCoreOnTraefikV3_0_0, which runs first, then v3.6.15
// (the longest build, about 25 minutes cold on 2 cores) while those run,
// then v2.11.0 for the last Traefik test, then the compose v2 CLI. One after the other: on 2 cores
// concurrent builds only delay the first one the tests wait for.
func prebuildTraefik() {
	order := []string{traefikFirstV3, traefikCurrent, traefikV2}
	for _, v := range harness.TraefikVersions {
		if !slices.Contains(order, v) {
			order = append(order, v)
		}
	}
	go func() {
		for _, v := range order {
			_, _ = harness.TraefikBinary(v, nil) // errors show in the tests that need it
		}
		// Then the compose CLI, for the compose tests, which sort after
		// this file (z_compose_test.go).
		_, _ = harness.ComposeBinary(harness.ComposeVersion, nil)
	}()
}

// TestAtomicSwitchTraefikV2 is TestAtomicSwitch against Traefik v2.11.0.
func TestAtomicSwitchTraefikV2(t *testing.T) {
	testAtomicSwitch(t, traefikV2)
}

// TestTraefikAPIClientTraefikV2 is TestTraefikAPIClient against Traefik
// v2.11.0.
func TestTraefikAPIClientTraefikV2(t *testing.T) {
	testTraefikAPIClient(t, "v2.11.0")
}
