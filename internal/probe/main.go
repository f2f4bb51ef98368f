package probe

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"
)

// ProtocolVersion is the version of the probe's command line: the
// arguments deployctl writes into a container's healthcheck and the marker
// and state files it reads. The probe binaries embedded in deployctl are
// built from this package; a test runs the embedded one and checks that it
// answers this version, so deployctl never ships a probe that does not
// understand the healthchecks it writes. Raise it whenever the command line
// or the files change.
//
// 2 added the hold and conns modes (the routing cutover, docs/design.md).
const ProtocolVersion = 2

// Defaults of the command line, the same as Docker's for a healthcheck.
const (
	defaultInterval = 30 * time.Second
	defaultTimeout  = 30 * time.Second
	defaultRetries  = 3
)

// Main is the probe program (internal/probe/cmd/deployctl-probe): it parses
// args and runs the probe once, returning the exit code for Docker. Its
// command line is
//
//	[probe] [--marker F] [--state F] [--interval D] [--timeout D] [--retries N] [--tcp HOST:PORT] [-- CMD args... | -- CMD-SHELL command]
//	version
//	hold
//	conns --port P [--quiet D]
//
// The leading word "probe" is accepted because containers made by earlier
// deployctl versions run `/.deployctl/deployctl probe ...` as their
// healthcheck, and deployctl installs this program at that path when it
// restarts one of them. "version" prints the protocol version. "hold"
// waits for SIGTERM or SIGINT (the process of a route container). "conns"
// prints the TCP connections on the app's port and how many are in flight
// (CountConns), one JSON line.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintf(stdout, "deployctl-probe protocol %d\n", ProtocolVersion)
		return 0
	}
	if len(args) == 1 && args[0] == "hold" {
		return hold(stdout)
	}
	if len(args) > 0 && args[0] == "conns" {
		fs := flag.NewFlagSet("deployctl-probe conns", flag.ContinueOnError)
		fs.SetOutput(stderr)
		port := fs.Int("port", 0, "the app's port (the local port of its connections)")
		quiet := fs.Duration("quiet", time.Second, "a connection that sent within this long is in flight (a stream)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *port <= 0 || *port > 65535 || fs.NArg() != 0 {
			fmt.Fprintln(stderr, "deployctl-probe conns: --port 1-65535 is required, and nothing else")
			return 2
		}
		return conns(*port, *quiet, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "probe" {
		args = args[1:]
	}
	var cfg Config
	fs := flag.NewFlagSet("deployctl-probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Marker, "marker", "", "drain marker file: \"drain\" in it fails the probe")
	fs.StringVar(&cfg.State, "state", "", "state file kept between runs")
	fs.DurationVar(&cfg.Interval, "interval", defaultInterval, "the app's own health interval")
	fs.DurationVar(&cfg.Timeout, "timeout", defaultTimeout, "bound on one run of the app's check")
	fs.IntVar(&cfg.Retries, "retries", defaultRetries, "the app's own retries")
	fs.StringVar(&cfg.TCP, "tcp", "", "host:port to connect to when the app has no healthcheck")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Command = fs.Args()
	return Run(context.Background(), cfg, time.Now(), stdout)
}
