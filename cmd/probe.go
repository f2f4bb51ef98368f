package cmd

import (
	"debug/elf"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/probe"
)

// newProbeCmd is the drain-aware healthcheck that runs inside containers
// deployctl creates (see internal/probe). Hidden: users never call it.
func newProbeCmd() *cobra.Command {
	var cfg probe.Config
	c := &cobra.Command{
		Use:    "probe [flags] [-- CMD args... | -- CMD-SHELL command]",
		Short:  "Drain-aware health probe (runs inside containers deployctl creates)",
		Hidden: true,
		RunE: func(c *cobra.Command, args []string) error {
			cfg.Command = args
			code := probe.Run(c.Context(), cfg, time.Now(), c.OutOrStdout())
			if code != 0 {
				return probeExit(code)
			}
			return nil
		},
	}
	// No DEPLOYCTL_* env inside the app's container: the probe's flags are
	// exactly what deployctl wrote into the healthcheck.
	c.PersistentPreRunE = func(*cobra.Command, []string) error { return nil }
	f := c.Flags()
	f.StringVar(&cfg.Marker, "marker", deploy.MarkerPath, "drain marker file")
	f.StringVar(&cfg.State, "state", deploy.ProbeState, "state file")
	f.DurationVar(&cfg.Interval, "interval", deploy.DefaultHealthInterval, "the app's own health interval")
	f.DurationVar(&cfg.Timeout, "timeout", deploy.DefaultHealthTimeout, "bound on one run of the app's check")
	f.IntVar(&cfg.Retries, "retries", deploy.DefaultHealthRetries, "the app's own retries")
	f.StringVar(&cfg.TCP, "tcp", "", "host:port to connect to when the app has no healthcheck")
	return c
}

// probeExit is a probe failure: exit 1, nothing more to print.
type probeExit int

func (p probeExit) Error() string { return fmt.Sprintf("probe failed (exit %d)", int(p)) }

// selfProbe returns this binary as the probe to copy into containers, or
// why it cannot be one: it must be a static Linux executable, since it runs
// inside images that may have no libc at all (FROM scratch).
func selfProbe() (*deploy.ProbeBinary, string) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Sprintf("this deployctl binary is built for %s, so it cannot run inside Linux containers as the drain probe; old containers will be stopped by signal before Traefik drops them (use a linux build of deployctl for zero-downtime drains)", runtime.GOOS)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Sprintf("cannot locate the deployctl binary (%v); old containers will be stopped by signal", err)
	}
	if err := checkStatic(exe); err != nil {
		return nil, fmt.Sprintf("%s cannot serve as the drain probe: %v; build deployctl with CGO_ENABLED=0", exe, err)
	}
	return &deploy.ProbeBinary{OS: runtime.GOOS, Arch: runtime.GOARCH, Path: exe}, ""
}

// checkStatic fails for an ELF executable that needs a dynamic loader.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("it is dynamically linked")
		}
	}
	return nil
}
