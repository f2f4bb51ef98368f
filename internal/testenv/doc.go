// Package testenv is the end-to-end test harness of deployctl. It is only
// imported by tests. It wraps internal/harness (which does the work, and
// which programs such as the benchmark use directly) with testing.TB:
// failures fail the test, cleanups are registered with t.Cleanup.
//
// It gives a test a Docker client ([Docker]), a private bridge network
// ([Network]), images of the test app in testdata/app ([AppImage]),
// containers ([StartContainer]) and a real Traefik v2 or v3 running as a host
// process and watching that network ([StartTraefik]), built from Go modules
// at a pinned version ([TraefikBinary]).
//
// Everything a helper creates is removed in t.Cleanup, also when the test
// fails. Docker objects carry the label [LabelKey] ("deployctl-testenv") whose
// value is the run id of the test process ([RunID]). A test binary killed
// before its cleanups ran leaves nothing behind either: its helper
// processes die with it and the harness's janitor removes its Docker
// objects (TestKilledTestProcessLeavesNothing); should that fail, they can
// be found with
//
//	docker ps -aq --filter label=deployctl-testenv
//	docker network ls -q --filter label=deployctl-testenv
//	docker images --filter label=deployctl-testenv
//
// Isolation: a Traefik from [StartTraefik] only considers containers
// labelled deployctl-testenv=<RunID()>, because Traefik's Docker provider
// sees every container of the engine, including those of test packages
// running in parallel. Images from [AppImage] carry the label, so every
// container made from them has it (also containers made by deployctl);
// [StartContainer] adds it; for anything else use [IsolationLabels].
//
// No engine: [Docker] calls t.Skip with the reason, unless
// DEPLOYCTL_REQUIRE_DOCKER_TESTS=1, in which case it calls t.Fatal. Tests
// that need root call [RequireRoot], which skips with "needs root (...)"
// unless DEPLOYCTL_REQUIRE_ROOT_TESTS=1. The project's CI (.ci/run) sets
// both, so that it never skips; the generic CI variable changes nothing.
//
// Traefik binaries are cached outside the repository (see [TraefikBinary]);
// the first build of a version takes many minutes, longer than go test's
// default -timeout of 10m. Warm the cache once with
//
//	go test ./internal/testenv -run 'TestTraefikBinary' -timeout 60m -v
//
// Images: every [AppImage] call builds an image tagged
// deployctl-testapp-<run id>-<n>:<tag> (one repository per test, so several
// tags built by one test share a repository) and removes it in the test's
// cleanup; images are not shared between tests. The Go binary of the app is
// built once per test process. The engine's build cache makes rebuilding
// identical images cheap.
package testenv
