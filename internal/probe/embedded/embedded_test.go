package embedded

import (
	"bytes"
	"debug/elf"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/internal/probe"
)

// requireProbeEnv=1 makes the two checks below fail rather than skip where
// they cannot run: the project's own CI (.ci/run) sets it, as its Go is the
// one the probes were generated with. Hosted CI (GitHub Actions) may run
// another Go, and does not set it.
const requireProbeEnv = "DEPLOYCTL_REQUIRE_PROBE_TESTS"

// The committed probes are what `go generate` makes from the current
// source: rebuilt with the Go version that built them, they are byte for
// byte the same. CI runs that Go version; elsewhere, with another one, the
// bytes cannot match, and TestEmbeddedProbeSpeaksCurrentProtocol is what
// checks the probe.
func TestEmbeddedProbesAreCurrent(t *testing.T) {
	if runtime.Version() != goVersion {
		msg := "the embedded probes were built with " + goVersion + ", and this is " + runtime.Version() + ": their bytes can only be compared with the same Go"
		if os.Getenv(requireProbeEnv) == "1" {
			t.Fatalf("%s; %s=1 (the project's CI, whose Go is fixed): regenerate them with this Go: go generate ./internal/probe/embedded, and commit", msg, requireProbeEnv)
		}
		t.Skipf("%s (set %s=1 to make this a failure)", msg, requireProbeEnv)
	}
	if testing.Short() {
		t.Skip("-short: rebuilding the probes takes a while")
	}
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./gen", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./gen: %v\n%s", err, b)
	}
	names, _ := filepath.Glob(filepath.Join(out, "*"))
	if len(names) != len(manifest)+1 {
		t.Errorf("gen wrote %d files, want %d probes and manifest.go", len(names), len(manifest))
	}
	for _, path := range names {
		name := filepath.Base(path)
		fresh, _ := os.ReadFile(path)
		committed, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(fresh, committed) {
			t.Errorf("%s is not what go generate makes now (%v): run go generate ./internal/probe/embedded and commit", name, err)
		}
	}
}

// Every embedded probe is a static Linux executable for its platform: it
// must run in any image, FROM scratch included, whatever built deployctl.
func TestEmbeddedProbesAreStaticLinuxExecutables(t *testing.T) {
	machines := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	if got := strings.Join(Platforms(), " "); got != "linux/amd64 linux/arm64" {
		t.Errorf("platforms %q, want linux/amd64 and linux/arm64", got)
	}
	for _, platform := range Platforms() {
		os, arch, _ := strings.Cut(platform, "/")
		bin, err := Binary(os, arch)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: not ELF: %v", platform, err)
		}
		if f.Machine != machines[platform] || f.Type != elf.ET_EXEC {
			t.Errorf("%s: ELF machine %v type %v, want %v executable", platform, f.Machine, f.Type, machines[platform])
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked", platform)
			}
		}
		if len(bin) > 4<<20 {
			t.Errorf("%s: %d bytes; the probe is copied into every container and should stay small", platform, len(bin))
		}
	}
}

func TestNoProbeForOtherPlatforms(t *testing.T) {
	for _, p := range [][2]string{{"linux", "s390x"}, {"linux", "ppc64le"}, {"windows", "amd64"}, {"", ""}} {
		_, err := Binary(p[0], p[1])
		if !errors.Is(err, ErrNoProbe) || !strings.Contains(err.Error(), p[0]+"/"+p[1]) || !strings.Contains(err.Error(), "linux/amd64, linux/arm64") {
			t.Errorf("%s/%s: %v", p[0], p[1], err)
		}
	}
}

// The embedded probe for this machine (linux/amd64 in CI) is run as Docker
// runs it, and must speak the protocol this deployctl writes into
// healthchecks: its version, the drain marker, the app's check, the TCP
// check, and the command line of containers made by earlier deployctl
// versions (`deployctl probe ...`).
func TestEmbeddedProbeSpeaksCurrentProtocol(t *testing.T) {
	bin, err := Binary(runtime.GOOS, runtime.GOARCH)
	if err != nil {
		if os.Getenv(requireProbeEnv) == "1" {
			t.Fatalf("%s=1: this run must run the embedded probe: %v", requireProbeEnv, err)
		}
		t.Skipf("this machine (%s/%s) cannot run an embedded probe: %v", runtime.GOOS, runtime.GOARCH, err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "probe")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	marker, state := filepath.Join(dir, "drain"), filepath.Join(dir, "state")
	run := func(args ...string) (int, string) {
		t.Helper()
		out, err := exec.Command(exe, args...).CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if exit != nil {
			return exit.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	want := "deployctl-probe protocol " + strconv.Itoa(probe.ProtocolVersion) + "\n"
	if code, out := run("version"); code != 0 || out != want {
		t.Errorf("version: exit %d %q, want %q: regenerate the probes (go generate ./internal/probe/embedded)", code, out, want)
	}
	os.WriteFile(marker, []byte("serve\n"), 0o644)
	cases := []struct {
		name   string
		marker string
		args   []string
		code   int
		out    string
	}{
		{"tcp", "serve", []string{"--marker", marker, "--state", state, "--timeout", "5s", "--retries", "3", "--tcp", ln.Addr().String()}, 0, "deployctl: ok"},
		{"app check", "serve", []string{"--marker", marker, "--interval", "1s", "--timeout", "5s", "--retries", "1", "--", "CMD", "/bin/sh", "-c", "exit 0"}, 0, "deployctl: ok"},
		{"app check fails", "serve", []string{"--marker", marker, "--retries", "1", "--", "CMD-SHELL", "echo sick; exit 1"}, 1, "unhealthy"},
		{"drain", "drain", []string{"--marker", marker, "--tcp", ln.Addr().String()}, 1, "deployctl: draining"},
		{"earlier deployctl's command line", "serve", []string{"probe", "--marker", marker, "--state", state, "--interval", "30s", "--timeout", "30s", "--retries", "3", "--", "CMD-SHELL", "exit 0"}, 0, "deployctl: ok"},
		{"earlier deployctl's command line, drained", "drain", []string{"probe", "--marker", marker, "--state", state, "--tcp", ln.Addr().String()}, 1, "deployctl: draining"},
	}
	for _, tc := range cases {
		os.WriteFile(marker, []byte(tc.marker+"\n"), 0o644)
		os.Remove(state)
		if code, out := run(tc.args...); code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("%s: exit %d %q, want %d %q", tc.name, code, out, tc.code, tc.out)
		}
	}
}
