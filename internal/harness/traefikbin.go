package harness

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// TraefikVersions are the Traefik versions that have a build module under
// testdata/traefik.
var TraefikVersions = []string{"v3.6.15", "v3.0.0", "v2.11.0"}

// traefikCodenames are the codenames Traefik's release pipeline stamps into
// its binaries (.semaphore/semaphore.yml, CODENAME), by major.minor.
var traefikCodenames = map[string]string{
	"v3.0":  "beaufort",
	"v2.11": "mimolette",
	"v3.6":  "ramequin",
}

// TraefikCacheDir is where built Traefik binaries are kept: the environment
// variable DEPLOYCTL_TRAEFIK_CACHE, else <os.UserCacheDir()>/deployctl-test.
func TraefikCacheDir() (string, error) {
	if d := os.Getenv("DEPLOYCTL_TRAEFIK_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "deployctl-test"), nil
}

// RepoRoot returns the root directory of the deployctl module.
func RepoRoot() (string, error) {
	isRoot := func(dir string) bool {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		return err == nil && bytes.Contains(b, []byte("module github.com/deployctl/deployctl\n"))
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if isRoot(dir) {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Join(filepath.Dir(file), "..", "..")
		if isRoot(dir) {
			return filepath.Clean(dir), nil
		}
	}
	return "", errors.New("cannot find the root of module github.com/deployctl/deployctl")
}

func normVersion(v string) string {
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	return v
}

// goBuild describes how a tool the tests run (Traefik, the compose CLI)
// is built from its build module under testdata.
type goBuild struct {
	name    string // "Traefik"
	version string // "v3.0.0"
	dir     string // build module
	pkg     string // github.com/traefik/traefik/v3/cmd/traefik
	ldflags string
	key     string // cache file name
}

// newGoBuild is the build of pkg at version from the build module dir,
// cached under prefix-<version>-<hash of go.mod, go.sum and flags>.
func newGoBuild(name, prefix, version, dir, pkg, ldflags string) (*goBuild, error) {
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("%s %s has no build module: %v", name, version, err)
	}
	gosum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("%s %s build module: %v", name, version, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s/%s\n", version, ldflags, runtime.GOOS, runtime.GOARCH)
	h.Write(gomod)
	h.Write(gosum)
	return &goBuild{name: name, version: version, dir: dir, pkg: pkg, ldflags: ldflags,
		key: fmt.Sprintf("%s-%s-%s", prefix, version, hex.EncodeToString(h.Sum(nil))[:12])}, nil
}

func newTraefikBuild(version string) (*goBuild, error) {
	version = normVersion(version)
	parts := strings.SplitN(version, ".", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("traefik version %q: want vX.Y.Z", version)
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	major := parts[0]
	mod := "github.com/traefik/traefik"
	if major != "v0" && major != "v1" {
		mod += "/" + major
	}
	codename := traefikCodenames[parts[0]+"."+parts[1]]
	if codename == "" {
		codename = "cheddar" // Traefik's own default
	}
	vpkg := mod + "/pkg/version"
	// As Traefik's release builds (.goreleaser.yml.tmpl): the version without
	// the "v", the codename, stripped binaries.
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Codename=%s -X %s.BuildDate=deployctl-testenv",
		vpkg, strings.TrimPrefix(version, "v"), vpkg, codename, vpkg)
	return newGoBuild("Traefik", "traefik", version, filepath.Join(root, "testdata", "traefik", version), mod+"/cmd/traefik", ldflags)
}

// Command returns the go command that builds the binary into out.
func (b *goBuild) command(out string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-buildvcs=false", "-ldflags", b.ldflags, "-o", out, b.pkg)
	cmd.Dir = b.dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
	return cmd
}

var goBinMu sync.Map // key -> *sync.Mutex

// TraefikBinary returns the path of a Traefik binary of the given version
// ("v3.0.0" or "3.0.0"), built from the build module
// testdata/traefik/<version> and cached in [TraefikCacheDir] as
// traefik-<version>-<hash of go.mod, go.sum and flags>. logf (may be nil)
// is told when a build starts and ends; so is stderr.
//
// A cache hit costs a stat. A miss builds Traefik with "go build" (many
// minutes on 2 cores; Go's build cache makes later misses, e.g. after a
// flag change, a matter of linking). Concurrent callers, in this process or
// in other processes, wait for a single build: an exclusive file lock
// guards it and the binary is published by an atomic rename.
func TraefikBinary(version string, logf func(string, ...any)) (string, error) {
	b, err := newTraefikBuild(version)
	if err != nil {
		return "", err
	}
	return b.binary(logf)
}

// binary returns the path of b's binary, building it on a cache miss
// (TraefikBinary says how).
func (b *goBuild) binary(logf func(string, ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cache, err := TraefikCacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(cache, b.key)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}

	mu, _ := goBinMu.LoadOrStore(b.key, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil // built by someone else meanwhile
	}
	// Under the lock, no build of this key runs: a temporary directory
	// of one is what a killed process left (the janitor removes it, but
	// not when it could not run).
	if stale, err := filepath.Glob(filepath.Join(cache, b.key+".tmp-*")); err == nil {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}

	tmpDir, err := os.MkdirTemp(cache, b.key+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmpDir)
	RemoveAtExit(tmpDir)
	tmp := filepath.Join(tmpDir, "bin")

	msg := fmt.Sprintf("building %s %s into %s (a cold build takes 10+ minutes on 2 cores)", b.name, b.version, path)
	logf("%s", msg)
	fmt.Fprintf(os.Stderr, "harness: %s\n", msg)
	start := time.Now()
	cmd := b.command(tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// No build outlives this process (see runBuild): its go command, its
	// compilers and its work directory, under tmpDir, go when it dies.
	if err := runBuild(cmd, tmpDir); err != nil {
		return "", fmt.Errorf("%s (in %s): %v\n%s", strings.Join(cmd.Args, " "), b.dir, err, out.String())
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	msg = fmt.Sprintf("built %s %s in %v", b.name, b.version, time.Since(start).Round(time.Second))
	logf("%s", msg)
	fmt.Fprintf(os.Stderr, "harness: %s\n", msg)
	return path, nil
}
