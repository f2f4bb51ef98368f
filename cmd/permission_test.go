package cmd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/deployctl/deployctl/internal/testenv"
)

// dockerSocket is the Docker engine's default socket.
const dockerSocket = "/var/run/docker.sock"

// Row 15 of the fault matrix: deployctl run by a user who may not open the
// Docker socket (not root, not in the docker group). The binary (this test
// binary registered as deployctl, see TestMain) runs as nobody against the
// real socket: it must exit 4 (Docker unreachable, nothing changed) and say
// which socket, that permission was denied, and what to do.
func TestPermissionDeniedDockerSocket(t *testing.T) {
	// The project's CI (.ci/run) runs as root with the engine on its
	// default socket and sets DEPLOYCTL_REQUIRE_ROOT_TESTS and
	// DEPLOYCTL_REQUIRE_DOCKER_TESTS: there the test must run, not skip.
	testenv.RequireRoot(t, "to run deployctl as another user")
	if fi, err := os.Stat(dockerSocket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		testenv.NoDocker(t, "no Docker socket at %s (%v)", dockerSocket, err)
	}
	bin, err := exec.LookPath("deployctl")
	if err != nil {
		t.Fatalf("deployctl is not on PATH (TestMain puts it there): %v", err)
	}
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}

	// A copy of the binary that nobody may read and run, in a directory
	// nobody may enter (go test's build directory is root's alone).
	dir, err := os.MkdirTemp("", "deployctl-permission-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "deployctl")
	if err := copyFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(exe, "rollout", "--image", "web", "--version", "v1", "--traefik-url", "http://127.0.0.1:1")
	cmd.Dir = dir
	// No DOCKER_HOST: the default socket, as for a user who just runs it.
	cmd.Env = append(cleanEnv(), "HOME="+dir, "USER=nobody", "NO_COLOR=1")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running deployctl as nobody: %v", err)
	}
	msg := stderr.String()
	t.Logf("exit %d, stderr:\n%s", code, msg)
	if code != ExitUnreachable {
		t.Errorf("exit code %d, want %d", code, ExitUnreachable)
	}
	for _, want := range []string{dockerSocket, "permission denied", "docker group", "DOCKER_HOST", "nothing was changed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message does not say %q", want)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q", stdout.String())
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	r, err := os.Open(from)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.Chmod(to, mode)
}
