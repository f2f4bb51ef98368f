package cmd

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/internal/harness"
	"github.com/deployctl/deployctl/internal/probe"
)

// definedFlags returns the long names of every flag of every command of
// deployctl's command tree, hidden commands and cobra's --help included.
func definedFlags(t *testing.T) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		add := func(f *pflag.Flag) { flags[f.Name] = true }
		c.Flags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		c.InheritedFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(newFactory(), io.Discard, io.Discard))
	return flags
}

// foreignFlags are flags of other programs that deployctl's messages name
// on purpose.
var foreignFlags = map[string]string{
	"rm":        "docker run --rm (dockerutil/clone.go: the current container was started with it)",
	"api":       "Traefik's --api (traefikapi/client.go: how to enable Traefik's API)",
	"read-only": "docker run --read-only (deploy/plan.go: a read-only root filesystem cannot get the probe)",
}

// probeFlags are the flags of the drain-aware probe (internal/probe), which
// deploy/health.go writes into healthchecks: read from the probe's own
// usage text, so that a flag renamed there fails here.
func probeFlags(t *testing.T) map[string]bool {
	t.Helper()
	var usage strings.Builder
	probe.Main([]string{"-h"}, io.Discard, &usage)
	probe.Main([]string{"conns", "-h"}, io.Discard, &usage) // the connection count's own
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`).FindAllStringSubmatch(usage.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["marker"] || !flags["tcp"] || !flags["port"] {
		t.Fatalf("the probe's usage names no --marker, --tcp or --port flag:\n%s", usage.String())
	}
	return flags
}

// notShipped are the directories whose code is not part of the deployctl
// binary: test harnesses and the benchmark, which name Traefik's, git's
// and Docker's flags.
var notShipped = []string{"bench", "e2e", "internal/harness", "internal/testenv", "testdata"}

// flagInLiteral matches a long flag in a string: "--name". A name followed
// by "." is one of Traefik's dotted flags (--api.insecure=true) and is
// skipped by the caller; one followed by "*" names a family (--health-*).
var flagInLiteral = regexp.MustCompile(`(^|[^A-Za-z0-9-])--([a-z][a-z0-9-]*)([.*]?)`)

// Every flag a message, hint or help text of the shipped code names must
// be one that a deployctl command defines: a renamed or misspelt flag in an
// error's hint sends the user to an "unknown flag" error.
func TestMessagesNameOnlyDefinedFlags(t *testing.T) {
	defined := definedFlags(t)
	for f := range probeFlags(t) {
		defined[f] = true
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if slices.Contains(notShipped, filepath.ToSlash(rel)) || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Errorf("%s: %v", fset.Position(lit.Pos()), err)
				return true
			}
			for _, m := range flagInLiteral.FindAllStringSubmatch(s, -1) {
				name, after := m[2], m[3]
				switch {
				case after == ".":
					continue // Traefik's dotted flags
				case after == "*":
					if !slices.ContainsFunc(slices.Collect(maps.Keys(defined)), func(f string) bool { return strings.HasPrefix(f, name) }) {
						t.Errorf("%s: %q names --%s*, but no flag starts with %q", fset.Position(lit.Pos()), s, name, name)
					}
				case defined[name] || foreignFlags[name] != "":
				default:
					t.Errorf("%s: %q names --%s, which no deployctl command defines", fset.Position(lit.Pos()), s, name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 || !defined["healthy-timeout"] || !defined["marker"] {
		t.Fatalf("scanned %d files, %d flags: the walk missed the code or the command tree", files, len(defined))
	}
}

// A usage error about a duration names the flag the user gave: each
// duration flag of rollout and rollback, set to a negative value, must be
// the flag the message names (HealthTimeout is --healthy-timeout, not the
// app's --health-timeout).
func TestNegativeDurationNamesItsFlag(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	for _, command := range []string{"rollout", "rollback"} {
		var c *cobra.Command
		if command == "rollout" {
			c = newRolloutCmd(newFactory(), nil)
		} else {
			c = newRollbackCmd(newFactory(), nil)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() != "duration" {
				return
			}
			args := []string{command, "--app", "web", "--image", "web", "--version", "v1", "--" + f.Name, "-1s"}
			if command == "rollback" {
				args = []string{command, "--app", "web", "--" + f.Name, "-1s"}
			}
			if f.Name == "health-cmd" || strings.HasPrefix(f.Name, "health-") {
				args = append(args, "--health-cmd", "true")
			}
			code, _, stderr := run(t, args...)
			if code != ExitUsage || !strings.Contains(stderr, "--"+f.Name+" must") {
				t.Errorf("%s --%s -1s: exit %d, want %d and a message naming --%s:\n%s", command, f.Name, code, ExitUsage, f.Name, stderr)
			}
		})
	}
}
