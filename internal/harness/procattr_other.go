//go:build !linux

package harness

import "os/exec"

func setProcAttr(cmd *exec.Cmd) {}
