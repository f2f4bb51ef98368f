package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The switch suite (issue 12, -switch): one lame-duck app, first deployed
// with the default (atomic) switch, rolled out -rollouts times with
// --switch atomic and then as many times with --switch gradual, each
// switch from its own steady state (an atomic rollout from a version a
// gradual one made, whose containers carry the routers, settles only
// after their stop: alternating the two measured that transition rather
// than the atomic switch), under keep-alive load at -rate plus a browser-like
// client at -rate/5 pairs/s that loads a page and then an asset the page
// names (mixed: the asset came from another version than the page), with
// a 2 s request opened on the old version just before each rollout. It
// reports per switch the failed requests, the mixed pairs (for atomic,
// also among the pairs that started after the reported switch instant),
// the wall time, and the old container's connections in flight at its
// stop signal.

// SwitchRow is one switch's figures.
type SwitchRow struct {
	Switch     string    `json:"switch"`
	Rollouts   int       `json:"rollouts"`
	Sent       int       `json:"sent"`
	Failed     int       `json:"failed"`
	Pairs      int       `json:"pairs"`
	Mixed      int       `json:"mixed"`
	PairsAfter int       `json:"pairs_after_switch,omitempty"`
	MixedAfter int       `json:"mixed_after_switch,omitempty"`
	WallS      []float64 `json:"wall_s"`
	InFlight   []int     `json:"in_flight_at_signal,omitempty"`
	LongOK     int       `json:"long_requests_ok"`
	LongFailed int       `json:"long_requests_failed"`
	Errors     []string  `json:"errors,omitempty"`
	// PeakRSSMiB is deployctl's peak RSS over the rollouts.
	PeakRSSMiB float64 `json:"peak_rss_mib_max,omitempty"`
}

// switchRun is one rollout of the suite, as measured.
type switchRun struct {
	mode       string
	start, end time.Time
	switchedAt *time.Time
	inFlight   *int
	longErr    error
}

// switchPause is the pause between the suite's rollouts: -settle, and at
// least one Traefik throttle and a half second. An atomic rollout ends by
// removing its lifted route container without waiting for Traefik's next
// reload to drop its router; a rollout that starts before that reload
// waits for it at its plan (its own lifted router would tie with it:
// LiftedLeftError), as CI runs minutes apart never do. The default 500 ms
// pause measured that wait (0.8-1.0 s) rather than the switch.
func switchPause(cfg Config) time.Duration {
	throttle := cfg.Throttle
	if throttle < 0 {
		throttle = 2 * time.Second
	}
	return max(cfg.Settle, throttle+500*time.Millisecond)
}

func (b *bench) runSwitchSuite(ctx context.Context, rep *Report, logf func(string, ...any)) error {
	cfg := b.cfg
	repo := b.repos[KindLameDuck]
	app := "switchbench"
	host := app + ".test"
	labels := []string{
		"--label", "traefik.enable=true",
		"--label", fmt.Sprintf("traefik.http.routers.%s.rule=Host(`%s`)", app, host),
		"--label", fmt.Sprintf("traefik.http.services.%s.loadbalancer.server.port=8080", app),
	}
	first := &Rollout{}
	args := append([]string{"rollout", "--app", app, "--image", repo, "--version", "v1", "--network", b.network, "--env", "APP_VERSION=v1"}, labels...)
	if err := b.deployctl(ctx, first, args...); err != nil {
		return fmt.Errorf("first deploy: %w", err)
	}

	plain := startLoad(ModeKeepAlive, b.traefik.EntryURL+"/", host, cfg.Rate, cfg.Timeout)
	pairs := startPairLoad(b.traefik.EntryURL, host, max(cfg.Rate/5, 1), cfg.Timeout)
	sleep(ctx, cfg.Warmup)
	var runs []switchRun
	rows := map[string]*SwitchRow{"gradual": {Switch: "gradual"}, "atomic": {Switch: "atomic"}}
	v := 1
	var runErr error
	for i := 0; i < 2*cfg.Rollouts && ctx.Err() == nil; i++ {
		mode := "atomic"
		if i >= cfg.Rollouts {
			mode = "gradual"
		}
		v++
		version := fmt.Sprintf("v%d", v)
		long := make(chan error, 1)
		go func() { long <- slowRequest(b.traefik.EntryURL, host, 2*time.Second) }()
		time.Sleep(200 * time.Millisecond) // the long request reaches the old version
		r := &Rollout{Index: i + 1, From: fmt.Sprintf("v%d", v-1), To: version}
		runErr = b.deployctl(ctx, r, "rollout", "--app", app, "--image", repo, "--version", version, "--switch", mode, "--env", "APP_VERSION="+version)
		run := switchRun{mode: mode, start: r.Start, end: r.End, switchedAt: r.SwitchedAt, inFlight: r.InFlightAtSignal, longErr: <-long}
		runs = append(runs, run)
		row := rows[mode]
		row.Rollouts++
		row.PeakRSSMiB = max(row.PeakRSSMiB, float64(r.PeakRSSKiB)/1024)
		row.WallS = append(row.WallS, r.WallS)
		if r.InFlightAtSignal != nil {
			row.InFlight = append(row.InFlight, *r.InFlightAtSignal)
		}
		if run.longErr == nil {
			row.LongOK++
		} else {
			row.LongFailed++
		}
		logf("  --switch %s %s -> %s: %.2fs %s", mode, r.From, r.To, r.WallS, phaseString(r.Phases))
		if runErr != nil {
			row.Errors = append(row.Errors, runErr.Error())
			break
		}
		sleep(ctx, switchPause(cfg))
	}
	samples := plain.stop()
	pairList := pairs.stop()
	for _, run := range runs {
		row := rows[run.mode]
		w := window{run.start, run.end}
		for _, s := range samples {
			if w.contains(s.at) {
				row.Sent++
				if s.fail != "" {
					row.Failed++
				}
			}
		}
		for _, p := range pairList {
			if !w.contains(p.start) {
				continue
			}
			row.Pairs++
			if p.err != nil {
				row.Failed++
				continue
			}
			mixed := p.page != p.asset
			if mixed {
				row.Mixed++
			}
			if run.switchedAt != nil && p.start.After(*run.switchedAt) {
				row.PairsAfter++
				if mixed {
					row.MixedAfter++
				}
			}
		}
	}
	rep.Switch = []SwitchRow{*rows["atomic"], *rows["gradual"]}
	return runErr
}

// slowRequest asks the app for a request of d.
func slowRequest(entry, host string, d time.Duration) error {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/slow?d=%s", entry, d), nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && (resp.StatusCode != 200 || !strings.Contains(string(body), "slow=")) {
		err = fmt.Errorf("status %d: %q", resp.StatusCode, body)
	}
	return err
}

// pairLoad loads a page and then an asset the page names, at a constant
// rate; each pair records the versions that answered.
type pairLoad struct {
	entry, host string
	client      *http.Client
	stopc       chan struct{}
	wg          sync.WaitGroup
	mu          sync.Mutex
	list        []pairSample
}

type pairSample struct {
	start       time.Time
	page, asset string
	err         error
}

func startPairLoad(entry, host string, rate int, timeout time.Duration) *pairLoad {
	p := &pairLoad{entry: entry, host: host, stopc: make(chan struct{}),
		client: &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
			p.wg.Add(1)
			go p.one()
		}
	}()
	return p
}

func (p *pairLoad) get(path string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, p.entry+path, nil)
	req.Host = p.host
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	for _, f := range strings.Fields(string(body)) {
		if v, ok := strings.CutPrefix(f, "version="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no version in %q", body)
}

func (p *pairLoad) one() {
	defer p.wg.Done()
	s := pairSample{start: time.Now()}
	s.page, s.err = p.get("/")
	if s.err == nil {
		s.asset, s.err = p.get("/assets/app." + s.page + ".js")
	}
	p.mu.Lock()
	p.list = append(p.list, s)
	p.mu.Unlock()
}

func (p *pairLoad) stop() []pairSample {
	close(p.stopc)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.Slice(p.list, func(i, j int) bool { return p.list[i].start.Before(p.list[j].start) })
	return p.list
}

// printSwitchTable prints the switch suite's figures.
func printSwitchTable(w io.Writer, r *Report) {
	if len(r.Switch) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSwitch suite: one app (lame duck), --switch atomic rollouts, then as many gradual ones; %d req/s keep-alive + %d page-then-asset pairs/s; a 2 s request open on the old version at each rollout\n", r.Config.Rate, max(r.Config.Rate/5, 1))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "switch\trollouts\tsent\tfailed\tpairs\tmixed\tpairs after switch\tmixed after\twall mean s\tmax\tin flight at signal\t2 s requests ok\tfailed\t")
	for _, s := range r.Switch {
		mean, mx := 0.0, 0.0
		for _, x := range s.WallS {
			mean += x / float64(len(s.WallS))
			mx = max(mx, x)
		}
		after, mixedAfter, inFlight := "-", "-", "-"
		if s.Switch == "atomic" {
			after, mixedAfter = fmt.Sprint(s.PairsAfter), fmt.Sprint(s.MixedAfter)
			inFlight = fmt.Sprint(s.InFlight)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.2f\t%.2f\t%s\t%d\t%d\t\n", s.Switch, s.Rollouts, s.Sent, s.Failed, s.Pairs, s.Mixed, after, mixedAfter, mean, mx, inFlight, s.LongOK, s.LongFailed)
	}
	tw.Flush()
}
