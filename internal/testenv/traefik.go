package testenv

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/harness"
)

// Traefik is a Traefik process started by [StartTraefik]: a
// [harness.Traefik] (fields Version, APIURL, EntryURL, Network, Binary, Args,
// LogPath, Startup; methods API, HTTPService, Log, Stop) plus waits that
// fail the test.
type Traefik struct {
	*harness.Traefik
}

// TraefikOption changes how [StartTraefik] runs Traefik.
type TraefikOption = harness.TraefikOption

// WithThrottle sets --providers.providersThrottleDuration (Traefik's
// default is 2s; 0 disables throttling).
func WithThrottle(d time.Duration) TraefikOption { return harness.WithThrottle(d) }

// WithConstraints replaces the default --providers.docker.constraints
// expression (see [StartTraefik]); "" removes it, so that Traefik sees every
// container of the engine with traefik.enable=true, including those of
// other test processes.
func WithConstraints(expr string) TraefikOption { return harness.WithConstraints(expr) }

// WithLogLevel sets --log.level (default DEBUG; the log is only shown when
// the test fails).
func WithLogLevel(level string) TraefikOption { return harness.WithLogLevel(level) }

// WithArgs appends command-line arguments, e.g. an entrypoint lifecycle
// option. Arguments given here win over the defaults for the same option.
func WithArgs(args ...string) TraefikOption { return harness.WithArgs(args...) }

// StartTraefik runs Traefik of the given version (see [TraefikBinary]) as a
// host process with the Docker provider watching network, the API on its own
// entrypoint ("traefik", insecure, no dashboard) and a "web" entrypoint, both
// on free 127.0.0.1 ports, and waits until /api/version answers (see
// [harness.StartTraefik]).
//
// Isolation: by default Traefik only considers containers labelled
// deployctl-testenv=<RunID()> ([DefaultConstraints]). Images from [AppImage]
// carry that label, so every container made from them has it, also those the
// code under test creates; [StartContainer] adds it too. Containers made any
// other way need the label ([IsolationLabels]) or [WithConstraints].
//
// It runs in a directory of t.TempDir(). In t.Cleanup the process is killed
// and, if the test failed, its log is dumped with t.Log. On Linux the process
// is also killed if the test process dies.
func StartTraefik(t testing.TB, version, network string, opts ...TraefikOption) *Traefik {
	t.Helper()
	tr, err := harness.StartTraefik(version, network, append([]TraefikOption{harness.WithDir(t.TempDir())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		if t.Failed() {
			t.Logf("Traefik %s %s\nlog (%s):\n%s", tr.Version, strings.Join(tr.Args, " "), tr.LogPath, harness.Tail(tr.Log(), 256<<10))
		}
	})
	return &Traefik{tr}
}

// Service is the part of a service of Traefik's API (/api/http/services/..)
// the tests look at.
type Service = harness.Service

// WaitService polls the service every 10ms until cond holds (a nil service
// means 404) and returns the service and how long it waited. It fails the
// test after timeout.
func (tr *Traefik) WaitService(t testing.TB, name string, timeout time.Duration, cond func(*Service) bool) (*Service, time.Duration) {
	t.Helper()
	start := time.Now()
	var lastErr error
	var last *Service
	for {
		s, err := tr.HTTPService(name)
		if err == nil && cond(s) {
			return s, time.Since(start)
		}
		lastErr, last = err, s
		if time.Since(start) > timeout {
			b, _ := json.Marshal(last)
			t.Fatalf("Traefik %s: service %s: condition not met within %v (last: %s, error %v)", tr.Version, name, timeout, b, lastErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitRoute GETs EntryURL+path with Host header host (empty: none) until the
// answer is 200 with a body containing want; it returns how long it waited
// and fails the test after timeout.
func (tr *Traefik) WaitRoute(t testing.TB, path, host, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		status, body, err := Get(tr.EntryURL+path, host)
		if err == nil && status == http.StatusOK && strings.Contains(body, want) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("Traefik %s: GET %s%s: no 200 containing %q within %v (last: %d %q %v)", tr.Version, tr.EntryURL, path, want, timeout, status, body, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Get GETs url, with the Host header set to host unless host is empty, on a
// fresh connection (no keep-alive, no proxy, no redirects, 10s timeout), and
// returns the status and the body (at most 1 MiB).
func Get(url string, host string) (status int, body string, err error) {
	return harness.Get(url, host)
}

// GetWithHeaders is [Get] that also returns the response headers.
func GetWithHeaders(url string, host string) (status int, body string, header http.Header, err error) {
	return harness.GetWithHeaders(url, host)
}

// DefaultConstraints is the --providers.docker.constraints expression
// StartTraefik uses: only containers labelled deployctl-testenv=<RunID()>.
func DefaultConstraints() string { return harness.DefaultConstraints() }

// IsolationLabels returns the label that makes a container visible to the
// Traefik instances of this test process ([DefaultConstraints]).
func IsolationLabels() map[string]string { return harness.IsolationLabels() }

// TraefikLabels returns the container labels that expose a container
// through Traefik v2/v3: router <name> with rule PathPrefix(`/`) on all
// entrypoints, service <name> on port (the router uses the container's only
// service).
func TraefikLabels(name string, port int) map[string]string {
	return harness.TraefikLabels(name, port)
}
