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

// setBuildProcAttr runs a go build in a process group of its own (the
// compilers and the linker it starts are in it too), killed with it, and
// kills the go command itself when this process dies. The go command does
// not catch signals during a build: killed, it leaves its compilers running
// and its work directory behind, so [runBuild] also has the janitor kill
// the group and remove the directory.
func setBuildProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(pgid int) error { return syscall.Kill(-pgid, syscall.SIGKILL) }

// setJanitorProcAttr puts the janitor in a process group of its own (see
// janitorEnv), and does not tie its life to this process's.
func setJanitorProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func unmount(dir string) error { return syscall.Unmount(dir, syscall.MNT_DETACH) }
