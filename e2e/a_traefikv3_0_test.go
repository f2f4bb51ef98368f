package e2e

import "testing"

// This file sorts first, so its test runs before the others: on a fresh
// machine Traefik v3.0.0 is built first (about 10 minutes on 2 cores) and
// these tests run on it while v3.6.15, the long build, is made for the
// rest of the suite (prebuildTraefik).

// coreOnFirstV3 is the test under which traefikFor answers traefikFirstV3.
const coreOnFirstV3 = "TestCoreOnTraefikV3_0_0"

// TestCoreOnTraefikV3_0_0 runs the core of the suite against Traefik
// v3.0.0 as well: a rollout under load with the order of events checked,
// rollback/status/history, signals in each phase, the failures before
// the cutover (which depend on what Traefik's docker provider does with a
// container it cannot or may not route to), and the API client's view of
// a live Traefik. The whole suite runs against
// v3.6.15; running it twice would double the suite's 10 minutes.
func TestCoreOnTraefikV3_0_0(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"TestRolloutV1ToV2", TestRolloutV1ToV2},
		{"TestRollbackStatusHistoryRetention", TestRollbackStatusHistoryRetention},
		{"TestSignalsInEachPhase", TestSignalsInEachPhase},
		{"TestRolloutFailuresLeaveV1Serving", TestRolloutFailuresLeaveV1Serving},
		{"TestTraefikAPIClient", TestTraefikAPIClient},
	} {
		t.Run(tc.name, tc.run)
	}
}
