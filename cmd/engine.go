package cmd

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/traefikapi"
)

// registerProcedureFlags registers the flags that tune the rollout
// procedure, shared by rollout and rollback.
func registerProcedureFlags(f *pflag.FlagSet, o *deploy.Options, drain *string, timeout, throttle *time.Duration) {
	f.StringVar(drain, "drain", "auto", "how old containers leave Traefik: auto, health (require the drain probe), signal (stop first, then wait for Traefik)")
	f.DurationVar(&o.DrainGrace, "drain-grace", deploy.DefaultDrainGrace, "wait between Traefik dropping an old server and its stop signal, for requests Traefik accepted just before (0: signal at once)")
	f.DurationVar(&o.DrainTimeout, "drain-timeout", deploy.DefaultDrainTimeout, "after an atomic switch, wait up to this long for the old containers' requests, WebSockets and streams in flight to finish before their stop signal (0: do not wait)")
	f.DurationVar(&o.DrainInterval, "drain-interval", deploy.DefaultDrainInterval, "how often Docker runs the drain-aware probe: a drain shows in Traefik within about this long")
	f.DurationVar(&o.StopTimeout, "stop-timeout", 0, "time an old container has to exit after its stop signal before it is killed (default: its own, else 10s)")
	f.IntVar(&o.Keep, "keep", deploy.DefaultKeep, "old versions kept stopped for rollback; older ones are removed")
	f.DurationVar(&o.Watch, "watch", 0, "after the cutover, keep the old version ready this long and roll back automatically if the new one exits, turns unhealthy or leaves Traefik")
	f.DurationVar(&o.LockWait, "lock-wait", 0, "wait up to this long for another run's deploy lock on the app (0: fail at once)")
	f.DurationVar(timeout, "timeout", 10*time.Minute, "bound on the whole run")
	f.DurationVar(&o.HealthTimeout, "healthy-timeout", 0, "bound on the wait for Docker health (default: from the healthcheck: start period + interval x retries + slack)")
	f.DurationVar(&o.RegisterTimeout, "register-timeout", deploy.DefaultRegisterTimeout, "bound on the wait for Traefik to list the new container")
	f.DurationVar(&o.DeregisterTimeout, "deregister-timeout", deploy.DefaultDeregisterTimeout, "bound on the wait for Traefik to drop an old container")
	f.DurationVar(&o.PollInterval, "poll-interval", deploy.DefaultPollInterval, "how often Docker and Traefik are polled while waiting (must be positive)")
	f.DurationVar(throttle, "traefik-throttle", traefikapi.DefaultThrottle, "Traefik's providersThrottleDuration: if Traefik's API stops answering mid-rollout, a container Docker reports unhealthy for this long (+0.5s) counts as dropped by Traefik")
}

// positiveDurations are the procedure flags for which 0 means nothing a
// user could want: the engine reads a zero option as "the default", so
// "--register-timeout 0" would silently wait 30s and "--poll-interval 0"
// (poll without pause) would silently poll every 25ms. They are usage
// errors instead. 0 is meaningful for the others: --drain-grace (signal
// as soon as Traefik dropped the server), --stop-timeout and
// --healthy-timeout (the container's own / derived), --watch and
// --lock-wait (none).
var positiveDurations = map[string]string{
	"timeout":            "the bound on the whole run",
	"poll-interval":      "polling without a pause would spin on Docker's and Traefik's APIs",
	"drain-interval":     "Docker's health interval",
	"register-timeout":   "a bound on waiting for Traefik",
	"deregister-timeout": "a bound on waiting for Traefik",
	"traefik-throttle":   "if your Traefik's providersThrottleDuration is 0, pass 1ms",
}

// checkProcedureDurations refuses negative durations, and zero where
// positiveDurations says 0 means nothing, naming the flag; it runs before
// Docker is contacted.
func checkProcedureDurations(f *pflag.FlagSet) error {
	var err error
	f.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Value.Type() != "duration" {
			return
		}
		d, _ := f.GetDuration(fl.Name)
		why, positive := positiveDurations[fl.Name]
		switch {
		case positive && d <= 0:
			err = usagef("--%s must be positive (got %s): %s", fl.Name, d, why)
		case d < 0:
			err = usagef("--%s must not be negative (got %s)", fl.Name, d)
		}
	})
	return err
}
