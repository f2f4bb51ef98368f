// Command deployctl-probe is the drain-aware healthcheck deployctl installs
// in every container it creates or restarts (see package probe). It is
// built static for linux/amd64 and linux/arm64 by `go generate
// ./internal/probe/embedded` and embedded in deployctl, so any build of
// deployctl (cgo or not, any OS) carries probes that run in any Linux image,
// FROM scratch included.
package main

import (
	"os"

	"github.com/deployctl/deployctl/internal/probe"
)

func main() { os.Exit(probe.Main(os.Args[1:], os.Stdout, os.Stderr)) }
