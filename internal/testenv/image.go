package testenv

import (
	"sync"
	"testing"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/internal/harness"
)

// Healthcheck is the HEALTHCHECK of an app image; see [harness.Healthcheck].
type Healthcheck = harness.Healthcheck

// AppImageOptions describes an image of the test app (testdata/app); see
// [harness.AppImageOptions]. Tag is the image's tag (default "latest"); the
// repository is chosen by AppImage (one per test).
type AppImageOptions = harness.AppImageOptions

// AppBinary returns the static Linux binary of testdata/app, built once per
// test process.
func AppBinary(t testing.TB) []byte {
	t.Helper()
	b, err := harness.AppBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	repoMu    sync.Mutex
	testRepos = map[testing.TB]string{}
)

// testRepo returns the image repository of test t, allocating it on first
// use.
func testRepo(t testing.TB) string {
	repoMu.Lock()
	defer repoMu.Unlock()
	if r, ok := testRepos[t]; ok {
		return r
	}
	r := uniqueName("deployctl-testapp-")
	testRepos[t] = r
	t.Cleanup(func() {
		repoMu.Lock()
		delete(testRepos, t)
		repoMu.Unlock()
	})
	return r
}

// Dockerfile returns the Dockerfile AppImage builds for opts (see
// [harness.Dockerfile]).
func Dockerfile(opts AppImageOptions) string { return harness.Dockerfile(opts) }

// AppImage builds an image of the test app (FROM scratch, the static binary
// as /app, ENTRYPOINT ["/app"]) with the engine's legacy builder and returns
// its reference "deployctl-testapp-<run id>-<n>:<tag>". All images one test
// builds share the repository. In t.Cleanup the containers created from the
// test's images that still exist are force-removed, then the image.
func AppImage(t testing.TB, cli *client.Client, opts AppImageOptions) string {
	t.Helper()
	tag := opts.Tag
	if tag == "" {
		tag = "latest"
	}
	ref := testRepo(t) + ":" + tag
	if err := harness.BuildAppImage(cli, ref, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := harness.RemoveImage(cli, ref); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ref
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string { return harness.SortedKeys(m) }
