package main

// The replicas benchmark (issue 11): multi-replica rollouts of deployctl
// (--replicas N --max-surge S --max-unavailable 0) against what users of
// several replicas do today: docker-rollout's method (scale to 2N, wait
// until the new ones are healthy, stop and remove the old ones, no drain)
// and stop-and-start of all N.

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/harness"
)

// Methods of the replicas suite besides deployctl.
const (
	MethodDockerRollout = "docker-rollout" // start N new, wait Docker healthy, stop + remove the N old
	MethodStopStart     = "stop-start"     // stop + remove the N old, start N new, wait healthy and listed
)

var replicaMethods = []string{MethodDeployctl, MethodDockerRollout, MethodStopStart}

// ReplicaObs is what the watchers saw during one rollout of several
// replicas.
type ReplicaObs struct {
	Replicas int    `json:"replicas"`
	Surge    string `json:"surge,omitempty"`
	// MinUp is the fewest servers of the app's Traefik service listed and
	// not DOWN, over the Traefik watcher's polls during the rollout (and
	// the state in force when it began).
	MinUp int `json:"min_up"`
	// PeakContainers is the most running containers of the app at once,
	// from Docker's start and die events.
	PeakContainers int `json:"peak_containers"`
	// Steps is the number of steps deployctl ran ("step i/n" in its
	// progress lines; 1 for a single replica), StepS their durations.
	Steps int       `json:"steps"`
	StepS []float64 `json:"step_s,omitempty"`
}

// ReplicaSummary aggregates a replicas scenario.
type ReplicaSummary struct {
	Replicas       int     `json:"replicas"`
	Surge          string  `json:"surge,omitempty"`
	Floor          int     `json:"min_up_floor,omitempty"`   // N - max-unavailable
	MaxRunning     int     `json:"max_running,omitempty"`    // N + surge
	MinUp          int     `json:"min_up"`                   // over all rollouts
	PeakContainers int     `json:"peak_containers"`          // over all rollouts
	Steps          int     `json:"steps"`                    // of the last rollout
	StepMeanS      float64 `json:"step_mean_s,omitempty"`    // over all steps
	FirstDeployS   float64 `json:"first_deploy_s,omitempty"` // deploying N from nothing
}

// replicaScenario is one method, app kind, N and (for deployctl) surge.
type replicaScenario struct {
	scenario
	n      int
	surge  string // deployctl's --max-surge
	budget deploy.Budget
	ids    []string // the serving containers (baselines)
	urls   []string
}

func appName(method, kind string, n int, surge string) string {
	m := map[string]string{MethodDeployctl: "dc", MethodDockerRollout: "dr", MethodStopStart: "ss"}[method]
	name := fmt.Sprintf("r%s-%s-n%d", m, kind, n)
	if surge != "" {
		name += "-s" + strings.ReplaceAll(surge, "%", "p")
	}
	return name
}

// runReplicaSuite runs every (kind, method, N, surge) of the suite.
func (b *bench) runReplicaSuite(ctx context.Context, rep *Report, logf func(string, ...any)) error {
	cfg := b.cfg
	for _, kind := range cfg.Kinds {
		for _, method := range cfg.Methods {
			ns, surges, k := cfg.Replicas, cfg.Surges, cfg.Rollouts
			if method != MethodDeployctl {
				ns, surges, k = cfg.BaselineReplicas, []string{""}, cfg.BaselineRollouts
			}
			if k == 0 {
				continue
			}
			for _, surge := range surges {
				for _, n := range ns {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					s := &replicaScenario{scenario: scenario{b: b, method: method, kind: kind, repo: b.repos[kind],
						app: appName(method, kind, n, surge)}, n: n, surge: surge}
					if surge != "" {
						a, err := deploy.ParseAmount("-surges", surge)
						if err != nil {
							return err
						}
						if s.budget, err = deploy.NewBudget(n, a, deploy.Amount{}); err != nil {
							return err
						}
					}
					desc := ""
					if surge != "" {
						desc = ", surge " + surge
					}
					logf("%s, %s app, %d replicas%s: %d rollouts at %d req/s per client mode (%s)", method, kind, n, desc, k, cfg.Rate, strings.Join(cfg.Modes, ", "))
					res, err := s.run(ctx, k, logf)
					if res != nil {
						rep.Scenarios = append(rep.Scenarios, *res)
					}
					s.cleanup()
					if err != nil {
						return fmt.Errorf("%s, %s app, %d replicas%s: %w", method, kind, n, desc, err)
					}
				}
			}
		}
	}
	return nil
}

// run deploys N replicas, starts the load and the watchers and performs k
// rollouts.
func (s *replicaScenario) run(ctx context.Context, k int, logf func(string, ...any)) (*ScenarioResult, error) {
	b := s.b
	res := &ScenarioResult{Method: s.method, Kind: s.kind, App: s.app,
		Replica: &ReplicaSummary{Replicas: s.n, Surge: s.surge}}
	if s.surge != "" {
		res.Replica.Floor, res.Replica.MaxRunning = s.budget.MinRouted(), s.budget.MaxRunning()
	}
	t0 := time.Now()
	if err := s.firstDeploy(ctx); err != nil {
		return nil, err
	}
	for _, u := range s.urls {
		if err := s.waitListed(ctx, u, true); err != nil {
			return nil, err
		}
	}
	res.Replica.FirstDeployS = time.Since(t0).Seconds()
	watcher := watchTraefik(b.traefik, s.service(), b.cfg.WatchInterval)
	defer watcher.stop()
	loads := map[string]*loadGen{}
	for _, m := range b.cfg.Modes {
		loads[m] = startLoad(m, b.traefik.EntryURL+"/", s.host(), b.cfg.Rate, b.cfg.Timeout)
	}
	res.LoadStart = time.Now()
	sleep(ctx, b.cfg.Warmup)

	var runErr error
	for i := 1; i <= k && ctx.Err() == nil; i++ {
		r := Rollout{Index: i, From: version(i), To: version(i + 1)}
		if s.method == MethodDeployctl {
			runErr = b.deployctl(ctx, &r, s.deployArgs(r.To)...)
		} else {
			r.Start = time.Now()
			runErr = s.baselineN(ctx, &r, r.To)
			r.End = time.Now()
			r.WallS = r.End.Sub(r.Start).Seconds()
		}
		if runErr != nil {
			r.Error = runErr.Error()
		}
		res.Rollouts = append(res.Rollouts, r)
		logf("  %s N=%d %s -> %s: %.2fs %s", s.method, s.n, r.From, r.To, r.WallS, phaseString(r.Phases))
		if runErr != nil {
			break
		}
		sleep(ctx, b.cfg.Settle)
	}
	res.LoadEnd = time.Now()
	samples := map[string][]sample{}
	for m, g := range loads {
		samples[m] = g.stop()
	}
	watcher.stop()
	time.Sleep(200 * time.Millisecond) // the last Docker events
	res.WatcherPolls = watcher.polls

	var switches []window
	for i := range res.Rollouts {
		r := &res.Rollouts[i]
		switches = append(switches, window{r.Start, r.End})
		o := &ReplicaObs{Replicas: s.n, Surge: s.surge}
		o.MinUp = watcher.minCount(r.Start, r.End)
		o.PeakContainers = b.events.peakRunning(s.app, r.Start, r.End)
		o.Steps, o.StepS = steps(r)
		r.Replica = o
	}
	for _, m := range b.cfg.Modes {
		st := summarize(m, b.cfg.Rate, samples[m], switches)
		st.Bursts = bursts(samples[m], res.Rollouts)
		res.Load = append(res.Load, st)
	}
	res.aggregate()
	res.aggregateReplicas()
	if runErr != nil {
		return res, runErr
	}
	return res, ctx.Err()
}

func (s *replicaScenario) deployArgs(v string) []string {
	return []string{"rollout", "--app", s.app, "--image", s.repo, "--version", v, "--env", "APP_VERSION=" + v,
		"--replicas", strconv.Itoa(s.n), "--max-surge", s.surge, "--max-unavailable", "0",
		"--switch", "gradual"} // the budget's steps; -switch measures the atomic switch
}

// firstDeploy puts N replicas of v1 in place.
func (s *replicaScenario) firstDeploy(ctx context.Context) error {
	if s.method == MethodDeployctl {
		args := append(s.deployArgs("v1"), "--network", s.b.network)
		for k, v := range s.labels() {
			if k != benchAppLabel {
				args = append(args, "--label", k+"="+v)
			}
		}
		r := &Rollout{}
		if err := s.b.deployctl(ctx, r, args...); err != nil {
			return fmt.Errorf("first deploy: %w", err)
		}
		return nil
	}
	var err error
	s.ids, s.urls, err = s.startN(ctx, "v1")
	if err != nil {
		return err
	}
	return s.waitAllHealthy(ctx, s.ids)
}

// startN starts N containers of version v at once (as docker compose up
// --scale does).
func (s *replicaScenario) startN(ctx context.Context, v string) (ids, urls []string, err error) {
	ids, urls = make([]string, s.n), make([]string, s.n)
	errs := make([]error, s.n)
	var wg sync.WaitGroup
	for i := range s.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], urls[i], errs[i] = s.startReplica(v, i+1)
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return ids, urls, e
		}
	}
	return ids, urls, nil
}

func (s *replicaScenario) startReplica(v string, i int) (id, url string, err error) {
	id, remove, err := harness.StartContainer(s.b.cli, harness.ContainerOptions{
		Image:   s.repo + ":" + v,
		Name:    fmt.Sprintf("%s-%s-%d", s.app, v, i),
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

func (s *replicaScenario) waitAllHealthy(ctx context.Context, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = harness.WaitHealth(ctx, s.b.cli, id, "healthy", 60*time.Second, pollInterval)
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// stopRemove stops (stop signal, 10s, kill) and removes containers at once,
// as docker stop a b c; docker rm a b c.
func (s *replicaScenario) stopRemove(ctx context.Context, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = s.stop(ctx, id); errs[i] == nil {
				_, errs[i] = s.b.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{})
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// baselineN performs one rollout of N replicas to version v with a
// baseline method.
func (s *replicaScenario) baselineN(ctx context.Context, r *Rollout, v string) error {
	t := time.Now()
	mark := func(name string) {
		now := time.Now()
		r.Phases = append(r.Phases, Phase{Name: name, S: now.Sub(t).Seconds()})
		t = now
	}
	oldIDs := s.ids
	var err error
	switch s.method {
	case MethodDockerRollout:
		// docker-rollout: scale to 2N, wait until the new containers are
		// healthy (Docker's health check), then stop and remove the old.
		ids, urls, err := s.startN(ctx, v)
		s.olds = append(s.olds, ids...)
		if err != nil {
			return err
		}
		mark(phaseCreate)
		if err := s.waitAllHealthy(ctx, ids); err != nil {
			return err
		}
		mark(phaseHealthy)
		if err := s.stopRemove(ctx, oldIDs); err != nil {
			return err
		}
		mark(phaseStop)
		s.ids, s.urls = ids, urls
	case MethodStopStart:
		if err = s.stopRemove(ctx, oldIDs); err != nil {
			return err
		}
		mark(phaseStop)
		ids, urls, err := s.startN(ctx, v)
		if err != nil {
			return err
		}
		mark(phaseCreate)
		if err := s.waitAllHealthy(ctx, ids); err != nil {
			return err
		}
		mark(phaseHealthy)
		for _, u := range urls {
			if err := s.waitListed(ctx, u, true); err != nil {
				return err
			}
		}
		mark(phaseRegister)
		s.ids, s.urls = ids, urls
	default:
		return fmt.Errorf("unknown method %q", s.method)
	}
	return nil
}

var stepRE = regexp.MustCompile(`\bstep (\d+)/(\d+)\b`)

// steps counts deployctl's steps from its progress lines and times each
// from its first line to the next step's first line (the last one to the
// end of the process). A single replica is one step: the whole rollout.
func steps(r *Rollout) (int, []float64) {
	if r.WallS == 0 {
		return 0, nil
	}
	n := 0
	first := map[int]time.Time{}
	for _, e := range r.events {
		m := stepRE.FindStringSubmatch(e.rest)
		if m == nil {
			continue
		}
		i, _ := strconv.Atoi(m[1])
		tot, _ := strconv.Atoi(m[2])
		n = max(n, tot)
		if _, ok := first[i]; !ok {
			first[i] = e.t
		}
	}
	if n == 0 {
		return 1, []float64{r.WallS}
	}
	var out []float64
	for i := 1; i <= n; i++ {
		from, ok := first[i]
		if !ok {
			return n, nil
		}
		to, ok := first[i+1]
		if !ok {
			to = r.End
		}
		out = append(out, to.Sub(from).Seconds())
	}
	return n, out
}

// aggregateReplicas sums up the replica observations: the budget (min UP,
// peak containers) over every rollout the watchers saw, also failed ones
// (a restore must keep the budget too); steps over the successful ones.
func (s *ScenarioResult) aggregateReplicas() {
	rs := s.Replica
	rs.MinUp = -1
	var sum float64
	var ns int
	for _, r := range s.Rollouts {
		o := r.Replica
		if o == nil {
			continue
		}
		if o.MinUp >= 0 && (rs.MinUp < 0 || o.MinUp < rs.MinUp) {
			rs.MinUp = o.MinUp
		}
		rs.PeakContainers = max(rs.PeakContainers, o.PeakContainers)
		if r.Error != "" {
			continue
		}
		rs.Steps = o.Steps
		for _, x := range o.StepS {
			sum += x
			ns++
		}
	}
	if ns > 0 {
		rs.StepMeanS = sum / float64(ns)
	}
}

// minCount is the fewest servers listed during [from, to], counting the
// snapshot in force at from.
func (w *traefikWatcher) minCount(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := -1
	for i, s := range w.snaps {
		inForce := !s.t.After(from) && (i+1 == len(w.snaps) || w.snaps[i+1].t.After(from))
		if inForce || (s.t.After(from) && !s.t.After(to)) {
			if m < 0 || len(s.urls) < m {
				m = len(s.urls)
			}
		}
	}
	return m
}

// peakRunning is the most containers of app running at once during
// [from, to], from the start and die events since the watcher began.
func (w *eventWatcher) peakRunning(app string, from, to time.Time) int {
	w.mu.Lock()
	evs := make([]dockerEvent, 0, len(w.events))
	for _, e := range w.events {
		if e.app == app && (e.action == "start" || e.action == "die") {
			evs = append(evs, e)
		}
	}
	w.mu.Unlock()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].t.Before(evs[j].t) })
	running := map[string]bool{}
	peak := -1
	for _, e := range evs {
		if e.t.After(to) {
			break
		}
		if e.t.After(from) && peak < 0 {
			peak = len(running) // in force at from
		}
		if e.action == "start" {
			running[e.id] = true
		} else {
			delete(running, e.id)
		}
		if e.t.After(from) {
			peak = max(peak, len(running))
		}
	}
	return max(peak, len(running))
}

// sumLoad adds up the client modes of a scenario.
func sumLoad(s ScenarioResult) (sent, failed int, kinds string, p99, maxMS float64) {
	by := map[string]int{}
	for _, l := range s.Load {
		sent += l.Sent
		failed += l.Failed
		for k, n := range l.ByKind {
			if !strings.Contains(k, ":") || strings.HasPrefix(k, "http:") {
				by[k] += n
			}
		}
		p99 = max(p99, l.Switch.P99)
		maxMS = max(maxMS, l.Switch.Max)
	}
	var parts []string
	for k, n := range by {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return sent, failed, strings.Join(parts, ", "), p99, maxMS
}

// wallOf is the mean wall time of deployctl's scenario of kind, n, surge
// (0 if none ran).
func wallOf(r *Report, kind string, n int, surge string) float64 {
	for _, s := range r.Scenarios {
		if s.Method == MethodDeployctl && s.Kind == kind && s.Replica != nil && s.Replica.Replicas == n && s.Replica.Surge == surge && s.Summary.N > 0 {
			return s.Summary.WallMeanS
		}
	}
	return 0
}

// printReplicaTables writes the tables and verdicts of the replicas suite.
func printReplicaTables(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\nRollouts of N replicas under load (sent/failed: both client modes; wall and steps in s; extra step = (wall(N) - wall(1)) / (N - 1);\n"+
		"min UP: fewest UP servers of the app in Traefik during a rollout / the floor N - max-unavailable; peak: most running containers / N + surge)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tapp\tN\tsurge\trollouts\tsent\tfailed\tby kind\twall mean\tmax\tsteps\tstep mean\textra step\tmin UP\tpeak\tpeak RSS MiB\tswitch p99 ms\tmax\t")
	for _, s := range r.Scenarios {
		rs := s.Replica
		if rs == nil {
			continue
		}
		sent, failed, kinds, p99, mx := sumLoad(s)
		if kinds == "" {
			kinds = "-"
		}
		n := fmt.Sprint(s.Summary.N)
		if s.Summary.Errors > 0 {
			n += fmt.Sprintf(" (+%d failed)", s.Summary.Errors)
		}
		surge, extra, minUp, peak, rss, stepMean := "-", "-", fmt.Sprint(rs.MinUp), fmt.Sprint(rs.PeakContainers), "-", "-"
		if s.Method == MethodDeployctl {
			surge = rs.Surge
			minUp = fmt.Sprintf("%d / %d", rs.MinUp, rs.Floor)
			peak = fmt.Sprintf("%d / %d", rs.PeakContainers, rs.MaxRunning)
			rss = fmt.Sprintf("%.1f", s.Summary.PeakRSSMiB)
			stepMean = fmt.Sprintf("%.2f", rs.StepMeanS)
			if w1 := wallOf(r, s.Kind, 1, rs.Surge); rs.Replicas > 1 && w1 > 0 {
				extra = fmt.Sprintf("%.2f", (s.Summary.WallMeanS-w1)/float64(rs.Replicas-1))
			}
		}
		steps := "-"
		if s.Method == MethodDeployctl {
			steps = fmt.Sprint(rs.Steps)
		}
		wallMean, wallMax := fmt.Sprintf("%.2f", s.Summary.WallMeanS), fmt.Sprintf("%.2f", s.Summary.WallMaxS)
		if s.Summary.N == 0 {
			wallMean, wallMax, steps, stepMean, extra, rss = "-", "-", "-", "-", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t\n",
			s.Method, s.Kind, rs.Replicas, surge, n, sent, failed, kinds, wallMean, wallMax,
			steps, stepMean, extra, minUp, peak, rss, p99, mx)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nPhases (s, mean per rollout)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\tapp\tN\tsurge\tfirst deploy\tphases")
	for _, s := range r.Scenarios {
		if rs := s.Replica; rs != nil {
			surge := rs.Surge
			if surge == "" {
				surge = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.2f\t%s\n", s.Method, s.Kind, rs.Replicas, surge, rs.FirstDeployS, phaseString(s.Summary.Phases))
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\nTargets (deployctl)\n")
	for _, v := range replicaVerdicts(r) {
		fmt.Fprintf(w, "  %s\n", v)
	}
}

// replicaVerdicts compares deployctl's rows with the targets of issue 11.
func replicaVerdicts(r *Report) []string {
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT MET"
	}
	var out []string
	sent, failed := 0, 0
	budgetOK, budgetSeen := true, 0
	var budgetMiss []string
	maxN, rssAtMax := 0, 0.0
	for _, s := range r.Scenarios {
		if s.Method != MethodDeployctl || s.Replica == nil {
			continue
		}
		a, f, _, _, _ := sumLoad(s)
		sent += a
		failed += f
		rs := s.Replica
		if rs.MinUp < 0 {
			continue // the watchers saw no rollout
		}
		budgetSeen++
		if rs.MinUp < rs.Floor || rs.PeakContainers > rs.MaxRunning {
			budgetOK = false
			budgetMiss = append(budgetMiss, fmt.Sprintf("%s N=%d surge %s: min UP %d (floor %d), peak %d (max %d)", s.Kind, rs.Replicas, rs.Surge, rs.MinUp, rs.Floor, rs.PeakContainers, rs.MaxRunning))
		}
		if s.Summary.N == 0 {
			continue // no rollout succeeded: no time, no RSS
		}
		if rs.Replicas > maxN {
			maxN, rssAtMax = rs.Replicas, 0
		}
		if rs.Replicas == maxN {
			rssAtMax = max(rssAtMax, s.Summary.PeakRSSMiB)
		}
	}
	if budgetSeen == 0 {
		return nil
	}
	out = append(out, fmt.Sprintf("0 failed requests: %s (%d failed of %d)", verdict(failed == 0), failed, sent))
	line := fmt.Sprintf("min UP >= floor and peak containers <= N + surge in every rollout: %s", verdict(budgetOK))
	if !budgetOK {
		line += " (" + strings.Join(budgetMiss, "; ") + ")"
	}
	out = append(out, line)
	for _, kind := range r.Config.Kinds {
		for _, surge := range r.Config.Surges {
			w1 := wallOf(r, kind, 1, surge)
			if w1 == 0 {
				continue
			}
			switch {
			case surge == "100%":
				top := 0
				for _, n := range r.Config.Replicas {
					if wallOf(r, kind, n, surge) > 0 {
						top = max(top, n)
					}
				}
				if top > 1 {
					wt := wallOf(r, kind, top, surge)
					out = append(out, fmt.Sprintf("%s, surge 100%%: wall(N=%d) <= 1.5 x wall(N=1): %s (%.2fs vs %.2fs: %.2fx)", kind, top, verdict(wt <= 1.5*w1), wt, w1, wt/w1))
				}
			case surge == "1":
				var parts []string
				ok := true
				for _, n := range r.Config.Replicas {
					if wn := wallOf(r, kind, n, surge); n > 1 && wn > 0 {
						e := (wn - w1) / float64(n-1)
						ok = ok && e <= w1
						parts = append(parts, fmt.Sprintf("N=%d %.2fs", n, e))
					}
				}
				if len(parts) > 0 {
					out = append(out, fmt.Sprintf("%s, surge 1: each further step <= wall(N=1) = %.2fs: %s (%s)", kind, w1, verdict(ok), strings.Join(parts, ", ")))
				}
			}
		}
	}
	out = append(out, fmt.Sprintf("peak RSS of deployctl at N=%d <= 40 MiB: %s (%.1f MiB)", maxN, verdict(rssAtMax <= 40), rssAtMax))
	return out
}
