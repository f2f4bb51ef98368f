//go:build !linux

package harness

import (
	"errors"
	"os/exec"
)

func setProcAttr(cmd *exec.Cmd)        {}
func setBuildProcAttr(cmd *exec.Cmd)   {}
func setJanitorProcAttr(cmd *exec.Cmd) {}

func unmount(dir string) error { return errors.ErrUnsupported }
func killGroup(pgid int) error { return errors.ErrUnsupported }
