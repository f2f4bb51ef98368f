package cmd

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/token"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain registers this test binary as the deployctl command: scripts
// under testdata/script (and the pseudo-terminal tests in progress_test.go)
// run `deployctl ...` as a real process that executes cmd.Main.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"deployctl": func() { os.Exit(Main()) },
	})
}

// TestScripts runs testdata/script/*.txtar. None needs Docker: DOCKER_HOST
// points at a closed port unless a script sets it to $FAKE_DOCKER_HOST, a
// fake engine with a few labelled containers and tagged images (see
// startFakeDocker).
func TestScripts(t *testing.T) {
	docker := startFakeDocker(t, 0)
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("..", "testdata", "script"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"exits": exitsCmd,
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
			env.Setenv("FAKE_DOCKER_HOST", docker)
			return nil
		},
	})
}

// exitsCmd is the script command `exits CODE command [args...]`: exec with
// a check of the exit code (stdout and stderr are then checked as after
// exec).
func exitsCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%v", err)
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// fakeContainers and fakeImages are what the fake engine lists.
var (
	fakeContainers = []map[string]any{
		{"Id": "a1", "Names": []string{"/shop-v1-aaaaaa"}, "State": "exited", "Labels": map[string]string{"deployctl.app": "shop", "deployctl.version": "v1"}},
		{"Id": "a2", "Names": []string{"/shop-v2-bbbbbb"}, "State": "running", "Labels": map[string]string{"deployctl.app": "shop", "deployctl.version": "v2"}},
		{"Id": "b1", "Names": []string{"/blog-2024-cccccc"}, "State": "running", "Labels": map[string]string{"deployctl.app": "blog", "deployctl.version": "2024-06"}},
		{"Id": "c1", "Names": []string{"/unrelated"}, "State": "running", "Labels": map[string]string{"com.example": "x"}},
	}
	fakeImages = []map[string]any{
		{"Id": "sha256:1111", "RepoTags": []string{"registry.example.com/team/shop:v2", "registry.example.com/team/shop:v3"}},
		{"Id": "sha256:2222", "RepoTags": []string{"registry.example.com/team/shop-admin:v9"}},
		{"Id": "sha256:3333", "RepoTags": []string{"blog:latest"}},
	}
)

// startFakeDocker serves enough of the Docker Engine API for deployctl to
// connect (the ping), list containers and images (for completion), and,
// for every other request, fail. With hold > 0 the first such request is
// held that long (or until the client gives up) before it fails, so that a
// rollout stays in its plan phase for a while: long enough for a spinner.
// It returns the DOCKER_HOST to use.
func startFakeDocker(t *testing.T, hold time.Duration) string {
	t.Helper()
	var held atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.43")
		w.Header().Set("Ostype", "linux")
		w.Write([]byte("OK"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if i := strings.Index(path[1:], "/"); strings.HasPrefix(path, "/v1.") && i > 0 {
			path = path[i+1:]
		}
		filters := map[string]map[string]bool{}
		if f := r.URL.Query().Get("filters"); f != "" {
			_ = json.Unmarshal([]byte(f), &filters)
		}
		switch {
		case path == "/containers/json" && hold == 0:
			var out []map[string]any
			for _, c := range fakeContainers {
				if hasLabels(c["Labels"].(map[string]string), filters["label"]) {
					out = append(out, c)
				}
			}
			fakeReply(w, http.StatusOK, out)
			return
		case path == "/info" && hold == 0:
			// Not in a swarm: the rollouts are of containers.
			fakeReply(w, http.StatusOK, map[string]any{"Swarm": map[string]any{"LocalNodeState": "inactive"}})
			return
		case path == "/images/json" && hold == 0:
			var out []map[string]any
			for _, img := range fakeImages {
				for _, ref := range img["RepoTags"].([]string) {
					repo := ref[:strings.LastIndex(ref, ":")]
					if len(filters["reference"]) == 0 || filters["reference"][repo] || filters["reference"][ref] {
						out = append(out, img)
						break
					}
				}
			}
			fakeReply(w, http.StatusOK, out)
			return
		}
		if hold > 0 && held.CompareAndSwap(false, true) {
			select {
			case <-time.After(hold):
			case <-r.Context().Done():
				return
			}
		}
		fakeReply(w, http.StatusInternalServerError, map[string]string{"message": "fake docker: scripted failure of " + r.Method + " " + path})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return "tcp://" + ln.Addr().String()
}

// hasLabels reports whether labels match every filter: "key" or "key=value".
func hasLabels(labels map[string]string, filters map[string]bool) bool {
	for f := range filters {
		k, v, withValue := strings.Cut(f, "=")
		got, ok := labels[k]
		if !ok || withValue && got != v {
			return false
		}
	}
	return true
}

func fakeReply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// TestReleaseLdflags checks .goreleaser.yaml against the code: every
// -X in its ldflags must name a package-level string variable of this
// package initialised with a constant (otherwise the linker silently
// ignores it), version, commit and date must all be set, and the builds
// must be static (CGO_ENABLED=0: the binary is copied into containers as
// the probe) for linux and darwin on amd64 and arm64. `goreleaser check`
// validates the file's schema; this validates what it means for deployctl.
func TestReleaseLdflags(t *testing.T) {
	cfg, err := os.ReadFile(filepath.Join("..", ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	module := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(gomod), "\n", 2)[0], "module"))
	pkg := module + "/cmd"

	vars := stringVars(t)
	set := map[string]bool{}
	for _, m := range regexp.MustCompile(`-X\s+([^\s=]+)\.(\w+)=`).FindAllStringSubmatch(string(cfg), -1) {
		if m[1] != pkg {
			t.Errorf(".goreleaser.yaml: -X %s.%s: not package %s", m[1], m[2], pkg)
			continue
		}
		if !vars[m[2]] {
			t.Errorf(".goreleaser.yaml: -X %s.%s: %s declares no such string variable with a constant value", m[1], m[2], pkg)
		}
		set[m[2]] = true
	}
	for _, v := range []string{"version", "commit", "date"} {
		if !set[v] {
			t.Errorf(".goreleaser.yaml: ldflags do not set %s.%s", pkg, v)
		}
	}
	for _, want := range []string{
		`(?m)^\s*-\s*CGO_ENABLED=0\s*$`,
		`(?m)^\s*goos:\s*\[\s*linux\s*,\s*darwin\s*\]`,
		`(?m)^\s*goarch:\s*\[\s*amd64\s*,\s*arm64\s*\]`,
		`(?m)^\s*main:\s*\.\s*$`,
	} {
		if !regexp.MustCompile(want).Match(cfg) {
			t.Errorf(".goreleaser.yaml does not match %s", want)
		}
	}
}

// stringVars returns the package-level variables of this package that are
// initialised with a string literal: what -X can set.
func stringVars(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	for _, gd := range genDecls(t, ".", token.VAR) {
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						vars[name.Name] = true
					}
				}
			}
		}
	}
	return vars
}
