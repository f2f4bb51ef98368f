// Package deploy is deployctl's rollout engine: it plans a rollout, runs the
// new container, waits for Docker and Traefik, drains and stops the old
// containers, and undoes its own work when something fails before the old
// version was touched.
//
// The engine talks to the world only through the small interfaces declared
// here (Runtime for Docker, Reporter for progress) and in router.go (Router
// for Traefik), so its decisions are unit-tested with fakes and the same
// code runs against a real Docker engine and a real Traefik in the
// end-to-end tests. It never prints.
package deploy

import (
	"context"
	"time"
)

// Labels deployctl reads and writes on containers.
const (
	// LabelApp names the app a container belongs to.
	LabelApp = "deployctl.app"
	// LabelVersion is the version (image tag) a container runs.
	LabelVersion = "deployctl.version"
	// LabelImage is the image repository a container was deployed from
	// (its tag is the version), for rollbacks.
	LabelImage = "deployctl.image"
	// LabelDrain is "probe" on containers that carry deployctl's drain-aware
	// health probe, so they can be taken out of Traefik before any signal.
	LabelDrain = "deployctl.drain"
	// LabelHealthcheck records the healthcheck the user asked for, before
	// deployctl wrapped it: "" means "the image's own", otherwise JSON.
	LabelHealthcheck = "deployctl.healthcheck"
	// LabelReplicas is the number of replicas the run that created the
	// container was making the app run: the app's intended size, which a
	// later rollout keeps by default (see defaultReplicas).
	LabelReplicas = "deployctl.replicas"
	// LabelRoutingBase is the user's own Traefik router and service labels
	// (JSON), set by an atomic rollout on the containers it makes, whose
	// own labels are the split ones (traefikapi.SplitRouting reads it). A
	// gradual rollout carries it over from the container it copies.
	LabelRoutingBase = "deployctl.traefik-routing"
	// LabelRouteOf names the app a route container routes (docs/design.md,
	// "Routing cutover"). Route containers carry no LabelApp: they are
	// none of the app's containers.
	LabelRouteOf = "deployctl.route-of"
	// LabelRouteLevel is "lifted" on a route container whose routers are
	// one above the user's priority, "user" at it.
	LabelRouteLevel = "deployctl.route-level"
)

// Route levels (LabelRouteLevel).
const (
	RouteLifted = "lifted"
	RouteUser   = "user"
)

// Paths inside containers made by deployctl (see the probe package).
const (
	ProbeDir  = "/.deployctl"
	ProbePath = ProbeDir + "/probe"
	// LegacyProbePath is where earlier deployctl versions copied
	// themselves as the probe: the healthchecks of containers they made
	// run `LegacyProbePath probe ...`, which the probe program accepts.
	LegacyProbePath = ProbeDir + "/deployctl"
	MarkerPath      = ProbeDir + "/drain"
	ProbeState      = ProbeDir + "/state"
	MarkerDrain     = "drain\n"
	MarkerServe     = "serve\n"
)

// Container is what the engine knows about a Docker container.
type Container struct {
	ID      string
	Name    string
	Image   string // the reference it was created from, e.g. app:3f9ace5
	ImageID string
	Labels  map[string]string
	Created time.Time
	// Finished is when the container last stopped (zero if never).
	Finished time.Time

	State        string // running, exited, created, restarting, paused, dead
	Health       string // "", starting, healthy, unhealthy
	ExitCode     int
	RestartCount int
	// HealthLog is Docker's log of the most recent runs of the
	// healthcheck (Docker keeps five), oldest first.
	HealthLog []HealthRun
	// FailingStreak is Docker's count of consecutive failed health probes
	// (0 once one passes). Above 0 while Health is still "healthy": the
	// check has started failing and Docker has not given up on it yet.
	FailingStreak int
	// Env is the container's own environment (KEY=VALUE), without what its
	// image set: --env, --env-file and what was copied from the container
	// it replaced. Its values may be secrets: they are only ever used to
	// redact relayed output, never shown.
	Env []string `json:"-"`

	// Networks maps each network the container is attached to onto its IP
	// address there ("" while the container is not running).
	Networks map[string]string
	// Ports are the exposed TCP ports, ascending (the image's included).
	Ports []int

	ReadOnlyRootfs bool
	StopSignal     string
	StopTimeout    time.Duration // 0: not set on the container
	// Healthcheck is the container's effective healthcheck, nil if none.
	Healthcheck *Healthcheck
	// OwnHealthcheck is the healthcheck set on the container itself, nil when
	// it has none or it is the same as its image's.
	OwnHealthcheck *Healthcheck
}

// HealthRun is one run of a container's healthcheck, as Docker logs it.
type HealthRun struct {
	Start    time.Time // when it began, by the Docker host's clock
	ExitCode int       // 0: passed
	Output   string
}

// Running reports whether the container is up (running or restarting).
func (c Container) Running() bool { return c.State == "running" || c.State == "restarting" }

// Short is the container's name, or its short ID when it has none.
func (c Container) Short() string {
	if c.Name != "" {
		return c.Name
	}
	if len(c.ID) > 12 {
		return c.ID[:12]
	}
	return c.ID
}

// Image is what the engine needs to know about an image.
type Image struct {
	ID           string
	OS           string
	Arch         string
	Healthcheck  *Healthcheck
	ExposedPorts []int
}

// Healthcheck mirrors Docker's HEALTHCHECK: Test is ["CMD", args...],
// ["CMD-SHELL", cmd] or ["NONE"]. Zero durations mean Docker's defaults.
type Healthcheck struct {
	Test        []string      `json:"test"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	StartPeriod time.Duration `json:"start_period,omitempty"`
	Retries     int           `json:"retries,omitempty"`
}

// Docker's defaults for a healthcheck's zero values.
const (
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 30 * time.Second
	DefaultHealthRetries  = 3
)

// Disabled reports whether the healthcheck is absent or explicitly off.
func (h *Healthcheck) Disabled() bool {
	return h == nil || len(h.Test) == 0 || h.Test[0] == "NONE"
}

// WithDefaults returns h with Docker's defaults filled in.
func (h Healthcheck) WithDefaults() Healthcheck {
	if h.Interval <= 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultHealthTimeout
	}
	if h.Retries <= 0 {
		h.Retries = DefaultHealthRetries
	}
	return h
}

// File is a file to place in a container: Data, or the file at Source on
// this machine (streamed, for large files such as the probe).
type File struct {
	Path   string
	Mode   int64
	Data   []byte
	Source string
}

// CreateSpec says how to create the new container.
type CreateSpec struct {
	Name  string
	Image string
	// From is the ID of a container whose configuration is copied (env,
	// labels, networks with aliases, mounts, restart policy, command, user,
	// resources, stop signal/timeout), minus what came from its image, and
	// minus host port bindings. Empty on a first deploy.
	From string
	// Labels are set on top of the copied ones.
	Labels map[string]string
	// Env entries KEY=VALUE replace copied ones with the same key.
	Env []string
	// Networks to attach, in addition to the copied ones; on a first deploy
	// the first one is the container's primary network.
	Networks []string
	// Volumes in docker run's -v syntax, replacing copied mounts with the
	// same destination.
	Volumes []string
	// Healthcheck replaces the healthcheck when not nil.
	Healthcheck *Healthcheck
	// StopTimeout replaces the stop timeout when not zero.
	StopTimeout time.Duration
	// Restart is a restart policy as in docker run --restart; empty keeps
	// the copied one (unless-stopped on a first deploy).
	Restart string
	// RemoveLabels are copied labels the new container does not carry
	// (the user's routers, which an atomic switch moves onto a route
	// container), removed before Labels are set.
	RemoveLabels []string
	// Entrypoint, when not nil, replaces the entrypoint and clears the
	// command (a route container runs the probe's hold mode).
	Entrypoint []string
	// Command, when not nil, replaces the command, the entrypoint kept
	// (a release command: docker compose run SERVICE CMD...).
	Command []string
	// NetworkMode, when not empty, is the container's network mode, e.g.
	// "container:<id>" to join another container's network namespace
	// (the helper that counts an old container's connections).
	NetworkMode string
	// Config, when not nil, is the configuration the fields above apply
	// to, given instead of copied from From: a compose service's, from
	// its file (package compose). The image's defaults apply to what it
	// leaves empty.
	Config *ContainerConfig
}

// ContainerConfig is a container's whole configuration, given rather than
// copied from a running container (CreateSpec.Config): the target state of
// a declared service. Zero values mean the image's or Docker's default.
type ContainerConfig struct {
	Env        []string // KEY=VALUE
	Labels     map[string]string
	Entrypoint []string // nil: the image's
	Command    []string // nil: the image's
	User       string
	WorkingDir string
	Hostname   string
	StopSignal string
	// StopTimeout: 0 is Docker's default (10 s).
	StopTimeout time.Duration
	Healthcheck *Healthcheck // nil: the image's
	Restart     string       // as docker run --restart; "": no
	// Networks, the first the container's primary network, each with
	// its aliases.
	Networks       []NetworkAttachment
	Binds          []string          // docker run -v syntax
	Tmpfs          map[string]string // mount point -> options
	ReadOnly       bool
	Init           *bool
	Privileged     bool
	CapAdd         []string
	CapDrop        []string
	ExtraHosts     []string // host:ip
	DNS            []string
	DNSSearch      []string
	SecurityOpt    []string
	Sysctls        map[string]string
	GroupAdd       []string
	Memory         int64 // bytes; 0: no limit
	MemReservation int64
	NanoCPUs       int64
	PidsLimit      *int64
	ShmSize        int64
	Tty            bool
	OpenStdin      bool
	// Expose are the exposed ports ("8080", "8080/udp"), which Traefik
	// picks the port from when no label names one; Publish are those
	// published on a host port Docker chooses, one per container
	// (compose's ports: ["8080"]).
	Expose     []string
	Publish    []string
	LogDriver  string
	LogOptions map[string]string
}

// NetworkAttachment is a network a container joins, and its aliases there.
type NetworkAttachment struct {
	Name    string
	Aliases []string
}

// ExecResult is what a command run in a container printed and its exit
// code.
type ExecResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Runtime is the container engine, implemented by dockerutil.
type Runtime interface {
	// List returns the containers, running or not, whose labels match every
	// key=value of selector (a value "" matches any value of that key).
	List(ctx context.Context, selector map[string]string) ([]Container, error)
	Inspect(ctx context.Context, id string) (Container, error)
	// Image inspects a local image; ErrImageNotFound when it is absent.
	Image(ctx context.Context, ref string) (Image, error)
	// Pull pulls an image from its registry.
	Pull(ctx context.Context, ref string) error
	// Create creates (but does not start) a container; warnings are things
	// the user should know, e.g. host port bindings that were not copied.
	Create(ctx context.Context, spec CreateSpec) (c Container, warnings []string, err error)
	// CopyFiles places files into a container, created or running.
	CopyFiles(ctx context.Context, id string, files []File) error
	Start(ctx context.Context, id string) error
	// Stop sends the container's stop signal, waits up to timeout for it to
	// exit, then kills it.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Remove force-removes a container and its anonymous volumes; a missing
	// container is not an error.
	Remove(ctx context.Context, id string) error
	// Logs returns the last lines of a container's output.
	Logs(ctx context.Context, id string, lines int) (string, error)
	// Exec runs cmd in a running container and waits for it to exit.
	Exec(ctx context.Context, id string, cmd []string) (ExecResult, error)
}

// Server is one server of a router's service.
type Server struct {
	URL    string
	Status string // UP, DOWN, or "" when Traefik does not say
}

// Registered reports whether the router routes to the server.
func (s Server) Registered() bool { return s.Status != "DOWN" }

// Service is a router's service: for Traefik, a service (v2/v3) or a
// backend (v1).
type Service struct {
	Name    string
	Servers []Server
}

// Server finds a server by URL.
func (s Service) Server(url string) (Server, bool) {
	for _, srv := range s.Servers {
		if sameURL(srv.URL, url) {
			return srv, true
		}
	}
	return Server{}, false
}

// Reporter receives the engine's progress events.
type Reporter interface {
	Event(Event)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Event)

// Event implements Reporter.
func (f ReporterFunc) Event(e Event) { f(e) }

// Phase names a step of a rollout.
type Phase string

// The phases of a rollout, in order.
const (
	PhasePlan       Phase = "plan"
	PhaseCreate     Phase = "create"
	PhaseHealthy    Phase = "healthy"
	PhaseRegister   Phase = "register"
	PhaseDrain      Phase = "drain"
	PhaseStop       Phase = "stop"
	PhasePrune      Phase = "prune"
	PhaseRevert     Phase = "revert"
	PhaseDone       Phase = "done"
	PhaseDeregister Phase = "deregister"
	PhaseWatch      Phase = "watch"
	// PhaseSwitch is the atomic switch (--switch atomic): its done event
	// is the instant every new request goes to the new version.
	PhaseSwitch Phase = "switch"
)

// Status says what an event reports about its phase.
type Status string

// Event statuses.
const (
	StatusStart Status = "start"
	StatusDone  Status = "done"
	StatusInfo  Status = "info"
	StatusWarn  Status = "warning"
	StatusFail  Status = "failed"
)

// Event is one step of progress.
type Event struct {
	Time      time.Time `json:"time"`
	Phase     Phase     `json:"phase"`
	Status    Status    `json:"status"`
	Container string    `json:"container,omitempty"`
	URL       string    `json:"url,omitempty"`
	Message   string    `json:"message,omitempty"`
	// Code is a warning's stable code (the Warn constants), on warnings.
	Code    string        `json:"code,omitempty"`
	Elapsed time.Duration `json:"elapsed,omitempty"` // time spent in the phase, on done/failed
	// Step and Steps place the event in a run of several steps (a rollout
	// or rollback of several replicas, a scale): Step is the step being
	// run, 1-based, of Steps in the plan. Both are 0 (omitted) outside the
	// steps: a single-container rollout, the plan before step 1, and the
	// prune and done events after the last step. A failure and the
	// restore that follows it carry the step that failed; the --watch
	// window belongs to the last step (its old containers are stopped
	// after it).
	Step  int `json:"step,omitempty"`
	Steps int `json:"steps,omitempty"`
}
