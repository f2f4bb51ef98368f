package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one run, written as JSON.
type Report struct {
	Command   string           `json:"command"`
	Started   time.Time        `json:"started"`
	Finished  time.Time        `json:"finished"`
	DurationS float64          `json:"duration_s"`
	Config    ConfigInfo       `json:"config"`
	Machine   Machine          `json:"machine"`
	Traefik   TraefikInfo      `json:"traefik"`
	Apps      []AppInfo        `json:"apps"`
	Deployctl DeployctlInfo    `json:"deployctl"`
	Scenarios []ScenarioResult `json:"scenarios"`
	// Switch is the switch suite's (-switch), per switch.
	Switch []SwitchRow `json:"switch,omitempty"`
	// Compose is the compose suite's (-compose), per method and app kind.
	Compose []ComposeRow `json:"compose,omitempty"`
	// Swarm is the Swarm suite's (-swarm), per method, app kind and
	// Traefik poll period.
	Swarm []SwarmRow `json:"swarm,omitempty"`
}

// ConfigInfo is Config for JSON.
type ConfigInfo struct {
	Rollouts         int      `json:"rollouts"`
	BaselineRollouts int      `json:"baseline_rollouts"`
	Rate             int      `json:"rate_per_mode"`
	Modes            []string `json:"modes"`
	Kinds            []string `json:"kinds"`
	Methods          []string `json:"methods"`
	Throttle         string   `json:"traefik_throttle"`
	Warmup           string   `json:"warmup"`
	Settle           string   `json:"settle"`
	LameDuckDrain    string   `json:"lameduck_drain"`
	HealthInterval   string   `json:"health_interval"`
	Timeout          string   `json:"client_timeout"`
	WatchInterval    string   `json:"watch_interval"`
	DeployctlEnv     []string `json:"deployctl_env,omitempty"`
	Replicas         []int    `json:"replicas,omitempty"`
	Surges           []string `json:"surges,omitempty"`
	BaselineReplicas []int    `json:"baseline_replicas,omitempty"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPU        string `json:"cpu"`
	Memory     string `json:"memory"`
	Kernel     string `json:"kernel"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	Go         string `json:"go"`
	Docker     string `json:"docker"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
}

// TraefikInfo is the Traefik that was run.
type TraefikInfo struct {
	Version string   `json:"version"`
	Args    []string `json:"args"`
}

// AppInfo is an app kind's image.
type AppInfo struct {
	Kind       string `json:"kind"`
	Dockerfile string `json:"dockerfile"`
}

// DeployctlInfo is about the deployctl process.
type DeployctlInfo struct {
	Source     string     `json:"source"`
	BinaryMB   float64    `json:"binary_mb"`
	File       string     `json:"file"`
	Start      StartTimes `json:"start"`
	PeakRSSMiB float64    `json:"peak_rss_mib_max"` // over all rollouts
}

// StartTimes are wall times of short deployctl commands.
type StartTimes struct {
	Runs      int  `json:"runs"`
	VersionMS Dist `json:"version_ms"`
	ProbeMS   Dist `json:"probe_tcp_ms"`
}

// Dist is a small distribution.
type Dist struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// ScenarioResult is one method on one app kind.
type ScenarioResult struct {
	Method       string      `json:"method"`
	Kind         string      `json:"kind"`
	App          string      `json:"app"`
	LoadStart    time.Time   `json:"load_start"`
	LoadEnd      time.Time   `json:"load_end"`
	WatcherPolls int         `json:"traefik_watcher_polls"`
	Load         []LoadStats `json:"load"`
	Rollouts     []Rollout   `json:"rollouts"`
	Summary      Summary     `json:"summary"`
	// The replicas suite only.
	Replica *ReplicaSummary `json:"replicas,omitempty"`
}

// Summary aggregates a scenario's rollouts.
type Summary struct {
	N          int     `json:"n"`
	Errors     int     `json:"errors"`
	WallMeanS  float64 `json:"wall_mean_s"`
	WallMaxS   float64 `json:"wall_max_s"`
	Phases     []Phase `json:"phases_mean"`
	Floor      *Floor  `json:"floor_mean,omitempty"`
	OverMaxS   float64 `json:"overhead_max_s,omitempty"`
	Lag        *Lag    `json:"lag_mean_ms,omitempty"`
	LagMax     *Lag    `json:"lag_max_ms,omitempty"`
	PeakRSSMiB float64 `json:"peak_rss_mib_max,omitempty"`
}

func newReport(cfg Config) *Report {
	d := func(x time.Duration) string { return x.String() }
	th := "default (2s)"
	if cfg.Throttle >= 0 {
		th = cfg.Throttle.String()
	}
	return &Report{Started: time.Now(), Config: ConfigInfo{
		Rollouts: cfg.Rollouts, BaselineRollouts: cfg.BaselineRollouts, Rate: cfg.Rate,
		Modes: cfg.Modes, Kinds: cfg.Kinds, Methods: cfg.Methods, Throttle: th,
		Warmup: d(cfg.Warmup), Settle: d(cfg.Settle), LameDuckDrain: d(cfg.LameDuckDrain),
		HealthInterval: d(cfg.HealthInterval), Timeout: d(cfg.Timeout), WatchInterval: d(cfg.WatchInterval),
		DeployctlEnv: cfg.DeployctlEnv,
		Replicas:     cfg.Replicas, Surges: cfg.Surges, BaselineReplicas: cfg.BaselineReplicas,
	}}
}

// Finish stamps the end of the run.
func (r *Report) Finish() {
	r.Finished = time.Now()
	r.DurationS = r.Finished.Sub(r.Started).Seconds()
	r.Machine.LoadAfter = loadavg()
	for _, s := range r.Scenarios {
		r.Deployctl.PeakRSSMiB = max(r.Deployctl.PeakRSSMiB, s.Summary.PeakRSSMiB)
	}
	for _, s := range r.Switch {
		r.Deployctl.PeakRSSMiB = max(r.Deployctl.PeakRSSMiB, s.PeakRSSMiB)
	}
}

// DeployctlFailed is the number of failed requests in deployctl scenarios.
func (r *Report) DeployctlFailed() int {
	n := 0
	for _, s := range r.Switch {
		n += s.Failed
	}
	for _, c := range r.Compose {
		if c.Method == MethodDeployctl {
			n += c.Failed
		}
	}
	for _, c := range r.Swarm {
		if c.Method == MethodDeployctl {
			n += c.Failed
		}
	}
	for _, s := range r.Scenarios {
		if s.Method == MethodDeployctl {
			for _, l := range s.Load {
				n += l.Failed
			}
		}
	}
	return n
}

// Write writes the report as indented JSON, creating the directory.
func (r *Report) Write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadReport reads a report written by Write, summing its scenarios up
// again (with this version's code).
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range r.Scenarios {
		if r.Scenarios[i].Replica != nil {
			r.Scenarios[i].aggregateReplicas()
		}
	}
	return &r, nil
}

func (s *ScenarioResult) aggregate() {
	sm := Summary{}
	order := []string{}
	sums := map[string]float64{}
	var floor Floor
	var lag, lagMax Lag
	nf, nl := 0, 0
	for _, r := range s.Rollouts {
		if r.Error != "" {
			sm.Errors++
			continue
		}
		sm.N++
		sm.WallMeanS += r.WallS
		sm.WallMaxS = max(sm.WallMaxS, r.WallS)
		for _, p := range r.Phases {
			if _, ok := sums[p.Name]; !ok {
				order = append(order, p.Name)
			}
			sums[p.Name] += p.S
		}
		sm.PeakRSSMiB = max(sm.PeakRSSMiB, float64(r.PeakRSSKiB)/1024)
		if f := r.Floor; f != nil {
			nf++
			floor.CreateS += f.CreateS
			floor.HealthyS += f.HealthyS
			floor.RegisterS += f.RegisterS
			floor.DrainS += f.DrainS
			floor.MarkerS += f.MarkerS
			floor.ExitS += f.ExitS
			floor.TotalS += f.TotalS
			floor.OverheadS += f.OverheadS
			floor.BeforeNewS += f.BeforeNewS
			sm.OverMaxS = max(sm.OverMaxS, f.OverheadS)
		}
		if l := r.Lag; l != nil {
			nl++
			lag.HealthyMS += l.HealthyMS
			lag.RegisterMS += l.RegisterMS
			lag.DrainMS += l.DrainMS
			lag.StopMS += l.StopMS
			lagMax.HealthyMS = max(lagMax.HealthyMS, l.HealthyMS)
			lagMax.RegisterMS = max(lagMax.RegisterMS, l.RegisterMS)
			lagMax.DrainMS = max(lagMax.DrainMS, l.DrainMS)
			lagMax.StopMS = max(lagMax.StopMS, l.StopMS)
		}
	}
	if sm.N > 0 {
		sm.WallMeanS /= float64(sm.N)
		for _, name := range order {
			sm.Phases = append(sm.Phases, Phase{Name: name, S: sums[name] / float64(sm.N)})
		}
	}
	if nf > 0 {
		k := float64(nf)
		floor = Floor{CreateS: floor.CreateS / k, HealthyS: floor.HealthyS / k, RegisterS: floor.RegisterS / k, DrainS: floor.DrainS / k, MarkerS: floor.MarkerS / k,
			ExitS: floor.ExitS / k, TotalS: floor.TotalS / k, OverheadS: floor.OverheadS / k, BeforeNewS: floor.BeforeNewS / k}
		sm.Floor = &floor
	}
	if nl > 0 {
		k := float64(nl)
		lag = Lag{HealthyMS: lag.HealthyMS / k, RegisterMS: lag.RegisterMS / k, DrainMS: lag.DrainMS / k, StopMS: lag.StopMS / k}
		sm.Lag, sm.LagMax = &lag, &lagMax
	}
	s.Summary = sm
}

func phaseString(ps []Phase) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %.2f", p.Name, p.S))
	}
	return strings.Join(parts, ", ")
}

// PrintTables writes the human-readable tables.
func PrintTables(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "\nMachine: %d CPUs (%s), %s RAM, Linux %s, Docker %s, %s; load before %s, after %s\n",
		m.CPUs, m.CPU, m.Memory, m.Kernel, m.Docker, m.Go, m.LoadBefore, m.LoadAfter)
	c := r.Config
	fmt.Fprintf(w, "Run: %s; %.0fs. Traefik %s (throttle %s); %d req/s per client mode (%s, concurrently); deployctl %d rollouts, baselines %d per app kind\n",
		r.Command, r.DurationS, r.Traefik.Version, c.Throttle, c.Rate, strings.Join(c.Modes, " + "), c.Rollouts, c.BaselineRollouts)

	if len(c.Replicas) > 0 {
		fmt.Fprintf(w, "Replicas suite: deployctl N = %v at --max-surge %s (--max-unavailable 0); baselines N = %v\n", c.Replicas, strings.Join(c.Surges, ", "), c.BaselineReplicas)
	}

	if len(r.Scenarios) == 0 { // a suite of its own (-switch, -compose, -swarm)
		printSwitchTable(w, r)
		printComposeTable(w, r)
		printSwarmTable(w, r)
		printDeployctlProcess(w, r)
		return
	}
	fmt.Fprintf(w, "\nRequests (latency in ms; switch = requests sent while a rollout ran)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tapp\tclient\tsent\tfailed\t5xx\trefused\treset\ttimeout\tother\tsteady p50\tp99\tmax\tswitch p50\tp99\tmax\t")
	for _, s := range r.Scenarios {
		for _, l := range s.Load {
			other := l.Failed - l.ByKind["5xx"] - l.ByKind[FailRefused] - l.ByKind[FailReset] - l.ByKind[FailTimeout]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%.0f\t\n",
				s.Method, s.label(), l.Mode, l.Sent, l.Failed, l.ByKind["5xx"], l.ByKind[FailRefused], l.ByKind[FailReset], l.ByKind[FailTimeout], other,
				l.Steady.P50, l.Steady.P99, l.Steady.Max, l.Switch.P50, l.Switch.P99, l.Switch.Max)
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\nWall time per rollout (s; phases: mean)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\tapp\trollouts\tmean\tmax\tphases")
	for _, s := range r.Scenarios {
		sm := s.Summary
		n := fmt.Sprint(sm.N)
		if sm.Errors > 0 {
			n += fmt.Sprintf(" (+%d failed)", sm.Errors)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%s\n", s.Method, s.label(), n, sm.WallMeanS, sm.WallMaxS, phaseString(sm.Phases))
	}
	tw.Flush()

	if len(c.Replicas) > 0 {
		printReplicaTables(w, r)
	}
	printSwitchTable(w, r)
	printComposeTable(w, r)

	var dc []ScenarioResult
	for _, s := range r.Scenarios {
		if s.Method == MethodDeployctl && s.Summary.Floor != nil {
			dc = append(dc, s)
		}
	}
	if len(dc) > 0 {
		fmt.Fprintf(w, "\ndeployctl against the physical floor (s, mean per rollout): floor = Docker create + start (create requested -> start event)\n"+
			"+ new healthy (start -> healthy event) + registered (-> Traefik lists it) + drain (marker requested -> Traefik drops old;\n"+
			"'marker' is Docker copying it in) + exit (stop requested -> Docker's stop event); overhead = wall - floor, max = its max\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "app\twall\tfloor\tcreate+start\thealthy\tregister\tdrain\t(marker)\texit\toverhead\tmax\tbefore create\t")
		for _, s := range dc {
			f := s.Summary.Floor
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", s.Kind, s.Summary.WallMeanS, f.TotalS,
				f.CreateS, f.HealthyS, f.RegisterS, f.DrainS, f.MarkerS, f.ExitS, f.OverheadS, s.Summary.OverMaxS, f.BeforeNewS)
		}
		tw.Flush()
		fmt.Fprintf(w, "\ndeployctl reaction lag (ms, mean / max; Traefik watcher polls every %s, progress lines have ms resolution)\n", r.Config.WatchInterval)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "app\tDocker healthy -> healthy done\tTraefik lists new -> register done\tTraefik drops old -> drain done\tDocker stop event -> stop done\t")
		for _, s := range dc {
			l, x := s.Summary.Lag, s.Summary.LagMax
			fmt.Fprintf(tw, "%s\t%.0f / %.0f\t%.0f / %.0f\t%.0f / %.0f\t%.0f / %.0f\t\n", s.Kind,
				l.HealthyMS, x.HealthyMS, l.RegisterMS, x.RegisterMS, l.DrainMS, x.DrainMS, l.StopMS, x.StopMS)
		}
		tw.Flush()
	}
	printDeployctlProcess(w, r)

	var fails []string
	for _, s := range r.Scenarios {
		for _, l := range s.Load {
			if l.Failed > 0 {
				kinds := make([]string, 0, len(l.ByKind))
				for k, n := range l.ByKind {
					kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
				}
				sort.Strings(kinds)
				fails = append(fails, fmt.Sprintf("  %s/%s/%s: %s", s.Method, s.Kind, l.Mode, strings.Join(kinds, ", ")))
				for i, b := range l.Bursts {
					if i == 5 {
						fails = append(fails, fmt.Sprintf("    ... %d more bursts", len(l.Bursts)-i))
						break
					}
					where := "between rollouts"
					if b.Rollout > 0 {
						where = fmt.Sprintf("rollout %d", b.Rollout)
						if b.Phase != "" {
							where += ", phase " + b.Phase
						}
					}
					fails = append(fails, fmt.Sprintf("    %s-%s: %d failed (%s)", b.From.Format("15:04:05.000"), b.To.Format("15:04:05.000"), b.Count, where))
				}
			}
		}
	}
	if len(fails) > 0 {
		fmt.Fprintf(w, "\nFailed requests:\n%s\n", strings.Join(fails, "\n"))
	}
}

// label is the app kind, and N and the surge in the replicas suite.
func (s ScenarioResult) label() string {
	if s.Replica == nil {
		return s.Kind
	}
	l := fmt.Sprintf("%s N=%d", s.Kind, s.Replica.Replicas)
	if s.Replica.Surge != "" {
		l += " surge " + s.Replica.Surge
	}
	return l
}

func shortFile(s string) string {
	switch {
	case strings.Contains(s, "statically linked"):
		return "statically linked"
	case s == "":
		return "?"
	}
	if i := strings.Index(s, ","); i > 0 {
		return s[:i]
	}
	return s
}

// printDeployctlProcess prints what deployctl was and what it cost.
func printDeployctlProcess(w io.Writer, r *Report) {
	d := r.Deployctl
	fmt.Fprintf(w, "\ndeployctl: %s\n", d.Source)
	fmt.Fprintf(w, "deployctl process: binary %.1f MB (%s)", d.BinaryMB, shortFile(d.File))
	if d.Start.Runs > 0 {
		fmt.Fprintf(w, "; start: 'version' median %.1f ms (min %.1f, max %.1f), 'probe --tcp' median %.1f ms (min %.1f, max %.1f) over %d runs",
			d.Start.VersionMS.Median, d.Start.VersionMS.Min, d.Start.VersionMS.Max, d.Start.ProbeMS.Median, d.Start.ProbeMS.Min, d.Start.ProbeMS.Max, d.Start.Runs)
	}
	if d.PeakRSSMiB > 0 {
		fmt.Fprintf(w, "; peak RSS of a rollout %.1f MiB", d.PeakRSSMiB)
	}
	fmt.Fprintln(w)
}
