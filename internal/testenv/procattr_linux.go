package testenv

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill the child when the test process dies
// (e.g. go test's -timeout panic, which runs no t.Cleanup).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
