// Package harness is the reusable core of deployctl's end-to-end harness,
// for tests (through internal/testenv, which wraps it with testing.TB) and
// for programs such as the benchmark (bench/), which cannot use testing.TB.
//
// It gives a Docker client ([Docker]), private bridge networks
// ([NewNetwork]), images of the test app in testdata/app ([BuildAppImage]),
// containers ([StartContainer]) and a real Traefik v2 or v3 running as a
// host process and watching a network ([StartTraefik]), built from Go
// modules at a pinned version and cached outside the repository
// ([TraefikBinary]).
//
// Nothing here registers cleanups: every constructor returns what undoes
// it (a remove function, or [Traefik.Close]), and the caller runs it, also
// on failure or interruption. A process killed before its cleanups ran
// (go test's -timeout, a kill) leaves nothing either: the processes it
// started die with it (Traefik, go builds with their compilers), and a
// janitor process removes its Docker objects, build directories and
// mounts (see janitorEnv, [RemoveAtExit], [UnmountAtExit]). Docker objects
// carry the label [LabelKey] ("deployctl-testenv") whose value is the run
// id of the process ([RunID]); should even the janitor fail, they can be
// found with
//
//	docker ps -aq --filter label=deployctl-testenv
//	docker network ls -q --filter label=deployctl-testenv
//	docker images --filter label=deployctl-testenv
//
// A Traefik from [StartTraefik] only considers containers labelled
// deployctl-testenv=<RunID()> ([DefaultConstraints]).
package harness
