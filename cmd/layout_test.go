package cmd

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The layering of docs/design.md ("Layers"), checked on every package's
// own (non-test) imports as `go list` reports them.
//
//   - Only dockerutil imports the Docker SDK (github.com/moby/moby/...,
//     github.com/docker/...): shell completion too goes through it. The
//     test harness (internal/harness, internal/testenv) and the packages
//     that only hold tests and benchmarks (e2e, bench) drive a real engine
//     to test deployctl and may import it.
//   - deploy, the engine, imports neither the adapters (dockerutil,
//     traefikapi) nor cmd, cobra or net/http.
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/deployctl/deployctl"
	sdkAllowed := map[string]string{
		module + "/dockerutil":       "the adapter to the Docker SDK",
		module + "/internal/harness": "test infrastructure",
		module + "/internal/testenv": "test infrastructure",
		module + "/e2e":              "tests only",
		module + "/bench":            "benchmarks only",
	}
	deployForbidden := []string{module + "/cmd", module + "/dockerutil", module + "/traefikapi", "github.com/spf13/cobra", "net/http"}
	seen := 0
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		for _, imp := range p.Imports {
			if isDockerSDK(imp) {
				if _, ok := sdkAllowed[p.ImportPath]; !ok {
					t.Errorf("%s imports the Docker SDK (%s): only dockerutil may; go through it", p.ImportPath, imp)
				}
			}
			if p.ImportPath == module+"/deploy" {
				for _, bad := range deployForbidden {
					if imp == bad || strings.HasPrefix(imp, bad+"/") {
						t.Errorf("deploy imports %s: the engine talks to the world through its own interfaces only", imp)
					}
				}
			}
		}
	}
	if seen < 8 {
		t.Fatalf("go list listed %d packages: is the repository layout as this test expects?", seen)
	}
}

func isDockerSDK(path string) bool {
	return strings.HasPrefix(path, "github.com/moby/moby/") || strings.HasPrefix(path, "github.com/docker/")
}
