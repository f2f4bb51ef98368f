package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Client modes of the load generator.
const (
	ModeKeepAlive = "keepalive" // connections are reused
	ModeFresh     = "fresh"     // a new connection per request
)

// Failure kinds of a request (ok is "").
const (
	FailRefused = "refused" // connection refused (by Traefik's entrypoint)
	FailReset   = "reset"   // connection reset or closed before a response
	FailTimeout = "timeout" // no response within the client timeout
	FailOther   = "other"
)

// sample is one request.
type sample struct {
	at      time.Time     // when it was due (open loop: also when it was sent)
	latency time.Duration // until the body was read, or the failure
	fail    string        // "", FailRefused, ..., or "5xx:502", "http:404"
}

// loadGen sends GET requests at a constant rate, each on schedule in its own
// goroutine whether or not earlier ones have finished (open loop), so that
// a stall shows up as latency and timeouts rather than as fewer requests.
type loadGen struct {
	mode    string
	url     string
	host    string
	rate    int
	client  *http.Client
	mu      sync.Mutex
	samples []sample
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	done    chan struct{}
}

func startLoad(mode, url, host string, rate int, timeout time.Duration) *loadGen {
	tr := &http.Transport{
		Proxy:               nil,
		DisableKeepAlives:   mode == ModeFresh,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &loadGen{
		mode: mode, url: url, host: host, rate: rate,
		client: &http.Client{Transport: tr, Timeout: timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go g.run(ctx)
	return g
}

func (g *loadGen) run(ctx context.Context) {
	defer close(g.done)
	period := time.Second / time.Duration(g.rate)
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * period)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		g.wg.Add(1)
		go g.one(due)
	}
}

func (g *loadGen) one(due time.Time) {
	defer g.wg.Done()
	req, _ := http.NewRequest(http.MethodGet, g.url, nil)
	req.Host = g.host
	t0 := time.Now()
	resp, err := g.client.Do(req)
	fail := ""
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			fail = classify(err)
		case resp.StatusCode >= 500:
			fail = fmt.Sprintf("5xx:%d", resp.StatusCode)
		case resp.StatusCode != http.StatusOK:
			fail = fmt.Sprintf("http:%d", resp.StatusCode)
		}
	} else {
		fail = classify(err)
	}
	s := sample{at: due, latency: time.Since(t0), fail: fail}
	g.mu.Lock()
	g.samples = append(g.samples, s)
	g.mu.Unlock()
}

// classify names the kind of a transport error.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return FailTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "server closed"):
		return FailReset
	}
	return FailOther
}

// stop ends the schedule and waits for the requests in flight.
func (g *loadGen) stop() []sample {
	g.cancel()
	<-g.done
	g.wg.Wait()
	g.client.CloseIdleConnections()
	g.mu.Lock()
	defer g.mu.Unlock()
	sort.Slice(g.samples, func(i, j int) bool { return g.samples[i].at.Before(g.samples[j].at) })
	return g.samples
}

// window is a time range [from, to].
type window struct{ from, to time.Time }

func (w window) contains(t time.Time) bool { return !t.Before(w.from) && !t.After(w.to) }

// LoadStats summarises the requests of one client mode in one scenario.
type LoadStats struct {
	Mode   string         `json:"mode"`
	Rate   int            `json:"rate"`
	Sent   int            `json:"sent"`
	Failed int            `json:"failed"`
	ByKind map[string]int `json:"failed_by_kind"`
	// FirstFailures are a few failed requests, for diagnosis.
	FirstFailures []string `json:"first_failures,omitempty"`
	Steady        Latency  `json:"steady"`
	Switch        Latency  `json:"switch"`
	// Bursts are the failed requests grouped by time (less than 1s apart).
	Bursts []Burst `json:"failure_bursts,omitempty"`
}

// Burst is a run of failed requests.
type Burst struct {
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	Count   int            `json:"count"`
	ByKind  map[string]int `json:"by_kind"`
	Rollout int            `json:"rollout,omitempty"` // index of the rollout running at From (0: none)
	Phase   string         `json:"phase,omitempty"`   // deployctl's phase at From
}

// Latency are latency percentiles in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func latencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	q := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(ds) {
			i = len(ds) - 1
		}
		return ds[i]
	}
	return Latency{N: len(ds), P50: ms(q(0.50)), P99: ms(q(0.99)), Max: ms(ds[len(ds)-1])}
}

// summarize splits samples into those due during a switch (a rollout's
// window) and the steady state (the rest).
func summarize(mode string, rate int, samples []sample, switches []window) LoadStats {
	st := LoadStats{Mode: mode, Rate: rate, Sent: len(samples), ByKind: map[string]int{}}
	var steady, sw []time.Duration
	for _, s := range samples {
		in := false
		for _, w := range switches {
			if w.contains(s.at) {
				in = true
				break
			}
		}
		if in {
			sw = append(sw, s.latency)
		} else {
			steady = append(steady, s.latency)
		}
		if s.fail != "" {
			st.Failed++
			kind := s.fail
			if strings.HasPrefix(kind, "5xx:") {
				kind = "5xx"
			}
			st.ByKind[kind]++
			if kind != s.fail {
				st.ByKind[s.fail]++ // also by code: "5xx:502"
			}
			if len(st.FirstFailures) < 10 {
				st.FirstFailures = append(st.FirstFailures, fmt.Sprintf("%s %s after %s", s.at.Format("15:04:05.000"), s.fail, s.latency.Round(time.Millisecond)))
			}
		}
	}
	st.Steady, st.Switch = latencyOf(steady), latencyOf(sw)
	return st
}

// bursts groups failed samples that are less than a second apart and says
// which rollout (and deployctl phase) was running when each began.
func bursts(samples []sample, rollouts []Rollout) []Burst {
	var out []Burst
	for _, s := range samples {
		if s.fail == "" {
			continue
		}
		if n := len(out); n > 0 && s.at.Sub(out[n-1].To) < time.Second {
			b := &out[n-1]
			b.To = s.at
			b.Count++
			b.ByKind[s.fail]++
			continue
		}
		b := Burst{From: s.at, To: s.at, Count: 1, ByKind: map[string]int{s.fail: 1}}
		for _, r := range rollouts {
			if (window{r.Start, r.End}).contains(s.at) {
				b.Rollout = r.Index
				for _, e := range r.events {
					if e.status == "start" && !e.t.After(s.at) {
						b.Phase = e.phase
					}
				}
			}
		}
		out = append(out, b)
	}
	return out
}
