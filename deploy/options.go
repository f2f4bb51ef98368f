package deploy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DrainMode says how old containers are taken out of rotation.
type DrainMode string

const (
	// DrainAuto drains through the health probe where the container has
	// one, and falls back to signal-then-poll (with a warning) where not.
	DrainAuto DrainMode = "auto"
	// DrainHealth requires the health probe; the rollout refuses to start
	// when an old or the new container cannot have it.
	DrainHealth DrainMode = "health"
	// DrainSignal stops old containers first, then waits for Traefik to
	// drop them: requests in that window may fail.
	DrainSignal DrainMode = "signal"
	// DrainSwitch is not an option: the old container is taken out of
	// rotation by the atomic switch, all old ones at once, with or without
	// the probe (docs/design.md, "Routing cutover").
	DrainSwitch DrainMode = "switch"
)

// SwitchMode says how traffic moves from the old version to the new one
// (docs/design.md, "Routing cutover").
type SwitchMode string

const (
	// SwitchGradual: the new containers join the old ones' service, and
	// the old ones leave it one by one (drained by health, or stopped).
	// For a moment both versions answer.
	SwitchGradual SwitchMode = "gradual"
	// SwitchAtomic: once every new container is healthy and listed, every
	// new request goes to the new version at one instant (a route
	// container's router above the user's), where the router and the
	// app's labels allow it; else gradual, with a warning that says why.
	SwitchAtomic SwitchMode = "atomic"
)

// PullPolicy says when to pull the image.
type PullPolicy string

// Pull policies, as in docker run --pull.
const (
	PullMissing PullPolicy = "missing"
	PullAlways  PullPolicy = "always"
	PullNever   PullPolicy = "never"
)

// ProbeSource supplies deployctl's drain-aware probe (package probe), built
// as a static executable for the platform a container runs on. deployctl
// embeds one for each platform it supports (internal/probe/embedded), so
// the probe does not depend on how deployctl itself was built.
type ProbeSource interface {
	// Probe returns the probe executable for containers of os/arch (as
	// Docker names them: "linux", "arm64"), or an error wrapping
	// ErrNoProbe when there is none for that platform.
	Probe(os, arch string) ([]byte, error)
	// Platforms lists the platforms it has a probe for, as os/arch.
	Platforms() []string
}

// ErrNoProbe: deployctl has no drain probe for a container's platform.
var ErrNoProbe = errors.New("no drain probe for this platform")

// Options is one rollout request.
type Options struct {
	// Image is the repository, e.g. registry.example.com/team/app.
	Image string
	// Version is the tag to deploy.
	Version string
	// App names the app; default: the image name's last path element.
	App string
	// Select adopts running containers deployctl did not make, by label.
	Select map[string]string
	// Service is the Traefik service; default: found from the current
	// container's URL.
	Service string
	// Network is the network Traefik reaches the app on; on a first deploy
	// also the network the container is attached to.
	Network string

	Labels      map[string]string
	Env         []string
	Volumes     []string
	Healthcheck *Healthcheck
	// Restart is a restart policy as in docker run --restart; "" keeps the
	// current container's (unless-stopped on a first deploy).
	Restart string

	Drain DrainMode
	// Switch is how traffic moves to the new version ("": atomic).
	// Atomic switches gradually, with a warning that says why, where the
	// router or the labels do not allow it.
	Switch SwitchMode
	// StepsNeedProbes: the gradual switch's steps were asked for by a
	// declaration (compose's update_config), not for the switch itself:
	// where a current container has no drain probe, the rollout switches
	// atomically instead, every replica in one step, with a warning
	// (atomicForUnprobed).
	StepsNeedProbes bool
	Pull            PullPolicy
	StopTimeout     time.Duration // 0: the container's own, else 10s
	Keep            int           // old versions kept stopped
	Force           bool          // redeploy the version already serving

	// forNext: Check's plan, a redeploy of the serving version that stands
	// for the next rollout (of another version): what only a redeploy
	// decides (its switch: planSwitch) is decided as for that rollout.
	forNext bool

	// DrainGrace is how long to wait between Traefik dropping an old server
	// and its stop signal, for requests Traefik accepted just before.
	DrainGrace time.Duration
	// DrainTimeout bounds the wait, after an atomic switch, for the old
	// containers' connections in flight to finish before their stop
	// signal (conns.go); 0: no wait.
	DrainTimeout time.Duration
	// DrainInterval is how often Docker runs the drain-aware probe; a drain
	// shows in Traefik within about this long (plus Traefik's throttle).
	DrainInterval time.Duration
	// HealthTimeout bounds the wait for Docker health; 0: derived from the
	// container's healthcheck.
	HealthTimeout time.Duration
	// RegisterTimeout bounds the wait for Traefik to list the new server.
	RegisterTimeout time.Duration
	// DeregisterTimeout bounds the wait for Traefik to drop an old server.
	DeregisterTimeout time.Duration
	// PollInterval is how often Docker and Traefik are polled while waiting.
	PollInterval time.Duration

	// Watch keeps watching the new container this long after the cutover,
	// with the old ones drained but still running; if the new one exits,
	// turns unhealthy (or starts failing its checks) or leaves Traefik, the
	// old ones are put back in rotation and the new one is stopped.
	Watch time.Duration

	// LockWait is how long to wait for another run's deploy lock on the
	// app; 0 fails at once, naming the holder.
	LockWait time.Duration
	// HistoryKeep is how many history records of the app are kept.
	HistoryKeep int

	// Replicas is how many containers of the new version run (issue 11);
	// 0: as many as serve now, 1 on a first deploy. With more than one,
	// the rollout runs the steps of PlanSteps within MaxSurge and
	// MaxUnavailable (nil: DefaultMaxSurge, or 100% with SwitchAtomic;
	// DefaultMaxUnavailable).
	Replicas       int
	MaxSurge       *Amount
	MaxUnavailable *Amount
	// StepDelay is a pause between the end of one step and the start of
	// the next (compose's update_config.delay); 0: none.
	StepDelay time.Duration

	// PreDeploy, when not empty, is a release command (e.g. the database
	// migrations) run once in a one-off container of the new image with
	// the new containers' configuration, before any of them is made: the
	// rollout goes on only if it exits 0 (release.go). PostDeploy is run
	// the same way after the rollout succeeded. Neither runs on a
	// rollback. No shell runs them: each is the command's argv.
	PreDeploy, PostDeploy []string

	// Target, when not nil, is the declared configuration of the new
	// containers (a compose service's), given instead of copied from
	// the current container (target.go).
	Target *Target

	// Reuse is the ID of a retained (stopped) container of Version to start
	// instead of creating one: set by Rollback.
	Reuse string

	// Probes supplies the drain-aware probe installed in every container
	// the rollout creates or restarts. Without a probe for the container's
	// platform the rollout is refused before anything changes, unless
	// Drain is DrainSignal.
	Probes ProbeSource
}

// Defaults for Options' zero values.
const (
	DefaultKeep              = 3
	DefaultStopTimeout       = 10 * time.Second
	DefaultDrainInterval     = time.Second
	DefaultDrainGrace        = 50 * time.Millisecond
	DefaultDrainTimeout      = 30 * time.Second
	DefaultRegisterTimeout   = 30 * time.Second
	DefaultDeregisterTimeout = 30 * time.Second
	DefaultPollInterval      = 25 * time.Millisecond
)

// lazyRegexp compiles on first use: the probe runs deployctl every second
// in every container, and package-level compiles are start-up time.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// tagPattern is Docker's grammar for a tag.
var tagPattern = lazyRegexp(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// namePattern is Docker's grammar for a container name.
var namePattern = lazyRegexp(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

var restartPattern = lazyRegexp(`^(no|always|unless-stopped|on-failure(:[0-9]+)?)$`)

// repoPattern is a loose check of an image repository: lowercase path
// components, an optional registry host with port, no tag or digest.
var repoPattern = lazyRegexp(`^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)

// Validate checks o without contacting anything; errors are *Error of
// KindUsage that say what was wrong and what to do.
func (o Options) Validate() error {
	_, err := o.normalize()
	if err != nil {
		var de *Error
		if errors.As(err, &de) {
			de.State = "nothing was changed"
		}
	}
	return err
}

// normalize validates o and fills in defaults. Errors are usage errors.
func (o Options) normalize() (Options, error) {
	if o.Image == "" {
		return o, usageError("--image is required, e.g. --image registry.example.com/app")
	}
	if strings.ContainsAny(o.Image, "@") || (strings.Contains(o.Image, ":") && !repoPattern().MatchString(o.Image)) {
		return o, usageError("--image %q must be a repository without tag or digest (the tag goes in --version), e.g. --image app --version 3f9ace5", o.Image)
	}
	if !repoPattern().MatchString(o.Image) {
		return o, usageError("--image %q is not a valid image repository: use lowercase letters, digits and . _ - separators, e.g. registry.example.com/team/app", o.Image)
	}
	if o.Version == "" {
		return o, usageError("--version is required: the image tag to deploy, e.g. --version 3f9ace5")
	}
	if !tagPattern().MatchString(o.Version) {
		return o, usageError("--version %q is not a valid Docker tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", o.Version)
	}
	if o.App == "" {
		o.App = o.Image[strings.LastIndex(o.Image, "/")+1:]
	}
	if !namePattern().MatchString(o.App) {
		return o, usageError("--app %q is not a valid app name: letters, digits, '_', '.' and '-', starting with a letter or digit", o.App)
	}
	if o.Replicas < 0 {
		return o, usageError("--replicas must be at least 1 (got %d)", o.Replicas)
	}
	// Before the budget: the default --max-surge depends on the switch.
	switch o.Switch {
	case "":
		o.Switch = SwitchAtomic
	case SwitchGradual, SwitchAtomic:
	default:
		return o, usageError("--switch %q: must be atomic or gradual", o.Switch)
	}
	if _, err := NewBudget(max(o.Replicas, 1), o.surge(), o.unavailable()); err != nil {
		return o, err
	}
	switch o.Drain {
	case "":
		o.Drain = DrainAuto
	case DrainAuto, DrainHealth, DrainSignal:
	default:
		return o, usageError("--drain %q: must be auto, health or signal", o.Drain)
	}
	switch o.Pull {
	case "":
		o.Pull = PullMissing
	case PullMissing, PullAlways, PullNever:
	default:
		return o, usageError("--pull %q: must be missing, always or never", o.Pull)
	}
	for name, d := range map[string]time.Duration{
		"--stop-timeout": o.StopTimeout, "--drain-interval": o.DrainInterval,
		"--healthy-timeout": o.HealthTimeout, "--register-timeout": o.RegisterTimeout,
		"--deregister-timeout": o.DeregisterTimeout, "--poll-interval": o.PollInterval,
		"--lock-wait": o.LockWait, "--watch": o.Watch, "--drain-grace": o.DrainGrace, "the delay between steps": o.StepDelay,
	} {
		if d < 0 {
			return o, usageError("%s must not be negative (got %s)", name, d)
		}
	}
	if o.Keep < 0 {
		return o, usageError("--keep must not be negative (got %d)", o.Keep)
	}
	if o.DrainInterval == 0 {
		o.DrainInterval = DefaultDrainInterval
	}
	if o.DrainInterval < time.Millisecond {
		return o, usageError("--drain-interval must be at least 1ms (Docker's minimum health interval)")
	}
	if o.RegisterTimeout == 0 {
		o.RegisterTimeout = DefaultRegisterTimeout
	}
	if o.DeregisterTimeout == 0 {
		o.DeregisterTimeout = DefaultDeregisterTimeout
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.HistoryKeep <= 0 {
		o.HistoryKeep = DefaultHistoryKeep
	}
	for i, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return o, usageError("env entry %d of %d is %s: it must be KEY=VALUE (the value is not shown: it may be a secret)", i+1, len(o.Env), EntryShape(e))
		}
	}
	for k := range o.Labels {
		if k == "" {
			return o, usageError("a label needs a key: KEY=VALUE")
		}
	}
	if o.Restart != "" && !restartPattern().MatchString(o.Restart) {
		return o, usageError("--restart %q: want no, always, unless-stopped or on-failure[:N]", o.Restart)
	}
	if err := o.checkTarget(); err != nil {
		return o, err
	}
	if o.Healthcheck != nil && len(o.Healthcheck.Test) == 0 {
		return o, usageError("a healthcheck needs a command (--health-cmd)")
	}
	return o, nil
}

// ImageRef is the image reference to deploy.
func (o Options) ImageRef() string { return o.Image + ":" + o.Version }

// containerName is <app>-<version>-<random>, a valid Docker name.
func containerName(app, version, random string) string {
	name := fmt.Sprintf("%s-%s-%s", app, version, random)
	if len(name) > 128 {
		name = name[:128]
	}
	return name
}

// EntryShape describes a malformed KEY=VALUE entry without showing any of
// it, for error messages: its value may be a secret (a token given as
// -e "$TOKEN"), and even a prefix of a token helps an attacker.
func EntryShape(e string) string {
	switch k, v, ok := strings.Cut(e, "="); {
	case e == "":
		return "empty"
	case !ok:
		return fmt.Sprintf("%d characters without '='", utf8.RuneCountInString(e))
	case k == "":
		return fmt.Sprintf("'=' followed by %d characters, with no key before it", utf8.RuneCountInString(v))
	default:
		return "well-formed"
	}
}

// surge and unavailable are --max-surge and --max-unavailable, defaulted.
func (o Options) surge() Amount {
	if o.MaxSurge == nil {
		if o.Switch == SwitchAtomic {
			// Every new replica runs before the switch.
			return Amount{N: 100, Percent: true}
		}
		return DefaultMaxSurge
	}
	return *o.MaxSurge
}

func (o Options) unavailable() Amount {
	if o.MaxUnavailable == nil {
		return DefaultMaxUnavailable
	}
	return *o.MaxUnavailable
}
