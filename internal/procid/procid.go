// Package procid identifies processes of the machine deployctl runs on
// beyond host name and PID, for the deploy lock: deployctl breaks a lock
// left by a killed run at once only when the lock's holder was certainly a
// process of this very PID namespace of this boot that no longer exists
// (see deploy.Holder.Stale). On Linux it reads /proc; elsewhere it knows
// nothing, and locks only expire.
package procid

import "github.com/deployctl/deployctl/deploy"

// Local implements deploy.Processes for this machine.
type Local struct{}

var _ deploy.Processes = Local{}
