package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/harness"
)

// Methods: deployctl and the baselines of the issue.
const (
	MethodDeployctl = "deployctl"
	MethodStopFirst = "stop-first" // (a) stop old, then run new
	MethodSleep5    = "sleep-5s"   // (b) run new, wait healthy, sleep 5s, stop old (Kamal 1)
	MethodArticle   = "article"    // (c) run new, poll Traefik for it, stop old, poll until gone
)

var allMethods = []string{MethodDeployctl, MethodStopFirst, MethodSleep5, MethodArticle}

// Phase names of the baselines (deployctl's come from its --json result).
const (
	phaseCreate     = "create" // docker create + start
	phaseHealthy    = "healthy"
	phaseRegister   = "register"
	phaseSleep      = "sleep"
	phaseStop       = "stop"
	phaseDeregister = "deregister"
)

// Rollout is one measured rollout.
type Rollout struct {
	Index int    `json:"index"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Start and End bound the rollout: the deployctl process, or the
	// baseline's steps.
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	WallS  float64   `json:"wall_s"`
	Phases []Phase   `json:"phases"`
	Error  string    `json:"error,omitempty"`

	NewID  string `json:"new_id"`
	NewURL string `json:"new_url"`
	OldID  string `json:"old_id"`
	OldURL string `json:"old_url"`

	// Observed by the bench's watchers (zero when not seen).
	Obs Observed `json:"observed"`

	// deployctl only.
	ExitCode int `json:"exit_code,omitempty"`
	// SwitchedAt and InFlightAtSignal are the result's (--switch atomic):
	// the switch instant, and the first old container's connections in
	// flight at its stop signal.
	SwitchedAt       *time.Time `json:"switched_at,omitempty"`
	InFlightAtSignal *int       `json:"in_flight_at_signal,omitempty"`
	PeakRSSKiB       int64      `json:"peak_rss_kib,omitempty"`
	Progress         []string   `json:"progress,omitempty"` // its stderr lines
	Floor            *Floor     `json:"floor,omitempty"`
	Lag              *Lag       `json:"lag,omitempty"`
	// The replicas suite only.
	Replica *ReplicaObs `json:"replicas,omitempty"`
	events  []evStamp   // parsed progress lines
}

// Phase is the duration of one phase of a rollout.
type Phase struct {
	Name string  `json:"name"`
	S    float64 `json:"s"`
}

// Observed are the times of what happened, from Docker's event stream and
// the Traefik watcher.
type Observed struct {
	NewStart   time.Time `json:"new_start"`     // Docker: start
	NewHealthy time.Time `json:"new_healthy"`   // Docker: health_status: healthy
	NewListed  time.Time `json:"new_listed"`    // Traefik lists the new server
	OldDrain   time.Time `json:"old_drain"`     // deployctl wrote the drain marker
	OldUnhlthy time.Time `json:"old_unhealthy"` // Docker: health_status: unhealthy
	OldGone    time.Time `json:"old_gone"`      // Traefik no longer lists the old server
	OldKill    time.Time `json:"old_kill"`      // Docker: kill (the stop signal)
	OldDie     time.Time `json:"old_die"`       // Docker: die
	OldStopped time.Time `json:"old_stopped"`   // Docker: stop (the stop API returns)
}

// Floor is what the components themselves take in one deployctl rollout,
// each from the moment deployctl asks for it (its progress line written
// just before the Docker call) to the moment Docker or Traefik shows it
// done: Docker creating and starting the new container (-> Docker's start
// event), the new container turning healthy (start -> healthy event),
// Traefik listing it (healthy event -> listed), the drain (the drain marker
// requested -> Traefik no longer lists the old server; MarkerS of it is
// Docker's copy of the marker into the container) and the old container's
// exit (stop requested -> Docker's stop event, after its teardown).
// OverheadS is the wall time beyond their sum: deployctl's start, planning
// and lock, its reaction lags, the drain grace and the history record.
type Floor struct {
	CreateS    float64 `json:"create_s"`
	HealthyS   float64 `json:"healthy_s"`
	RegisterS  float64 `json:"register_s"`
	DrainS     float64 `json:"drain_s"`
	MarkerS    float64 `json:"marker_s"` // part of DrainS: Docker copying the marker in
	ExitS      float64 `json:"exit_s"`
	TotalS     float64 `json:"total_s"`
	OverheadS  float64 `json:"overhead_s"`
	BeforeNewS float64 `json:"before_create_s"` // process start -> create requested
}

// Lag is how long deployctl took to act on what had already happened, from
// its progress lines' timestamps (ms resolution) against the watchers.
type Lag struct {
	HealthyMS  float64 `json:"healthy_ms"`  // Docker healthy event -> healthy done
	RegisterMS float64 `json:"register_ms"` // Traefik lists new -> register done
	DrainMS    float64 `json:"drain_ms"`    // Traefik drops old -> drain done
	StopMS     float64 `json:"stop_ms"`     // Docker stop event (stop API done) -> stop done
}

// evStamp is one parsed progress line of deployctl.
type evStamp struct {
	t      time.Time
	phase  string
	status string
	rest   string
}

// scenario is one method on one app kind: a first deploy, then K rollouts
// under load.
type scenario struct {
	b      *bench
	method string
	kind   string
	app    string // also the Traefik service name and the Host prefix
	repo   string
	olds   []string // container IDs of the baselines, to remove
}

func (s *scenario) host() string    { return s.app + ".bench" }
func (s *scenario) service() string { return s.app + "@docker" }

func (s *scenario) labels() map[string]string {
	return map[string]string{
		"traefik.enable": "true",
		"traefik.http.routers." + s.app + ".rule":                      "Host(`" + s.host() + "`)",
		"traefik.http.services." + s.app + ".loadbalancer.server.port": "8080",
		benchAppLabel: s.app,
	}
}

// benchAppLabel marks the baselines' containers, for cleanup.
const benchAppLabel = "deployctl-bench.app"

func version(i int) string { return "v" + strconv.Itoa(i) }

// firstDeploy puts v1 in place and waits until Traefik routes to it.
func (s *scenario) firstDeploy(ctx context.Context) (id, url string, err error) {
	if s.method == MethodDeployctl {
		args := []string{"rollout", "--app", s.app, "--image", s.repo, "--version", "v1",
			"--network", s.b.network, "--env", "APP_VERSION=v1",
			"--switch", "gradual"} // containers with their own routers, as the baselines make them: service()
		for k, v := range s.labels() {
			if k != benchAppLabel {
				args = append(args, "--label", k+"="+v)
			}
		}
		r := &Rollout{}
		if err := s.b.deployctl(ctx, r, args...); err != nil {
			return "", "", fmt.Errorf("first deploy: %w", err)
		}
		return r.NewID, r.NewURL, nil
	}
	id, url, err = s.startContainer("v1")
	if err != nil {
		return "", "", err
	}
	if _, err := harness.WaitHealth(ctx, s.b.cli, id, "healthy", 60*time.Second, pollInterval); err != nil {
		return "", "", err
	}
	if err := s.waitListed(ctx, url, true); err != nil {
		return "", "", err
	}
	return id, url, nil
}

const pollInterval = deploy.DefaultPollInterval // the baselines poll as often as deployctl

// startContainer runs a baseline container of version v.
func (s *scenario) startContainer(v string) (id, url string, err error) {
	id, remove, err := harness.StartContainer(s.b.cli, harness.ContainerOptions{
		Image:   s.repo + ":" + v,
		Name:    s.app + "-" + v,
		Network: s.b.network,
		Env:     []string{"APP_VERSION=" + v},
		Labels:  s.labels(),
	})
	if err != nil {
		if remove != nil {
			remove()
		}
		return "", "", err
	}
	ip, err := harness.ContainerIP(s.b.cli, id, s.b.network)
	if err != nil {
		return id, "", err
	}
	return id, "http://" + net.JoinHostPort(ip, "8080"), nil
}

// waitListed polls Traefik until url is listed (want) or gone (!want).
func (s *scenario) waitListed(ctx context.Context, url string, want bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		svc, err := s.b.traefik.HTTPService(s.service())
		if err == nil {
			listed := false
			if svc != nil {
				for _, u := range svc.ServerURLs() {
					if u == url && svc.ServerStatus[u] != "DOWN" {
						listed = true
					}
				}
			}
			if listed == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Traefik: %s listed=%v not reached within 60s (last error %v)", url, want, err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pollInterval):
		}
	}
}

// stop stops a container (its stop signal, 10s, then kill) and waits for it
// to exit.
func (s *scenario) stop(ctx context.Context, id string) error {
	_, err := s.b.cli.ContainerStop(ctx, id, client.ContainerStopOptions{})
	return err
}

// baseline performs one rollout of a baseline method from (oldID, oldURL)
// to version v.
func (s *scenario) baseline(ctx context.Context, r *Rollout, v string) error {
	t := time.Now()
	mark := func(name string) {
		now := time.Now()
		r.Phases = append(r.Phases, Phase{Name: name, S: now.Sub(t).Seconds()})
		t = now
	}
	var err error
	switch s.method {
	case MethodStopFirst:
		if err = s.stop(ctx, r.OldID); err != nil {
			return err
		}
		mark(phaseStop)
		if r.NewID, r.NewURL, err = s.startContainer(v); err != nil {
			return err
		}
		mark(phaseCreate)
		if _, err = harness.WaitHealth(ctx, s.b.cli, r.NewID, "healthy", 60*time.Second, pollInterval); err != nil {
			return err
		}
		mark(phaseHealthy)
		if err = s.waitListed(ctx, r.NewURL, true); err != nil {
			return err
		}
		mark(phaseRegister)
	case MethodSleep5:
		if r.NewID, r.NewURL, err = s.startContainer(v); err != nil {
			return err
		}
		mark(phaseCreate)
		if _, err = harness.WaitHealth(ctx, s.b.cli, r.NewID, "healthy", 60*time.Second, pollInterval); err != nil {
			return err
		}
		mark(phaseHealthy)
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(5 * time.Second):
		}
		mark(phaseSleep)
		if err = s.stop(ctx, r.OldID); err != nil {
			return err
		}
		mark(phaseStop)
	case MethodArticle:
		if r.NewID, r.NewURL, err = s.startContainer(v); err != nil {
			return err
		}
		mark(phaseCreate)
		if err = s.waitListed(ctx, r.NewURL, true); err != nil {
			return err
		}
		mark(phaseRegister)
		if err = s.stop(ctx, r.OldID); err != nil {
			return err
		}
		mark(phaseStop)
		if err = s.waitListed(ctx, r.OldURL, false); err != nil {
			return err
		}
		mark(phaseDeregister)
	default:
		return fmt.Errorf("unknown method %q", s.method)
	}
	return nil
}

// deployctlResult is deployctl's --json document.
type deployctlResult struct {
	OK       bool           `json:"ok"`
	ExitCode int            `json:"exit_code"`
	Result   *deploy.Result `json:"result"`
	Error    *struct {
		Phase   string `json:"phase"`
		Message string `json:"message"`
	} `json:"error"`
}

// deployctl runs the deployctl binary with --json, records its progress
// lines, phases, exit code and peak RSS into r. On interruption it passes
// SIGINT on to deployctl (which then puts the old version back) and waits
// for it.
func (b *bench) deployctl(ctx context.Context, r *Rollout, args ...string) error {
	cmd := exec.Command(b.deployctlBin, append(args, "--json")...)
	cmd.Env = os.Environ()
	if b.traefik != nil { // the Swarm suite gives its own (extraEnv)
		cmd.Env = append(cmd.Env, "DEPLOYCTL_TRAEFIK_URL="+b.traefik.APIURL)
	}
	cmd.Env = append(cmd.Env, b.cfg.DeployctlEnv...)
	cmd.Env = append(cmd.Env, b.extraEnv...)
	// Own process group: a Ctrl-C in the terminal reaches the bench only,
	// which passes one SIGINT on (a second one would make deployctl exit
	// without cleaning up).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	r.Start = time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	stopFwd := context.AfterFunc(ctx, func() { cmd.Process.Signal(os.Interrupt) })
	defer stopFwd()
	hwm := watchHWM(cmd.Process.Pid)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		now := time.Now()
		r.Progress = append(r.Progress, line)
		if ev, ok := parseProgress(line, now); ok {
			r.events = append(r.events, ev)
		}
		if b.cfg.Verbose {
			fmt.Fprintf(b.log, "    | %s\n", line)
		}
	}
	werr := cmd.Wait()
	r.End = time.Now()
	r.WallS = r.End.Sub(r.Start).Seconds()
	r.PeakRSSKiB = hwm()
	r.ExitCode = cmd.ProcessState.ExitCode()
	var res deployctlResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return fmt.Errorf("deployctl %s: exit %v, --json output unreadable (%v): %s\n%s", strings.Join(args, " "), werr, err, stdout.String(), strings.Join(r.Progress, "\n"))
	}
	if !res.OK || res.Result == nil {
		msg := ""
		if res.Error != nil {
			msg = res.Error.Phase + ": " + res.Error.Message
		}
		return fmt.Errorf("deployctl %s: exit %d: %s\n%s", strings.Join(args, " "), r.ExitCode, msg, strings.Join(r.Progress, "\n"))
	}
	for _, p := range res.Result.Phases {
		r.Phases = append(r.Phases, Phase{Name: string(p.Phase), S: time.Duration(p.Duration).Seconds()})
	}
	r.NewID, r.NewURL = res.Result.New.ID, res.Result.New.URL
	r.SwitchedAt = res.Result.SwitchedAt
	if len(res.Result.Old) > 0 {
		r.OldID, r.OldURL = res.Result.Old[0].ID, res.Result.Old[0].URL
		r.InFlightAtSignal = res.Result.Old[0].InFlightAtSignal
	}
	return nil
}

// parseProgress parses "15:04:05.000 <phase> <status> ..." (local time of
// day) into a time near now.
func parseProgress(line string, now time.Time) (evStamp, bool) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return evStamp{}, false
	}
	tod, err := time.ParseInLocation("15:04:05.000", f[0], now.Location())
	if err != nil {
		return evStamp{}, false
	}
	y, m, d := now.Date()
	t := time.Date(y, m, d, tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), now.Location())
	// Around midnight the line may belong to the previous day.
	if t.Sub(now) > 12*time.Hour {
		t = t.AddDate(0, 0, -1)
	}
	rest := ""
	if i := strings.Index(line, f[2]); i >= 0 {
		rest = strings.TrimSpace(line[i+len(f[2]):])
	}
	return evStamp{t: t, phase: f[1], status: f[2], rest: rest}, true
}

// progress returns the time of deployctl's first progress line with phase
// and status whose text contains substr.
func (r *Rollout) progress(phase, status, substr string) time.Time {
	for _, e := range r.events {
		if e.phase == phase && e.status == status && strings.Contains(e.rest, substr) {
			return e.t
		}
	}
	return time.Time{}
}

// watchHWM samples the peak resident set size (VmHWM) of process pid every
// 10ms until the returned function is called, which returns the last value
// in KiB. (wait4's ru_maxrss would not do: Go starts children with vfork,
// so it counts the parent's memory too.)
func watchHWM(pid int) func() int64 {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	stop := make(chan struct{})
	done := make(chan int64)
	go func() {
		var peak int64
		for {
			if b, err := os.ReadFile(path); err == nil {
				for _, l := range strings.Split(string(b), "\n") {
					if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
						if f := strings.Fields(rest); len(f) > 0 {
							if kib, err := strconv.ParseInt(f[0], 10, 64); err == nil && kib > peak {
								peak = kib
							}
						}
					}
				}
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() int64 { close(stop); return <-done }
}
