package harness

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill the child when this process dies
// (e.g. go test's -timeout panic, or a SIGKILL: no cleanup runs).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
