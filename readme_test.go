package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every test the README's fault table cites exists: a cell lists names in
// backticks, "pkg: TestName" switches the package for the names after it
// in that cell (e2e/ until then), "TestName/sub_test" names a subtest
// (its name must appear in the package's tests, or be a script of
// testdata/script) and ".../sub" a subtest of
// the test the row above cites. Whether a test shows its row is for a
// reviewer; that it exists and is where the README says is checked here.
func TestREADMEFaultTableCitesExistingTests(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "| fault | what deployctl does | exit | tests |")
	if !ok {
		t.Fatal("README.md has no fault table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	cited := regexp.MustCompile("`((?:[a-z]+: )?(?:Test|Fuzz|\\.\\.\\./)[^`]*)`")
	funcs := map[string]map[string]bool{} // package dir -> test function names
	sources := map[string]string{}        // package dir -> its test files
	load := func(dir string) {
		if funcs[dir] != nil {
			return
		}
		funcs[dir] = map[string]bool{}
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		var all strings.Builder
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all.Write(src)
			file, err := parser.ParseFile(token.NewFileSet(), f, src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
					funcs[dir][fn.Name.Name] = true
				}
			}
		}
		sources[dir] = all.String()
	}
	rows, checked := 0, 0
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) < 4 || strings.HasPrefix(line, "| ---") {
			continue
		}
		rows++
		dir := "e2e"
		for _, m := range cited.FindAllStringSubmatch(cells[len(cells)-1], -1) {
			name := m[1]
			if pkg, rest, ok := strings.Cut(name, ": "); ok {
				dir, name = pkg, rest
			}
			load(dir)
			fn, sub, _ := strings.Cut(name, "/")
			if fn != "..." && !funcs[dir][strings.TrimSuffix(fn, "*")] {
				if !strings.HasSuffix(fn, "*") || !hasPrefixed(funcs[dir], strings.TrimSuffix(fn, "*")) {
					t.Errorf("the fault table cites %s in %s/, which has no such test (row: %.80s)", fn, dir, cells[0])
				}
			}
			script := filepath.Join("testdata", "script", sub+".txtar") // cmd's TestScripts/<file>
			if _, err := os.Stat(script); sub != "" && err != nil && !strings.Contains(sources[dir], strings.ReplaceAll(sub, "_", " ")) {
				t.Errorf("the fault table cites subtest %q of %s in %s/, whose tests never name it", sub, fn, dir)
			}
			checked++
		}
	}
	if rows < 20 || checked < rows {
		t.Errorf("read %d rows and %d citations: the table's format changed", rows, checked)
	}
}

func hasPrefixed(names map[string]bool, prefix string) bool {
	for n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}
