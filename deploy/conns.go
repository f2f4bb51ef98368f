package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The connection-aware drain (docs/design.md, "Connection-aware drain"):
// after the atomic switch no new request reaches an old container, and the
// engine waits, within --drain-timeout, until none of its connections on
// the app's port is in flight before it signals it. The count is the
// probe's conns mode, run in the old container's network namespace: in the
// container itself when it carries deployctl's probe and can be written
// to, else in a helper container that joins its network namespace.

// ConnsPath is where the engine copies the probe it counts connections
// with into an old container (beside the probe its healthcheck runs, which
// may be an earlier deployctl's).
const ConnsPath = ProbeDir + "/conns"

// LabelHelperOf names the app a connection-counting helper container
// belongs to (removed by the run that made it, or, when that run was
// killed, by the next atomic one: removeHelpers).
const LabelHelperOf = "deployctl.helper-of"

// removeHelpers removes the connection-counting helpers a killed run left
// (a helper lives only while its run counts). It runs under the lock.
func (r *rollout) removeHelpers(ctx context.Context) error {
	hs, err := r.e.Runtime.List(ctx, map[string]string{LabelHelperOf: r.o.App})
	if err != nil {
		return classifyDocker(fmt.Errorf("listing the connection-counting helpers of %s: %w", r.o.App, err))
	}
	for _, h := range hs {
		if err := r.e.Runtime.Remove(ctx, h.ID); err != nil && !errors.Is(err, ErrContainerNotFound) {
			return classifyDocker(fmt.Errorf("removing helper container %s, left by an interrupted run: %w", h.Short(), err))
		}
		r.info(PhasePlan, Event{Container: h.Short(), Message: fmt.Sprintf("removed helper container %s, left by an interrupted run", h.Short())})
	}
	return nil
}

// WarnConnsNotCounted: an old container's connections could not be
// counted; it got its stop signal after --drain-grace only.
const WarnConnsNotCounted = "connections-not-counted"

// minConnsPoll bounds how often connections are counted: each count is a
// Docker exec (about 0.1-0.5 s).
const minConnsPoll = 250 * time.Millisecond

// connCounter counts one old container's connections.
type connCounter struct {
	t      *target
	port   int
	in     string // the container the count runs in
	helper string // a helper container to remove afterwards, if one was made
	argv   []string
}

// counter sets up the count of t's connections.
func (r *rollout) counter(ctx context.Context, t *target) (*connCounter, error) {
	ep, err := r.e.Router.Endpoint(t.c)
	if err != nil {
		return nil, err
	}
	cc := &connCounter{t: t, port: ep.Port}
	if r.routeBin == nil {
		return nil, errors.New("no probe for the image's platform")
	}
	if t.c.Labels[LabelDrain] == "probe" && !t.c.ReadOnlyRootfs {
		if err := r.e.Runtime.CopyFiles(ctx, t.c.ID, []File{{Path: ConnsPath, Mode: 0o755, Data: r.routeBin}}); err == nil {
			cc.in, cc.argv = t.c.ID, []string{ConnsPath, "conns", "--port", strconv.Itoa(cc.port)}
			return cc, nil
		}
	}
	image := t.c.ImageID
	if image == "" {
		image = t.c.Image
	}
	h, _, err := r.e.Runtime.Create(ctx, CreateSpec{
		Name:        containerName(t.short(), "conns", randomSuffix()),
		Image:       image,
		Labels:      map[string]string{LabelHelperOf: r.o.App},
		NetworkMode: "container:" + t.c.ID,
		Entrypoint:  []string{ProbePath, "hold"},
		Healthcheck: &Healthcheck{Test: []string{"NONE"}},
		Restart:     "no",
	})
	if err != nil {
		return nil, fmt.Errorf("creating a helper in %s's network namespace: %w", t.short(), err)
	}
	cc.helper = h.ID
	if err := r.e.Runtime.CopyFiles(ctx, h.ID, []File{{Path: ProbeDir + "/", Mode: 0o755}, {Path: ProbePath, Mode: 0o755, Data: r.routeBin}}); err != nil {
		return cc, err
	}
	if err := r.e.Runtime.Start(ctx, h.ID); err != nil {
		return cc, err
	}
	cc.in, cc.argv = h.ID, []string{ProbePath, "conns", "--port", strconv.Itoa(cc.port)}
	return cc, nil
}

// count runs the probe's conns mode once: the connections in flight.
func (r *rollout) count(ctx context.Context, cc *connCounter) (int, error) {
	res, err := r.e.Runtime.Exec(ctx, cc.in, cc.argv)
	if err != nil {
		return 0, err
	}
	var n struct {
		InFlight *int `json:"in_flight"`
	}
	if res.ExitCode != 0 || json.Unmarshal([]byte(res.Stdout), &n) != nil || n.InFlight == nil {
		return 0, fmt.Errorf("counting connections: exit %d: %s", res.ExitCode, strings.TrimSpace(res.Stderr+" "+res.Stdout))
	}
	return *n.InFlight, nil
}

// prepared is a counter set up ahead (prepareCounters), or why it could
// not be.
type prepared struct {
	cc  *connCounter
	err error
}

// prepareCounters sets up, in the background, the counters of the old
// containers ts the step's switch takes out of rotation, while the new
// containers turn healthy (once makeRoutes has made the route
// containers): once the switch is confirmed the count begins at once (a
// helper container takes 0.3-0.7 s to make on a busy host).
// waitConns takes them (preparedCounters); a run that ends before drops
// them (dropCounters).
func (s *stepRun) prepareCounters(ctx context.Context, ts []*target) {
	r := s.r
	if r.o.DrainTimeout <= 0 || len(ts) == 0 || s.counting != nil {
		return
	}
	ch := make(chan map[*target]prepared, 1)
	s.counting = ch
	ctx = beside(ctx, "conns")
	go func() {
		var mu sync.Mutex
		out := map[*target]prepared{}
		_ = parallel(ts, func(t *target) error {
			cc, err := r.counter(ctx, t)
			mu.Lock()
			defer mu.Unlock()
			out[t] = prepared{cc, err}
			return nil
		})
		ch <- out
	}()
}

// preparedCounters waits for prepareCounters, if it ran, and hands its
// counters over (to waitConns, which removes their helpers).
func (s *stepRun) preparedCounters() map[*target]prepared {
	if s.counting == nil {
		return nil
	}
	out := <-s.counting
	s.counting = nil
	return out
}

// dropCounters removes the helpers of counters prepared ahead and never
// used (the run ended before its count).
func (s *stepRun) dropCounters(ctx context.Context) {
	for _, p := range s.preparedCounters() {
		if p.cc != nil && p.cc.helper != "" {
			_ = s.r.e.Runtime.Remove(ctx, p.cc.helper)
		}
	}
}

// waitConns waits until none of ts has a connection in flight on its app
// port, or --drain-timeout has passed, and returns each one's count at the
// end (what is still open when it gets its signal). A container whose
// connections cannot be counted is waited for DrainGrace only, with a
// warning.
func (s *stepRun) waitConns(ctx context.Context, ts []*target) map[*target]int {
	r := s.r
	out := map[*target]int{}
	if r.o.DrainTimeout <= 0 || len(ts) == 0 {
		return out
	}
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cleanupTimeout())
	defer cancel()
	var mu sync.Mutex
	var counters []*connCounter
	var helpers []string // removed once the wait is over, before any signal
	defer func() {
		for _, id := range helpers {
			_ = r.e.Runtime.Remove(cleanup, id)
		}
	}()
	ready := s.preparedCounters()
	_ = parallel(ts, func(t *target) error {
		p, ok := ready[t]
		if !ok {
			p.cc, p.err = r.counter(ctx, t)
		}
		mu.Lock()
		defer mu.Unlock()
		if p.cc != nil && p.cc.helper != "" {
			helpers = append(helpers, p.cc.helper)
		}
		if p.err != nil {
			r.warnAbout(PhaseDrain, t.short(), WarnConnsNotCounted, "the connections of %s cannot be counted (%v): it gets its stop signal without waiting for them", t.short(), p.err)
			return nil
		}
		counters = append(counters, p.cc)
		return nil
	})
	if len(counters) == 0 {
		return out
	}
	r.begin(PhaseDrain, s.say(fmt.Sprintf("waiting for the connections in flight on %s to finish (at most %s)", targetNames(ts), r.o.DrainTimeout)))
	deadline := r.e.now().Add(r.o.DrainTimeout)
	every := max(r.o.PollInterval, minConnsPoll)
	last := -1
	for {
		total := 0
		live := counters[:0]
		// The old containers' counts at once: an exec takes 0.1-0.4 s on
		// a busy host, and with N replicas one after the other each round
		// would last N times that.
		type counted struct {
			cc  *connCounter
			n   int
			err error
		}
		round := make([]*counted, len(counters))
		for i, cc := range counters {
			round[i] = &counted{cc: cc}
		}
		_ = parallel(round, func(c *counted) error {
			c.n, c.err = r.count(ctx, c.cc)
			return nil
		})
		for _, c := range round {
			if c.err != nil {
				r.warnAbout(PhaseDrain, c.cc.t.short(), WarnConnsNotCounted, "counting the connections of %s failed (%v): it gets its stop signal without waiting for them", c.cc.t.short(), c.err)
				continue
			}
			out[c.cc.t] = c.n
			total += c.n
			live = append(live, c.cc)
		}
		counters = live
		if total != last {
			r.info(PhaseDrain, Event{Message: s.say(fmt.Sprintf("%d connection(s) in flight on the old version", total))})
			last = total
		}
		if total == 0 || len(counters) == 0 {
			r.done(PhaseDrain, Event{Message: s.say("no connection in flight on the old version")})
			return out
		}
		if !r.e.now().Before(deadline) || ctx.Err() != nil {
			r.done(PhaseDrain, Event{Message: s.say(fmt.Sprintf("%d connection(s) still in flight after --drain-timeout %s: the stop signal applies to them", total, r.o.DrainTimeout))})
			return out
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}
