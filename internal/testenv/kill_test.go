//go:build linux

package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/internal/harness"
)

// killChildEnv makes TestKilledTestProcessLeavesNothing the child it kills.
const killChildEnv = "DEPLOYCTL_TESTENV_KILL_CHILD"

// TestKilledTestProcessLeavesNothing runs this test binary again as a child
// that makes what tests make (a network, an image, a container, a Traefik
// process, and a Traefik build in progress, into a cache of its own), then
// SIGKILLs it, as go test's -timeout or a kill -9 would: no cleanup of the
// child runs. Within a minute nothing of it may be left: no Traefik, no go
// build or compiler of the build, no build directory, and, on the Docker
// engine, neither the network, the container nor the image.
func TestKilledTestProcessLeavesNothing(t *testing.T) {
	if os.Getenv(killChildEnv) == "1" {
		killChild(t)
		return
	}
	cli := Docker(t)
	buildCache := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledTestProcessLeavesNothing$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), killChildEnv+"=1", "DEPLOYCTL_KILLTEST_BUILD_CACHE="+buildCache)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan map[string]string, 1)
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if rest, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				m := map[string]string{}
				for _, kv := range strings.Fields(rest) {
					k, v, _ := strings.Cut(kv, "=")
					m[k] = v
				}
				ready <- m
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })

	// The child may wait for a build of Traefik v3.0.0 in progress.
	var child map[string]string
	select {
	case child = <-ready:
	case err := <-exited:
		t.Fatalf("the child exited (%v) before it was ready:\n%s\n%s", err, out.String(), stderr.String())
	}
	t.Logf("child ready: %v", child)
	// Whatever happens below, nothing of the child's stays.
	t.Cleanup(func() {
		ctx := context.Background()
		cli.ContainerRemove(ctx, child["container"], client.ContainerRemoveOptions{Force: true})
		cli.NetworkRemove(ctx, child["network"], client.NetworkRemoveOptions{})
		harness.RemoveImage(cli, child["image"])
		os.Remove(filepath.Join(os.TempDir(), "deployctl-janitor-"+child["run"]+".log"))
	})
	if procs := processesWith(buildCache); len(procs) == 0 {
		t.Fatalf("the child's Traefik build is not running (no process mentions %s)", buildCache)
	}

	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited

	var left []string
	for time.Since(killed) < time.Minute {
		left = nil
		for what, needle := range map[string]string{
			"the Traefik build (go build, compilers, linker)": buildCache,
			"Traefik":     "--entrypoints.traefik.address=" + child["traefik"] + " ",
			"the janitor": "deployctl-harness-janitor " + child["run"],
		} {
			for _, p := range processesWith(needle) {
				left = append(left, fmt.Sprintf("%s: process %s", what, p))
			}
		}
		if stale, _ := filepath.Glob(filepath.Join(buildCache, "*.tmp-*")); len(stale) > 0 {
			left = append(left, fmt.Sprintf("build directories %v", stale))
		}
		ctx := context.Background()
		if _, err := cli.NetworkInspect(ctx, child["network"], client.NetworkInspectOptions{}); !harness.IsNotFound(err) {
			left = append(left, fmt.Sprintf("network %s (%v)", child["network"], err))
		}
		if _, err := cli.ContainerInspect(ctx, child["container"], client.ContainerInspectOptions{}); !harness.IsNotFound(err) {
			left = append(left, fmt.Sprintf("container %.12s (%v)", child["container"], err))
		}
		if _, err := cli.ImageInspect(ctx, child["image"]); !harness.IsNotFound(err) {
			left = append(left, fmt.Sprintf("image %s (%v)", child["image"], err))
		}
		if len(left) == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if log, err := os.ReadFile(filepath.Join(os.TempDir(), "deployctl-janitor-"+child["run"]+".log")); err == nil {
		t.Logf("janitor's log:\n%s", log)
	}
	if len(left) > 0 {
		t.Fatalf("%v after the test process was killed, left behind:\n  %s", time.Minute, strings.Join(left, "\n  "))
	}
	t.Logf("all gone %v after the kill", time.Since(killed).Round(100*time.Millisecond))
}

// killChild is the child of TestKilledTestProcessLeavesNothing: it makes
// things, says READY, and waits to be killed.
func killChild(t *testing.T) {
	cli := Docker(t)
	network := Network(t, cli)
	img := AppImage(t, cli, AppImageOptions{Tag: "v1", Version: "v1"})
	id := StartContainer(t, cli, ContainerOptions{Image: img, Network: network})
	tr := StartTraefik(t, "v3.0.0", network)
	// A build of Traefik into a cache of its own (so that it builds), which
	// the kill interrupts.
	t.Setenv("DEPLOYCTL_TRAEFIK_CACHE", os.Getenv("DEPLOYCTL_KILLTEST_BUILD_CACHE"))
	go harness.TraefikBinary("v2.11.0", nil)
	// Until the go command runs, and a moment for it to start compilers or
	// the linker (a build whose packages are all in Go's build cache takes
	// about 20 s, mostly linking).
	for start := time.Now(); len(processesWith(os.Getenv("DEPLOYCTL_KILLTEST_BUILD_CACHE"))) == 0; {
		if time.Since(start) > time.Minute {
			t.Fatal("the Traefik build did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	fmt.Printf("READY run=%s network=%s container=%s image=%s traefik=%s\n",
		RunID(), network, id, img, strings.TrimPrefix(tr.APIURL, "http://"))
	select {} // until killed
}

// processesWith returns "pid: command line" of the processes whose command
// line contains s.
func processesWith(s string) []string {
	self := fmt.Sprint(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var found []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || filepath.Base(d) == self {
			continue
		}
		line := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if strings.Contains(line, s) {
			if len(line) > 160 {
				line = line[:160] + "..."
			}
			found = append(found, filepath.Base(d)+": "+line)
		}
	}
	return found
}
