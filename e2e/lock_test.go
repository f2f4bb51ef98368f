package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/dockerutil"
	"github.com/deployctl/deployctl/internal/procid"
	"github.com/deployctl/deployctl/internal/testenv"
)

// lockHolderEnv makes the test binary a deploy lock holder instead (see
// holdLock): "app image".
const lockHolderEnv = "DEPLOYCTL_E2E_HOLD_LOCK"

// holdLock takes the app's deploy lock as a deployctl run does (the holder
// with this process's identity), prints the holder as JSON, and holds the
// lock until stdin closes.
func holdLock(spec string) int {
	app, image, _ := strings.Cut(spec, " ")
	ctx := context.Background()
	rt, err := dockerutil.New(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer rt.Close()
	h := deploy.CurrentHolder(time.Now())
	h.ProcessID = procid.Local{}.Self()
	h.Expires = h.Since.Add(time.Hour)
	if err := rt.Lock(ctx, app, image, h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(h); err != nil {
		return 1
	}
	io.Copy(io.Discard, os.Stdin)
	if err := rt.Unlock(ctx, app, &h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// lockHolder is a process of this test binary holding a deploy lock.
type lockHolder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	holder deploy.Holder
}

// startLockHolder starts a lock holder: with pid > 0 in a PID namespace of
// its own (same host name) as PID pid there, else as a child of ours.
func startLockHolder(t *testing.T, app, image string, pid int) *lockHolder {
	t.Helper()
	var cmd *exec.Cmd
	if pid > 0 {
		// sh is PID 1 of the new namespace; the holder is its child,
		// given PID pid through ns_last_pid.
		cmd = exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
			`echo $1 > /proc/sys/kernel/ns_last_pid && "$0"`, os.Args[0], fmt.Sprint(pid-1))
	} else {
		cmd = exec.Command(os.Args[0])
	}
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+app+" "+image)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a lock holder (unshare is util-linux's): %v", err)
	}
	lh := &lockHolder{cmd: cmd, stdin: stdin}
	t.Cleanup(lh.kill)
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		lh.kill()
		t.Fatalf("the lock holder did not take the lock: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(line, &lh.holder); err != nil {
		t.Fatalf("lock holder said %q: %v", line, err)
	}
	return lh
}

// kill kills the holder (and its PID namespace) with SIGKILL: its lock
// stays behind.
func (lh *lockHolder) kill() {
	if lh.cmd.ProcessState == nil {
		lh.cmd.Process.Signal(syscall.SIGKILL)
		lh.cmd.Wait()
	}
}

// freePID returns a PID no process of ours uses.
func freePID(t *testing.T) int {
	t.Helper()
	for range 1000 {
		pid := 10000 + rand.IntN(20000)
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return pid
		}
	}
	t.Fatal("no free PID between 10000 and 30000")
	return 0
}

// Issue 10: two runners with one host name in different PID namespaces (CI
// jobs in containers). The lock of a live run in another PID namespace,
// whose PID is free in ours, is not broken; the lock of a killed run of our
// namespace still is, at once. The holder in the other namespace is a real
// process in a real PID namespace holding the real Docker lock; the run is
// the deployctl binary.
func TestLockOfAnotherPIDNamespaceIsNotBroken(t *testing.T) {
	testenv.RequireRoot(t, "a lock holder runs in a PID namespace of its own (unshare --pid)")
	cli := testenv.Docker(t)
	ref := testenv.AppImage(t, cli, testenv.AppImageOptions{Tag: "v1"})
	repo, tag, _ := strings.Cut(ref, ":")
	app := "nslock-" + testenv.RunID()
	rt, err := dockerutil.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rt.Unlock(context.Background(), app, nil)
		rt.Close()
	})
	host, _ := os.Hostname()
	ours := procid.Local{}.Self()
	rollout := func() (int, string) {
		t.Helper()
		cmd := exec.Command(deployctlBin, "rollout", "--image", repo, "--version", tag, "--app", app, "--timeout", "1m")
		// No Traefik: the lock comes before the first call to it.
		cmd.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL=http://127.0.0.1:1", "DEPLOYCTL_PROGRESS=plain")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		t.Logf("deployctl rollout -> exit %d\n%s", cmd.ProcessState.ExitCode(), stderr.String())
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	heldBy := func() *deploy.Holder {
		t.Helper()
		h, err := rt.LockHolder(context.Background(), app)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	// A live holder in another PID namespace, as PID pid there; pid is
	// free here, so by host name and PID alone its lock looks dead.
	pid := freePID(t)
	other := startLockHolder(t, app, ref, pid)
	h := other.holder
	if h.Host != host || h.PID != pid || h.BootID != ours.BootID || h.PIDNS == "" || h.PIDNS == ours.PIDNS {
		t.Fatalf("holder %+v: want host %s, pid %d, boot %s and a PID namespace other than ours (%s)", h, host, pid, ours.BootID, ours.PIDNS)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d exists in our namespace (%v): the test proves nothing", pid, err)
	}
	code, stderr := rollout()
	if code != 5 || !strings.Contains(stderr, "is being deployed by") || strings.Contains(stderr, "breaking") {
		t.Errorf("rollout beside a live holder of another PID namespace: exit %d, want 5 naming the holder, lock not broken", code)
	}
	if held := heldBy(); held == nil || !held.Same(h) {
		t.Fatalf("the live holder's lock is gone: held by %v", held)
	}

	// Killed with its namespace: nothing here can tell that it is gone,
	// so its lock waits for its expiry (or deployctl unlock).
	other.kill()
	if code, stderr := rollout(); code != 5 || strings.Contains(stderr, "breaking") {
		t.Errorf("rollout after the holder of another PID namespace was killed: exit %d, want 5 (the lock waits for its expiry)", code)
	}
	if err := rt.Unlock(context.Background(), app, &h); err != nil {
		t.Fatal(err)
	}

	// A holder of our own namespace, killed: its lock is broken at once.
	ourHolder := startLockHolder(t, app, ref, 0)
	if got := ourHolder.holder; got.PIDNS != ours.PIDNS || got.BootID != ours.BootID || got.Start == 0 {
		t.Fatalf("holder %+v: want our boot and PID namespace %+v and a start time", got, ours)
	}
	ourHolder.kill()
	code, stderr = rollout()
	if !strings.Contains(stderr, "breaking a stale deploy lock") || !strings.Contains(stderr, fmt.Sprintf("process %d no longer exists", ourHolder.holder.PID)) {
		t.Errorf("rollout after a holder of our namespace was killed: exit %d, want the stale lock broken, naming why", code)
	}
	if !strings.Contains(stderr, "nothing was changed") {
		t.Errorf("the rollout without Traefik changed something")
	}
	if held := heldBy(); held != nil {
		t.Errorf("lock still held by %v", held)
	}
}
