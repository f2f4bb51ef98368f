//go:build !linux

package procid

import (
	"errors"

	"github.com/deployctl/deployctl/deploy"
)

// Self implements deploy.Processes: nothing is known for certain here (no
// boot ID or PID namespace read), so locks of killed runs only expire.
func (Local) Self() deploy.ProcessID { return deploy.ProcessID{} }

// Lookup implements deploy.Processes.
func (Local) Lookup(pid int) (uint64, bool, error) {
	return 0, false, errors.New("process lookup is only implemented on Linux")
}
