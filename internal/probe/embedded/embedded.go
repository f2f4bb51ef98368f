// Package embedded carries the drain-aware probe (package probe, built by
// gen/ as a static Linux binary for each platform in the manifest) inside
// deployctl, compressed. deployctl copies the one for a container's
// platform into every container it creates or restarts, so the probe never
// depends on how deployctl itself was built: with or without cgo, for any
// OS or architecture.
//
// The binaries are committed; regenerate them after changing package probe:
//
//	go generate ./internal/probe/embedded
package embedded

//go:generate go run ./gen

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

//go:embed probe-*.gz
var files embed.FS

// entry describes one embedded probe: its uncompressed size and SHA-256.
type entry struct {
	size   int
	sha256 string
}

// Platforms lists the platforms ("linux/amd64", ...) a probe is embedded for.
func Platforms() []string {
	out := make([]string, 0, len(manifest))
	for p := range manifest {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// GoVersion is the Go version the embedded probes were built with.
func GoVersion() string { return goVersion }

// ErrNoProbe is returned for a platform no probe is embedded for.
var ErrNoProbe = fmt.Errorf("no embedded probe")

var cache sync.Map // platform -> func() ([]byte, error)

// Binary returns the probe executable for os/arch (as Docker names them:
// "linux", "amd64"), decompressed and checked against the manifest; an
// error wrapping ErrNoProbe when none is embedded for that platform.
func Binary(os, arch string) ([]byte, error) {
	platform := os + "/" + arch
	if _, ok := manifest[platform]; !ok {
		return nil, fmt.Errorf("%w for %s (deployctl carries probes for %s)", ErrNoProbe, platform, strings.Join(Platforms(), ", "))
	}
	load, _ := cache.LoadOrStore(platform, sync.OnceValues(func() ([]byte, error) { return load(platform) }))
	return load.(func() ([]byte, error))()
}

func load(platform string) ([]byte, error) {
	want := manifest[platform]
	name := "probe-" + strings.ReplaceAll(platform, "/", "-") + ".gz"
	gz, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("embedded probe %s: %w", name, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("embedded probe %s: %w", name, err)
	}
	bin, err := io.ReadAll(io.LimitReader(zr, int64(want.size)+1))
	if err != nil {
		return nil, fmt.Errorf("embedded probe %s: %w", name, err)
	}
	sum := sha256.Sum256(bin)
	if len(bin) != want.size || hex.EncodeToString(sum[:]) != want.sha256 {
		return nil, fmt.Errorf("embedded probe %s does not match its manifest (%d bytes, sha256 %x): regenerate with go generate ./internal/probe/embedded", name, len(bin), sum)
	}
	return bin, nil
}
