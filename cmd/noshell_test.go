package cmd

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// deployctl never runs a program, let alone a shell, on the host it runs
// on: no package of the binary but internal/probe imports os/exec. The
// probe runs inside the app's container, where it runs the app's own
// healthcheck as given (a CMD-SHELL check through the container's
// /bin/sh, a CMD check directly), never a string deployctl put together.
// (DOCKER_HOST=ssh:// runs ssh, through Docker's own connection helper, as
// the docker CLI does.)
func TestNoProgramsRunOnTheHost(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"internal/probe": true}
	forbidden := []string{"os/exec"}
	checked := 0
	for _, dir := range []string{".", "cmd", "deploy", "dockerutil", "traefikapi", "internal/probe"} {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if path == bad && !allowed[dir] {
						rel, _ := filepath.Rel(root, file)
						t.Errorf("%s imports %s: deployctl must not run programs on the host", rel, bad)
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d files: is the repository layout as this test expects?", checked)
	}
}
