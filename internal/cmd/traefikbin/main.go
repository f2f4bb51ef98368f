// Command traefikbin prints the path of a Traefik binary of the given
// version from the test harness's cache, building it first if needed
// (internal/harness.TraefikBinary: the binary the tests and the benchmark
// use, built once for all of them). For scripts such as testdata/demo.sh:
//
//	traefik=$(go run ./internal/cmd/traefikbin v3.0.0)
package main

import (
	"fmt"
	"os"

	"github.com/deployctl/deployctl/internal/harness"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: traefikbin VERSION (one of %v)\n", harness.TraefikVersions)
		os.Exit(2)
	}
	path, err := harness.TraefikBinary(os.Args[1], nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "traefikbin: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
