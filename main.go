// Command deployctl rolls a new version of a containerised web app out behind
// Traefik with zero failed requests.
package main

import (
	"os"

	"github.com/deployctl/deployctl/cmd"
)

func main() { os.Exit(cmd.Main()) }
