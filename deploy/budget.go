package deploy

import (
	"fmt"
	"strconv"
	"strings"
)

// Replicas, surge and availability: the arithmetic of a rollout of N
// containers (issue 11). This file is pure: it decides, it does no I/O.
//
// The meaning and the rounding are Kubernetes' (RollingUpdateDeployment,
// pkg/controller/deployment/util.ResolveFenceposts): a percentage of N is
// rounded up for the surge and down for the unavailability, so that a
// rollout always makes progress and never drops below what was asked for.

// Amount is a count of containers ("2") or a percentage of the replicas
// ("25%"), like Kubernetes' IntOrString.
type Amount struct {
	N       int
	Percent bool
}

func (a Amount) String() string {
	if a.Percent {
		return strconv.Itoa(a.N) + "%"
	}
	return strconv.Itoa(a.N)
}

// ParseAmount reads "3" or "25%". flag names the flag in the error.
func ParseAmount(flag, s string) (Amount, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	n, err := strconv.Atoi(strings.TrimSuffix(t, "%"))
	if err != nil || n < 0 || t == "" {
		return Amount{}, usageError("%s %q: want a count (e.g. 1) or a percentage of the replicas (e.g. 25%%), not negative", flag, s)
	}
	if pct && n > 100 {
		return Amount{}, usageError("%s %q: a percentage of the replicas must be at most 100%%", flag, s)
	}
	return Amount{N: n, Percent: pct}, nil
}

// of resolves a for n replicas, rounding a percentage up or down.
func (a Amount) of(n int, up bool) int {
	if !a.Percent {
		return a.N
	}
	v := a.N * n
	if up {
		return (v + 99) / 100
	}
	return v / 100
}

// Defaults of --max-surge and --max-unavailable.
var (
	DefaultMaxSurge       = Amount{N: 25, Percent: true}
	DefaultMaxUnavailable = Amount{N: 0}
)

// Budget bounds a rollout, scale or rollback of an app to Replicas
// containers: at every moment at most Replicas+MaxSurge containers of the
// app run, and at least Replicas-MaxUnavailable of its servers are routed
// to (listed and UP in the router), as far as the app had that many to
// begin with.
type Budget struct {
	Replicas       int `json:"replicas"`
	MaxSurge       int `json:"max_surge"`
	MaxUnavailable int `json:"max_unavailable"`
}

// NewBudget resolves surge and unavailable for n replicas. Both given as 0
// is a usage error (a rollout could never make a step). When percentages
// round both to 0, unavailable becomes 1, as Kubernetes does.
func NewBudget(n int, surge, unavailable Amount) (Budget, error) {
	if n < 1 {
		return Budget{}, usageError("--replicas must be at least 1 (got %d)", n)
	}
	if surge.N == 0 && unavailable.N == 0 {
		return Budget{}, usageError("--max-surge and --max-unavailable are both 0: no step could start a new container or stop an old one; allow one of them, e.g. --max-surge 1")
	}
	b := Budget{Replicas: n, MaxSurge: surge.of(n, true), MaxUnavailable: unavailable.of(n, false)}
	if b.MaxSurge == 0 && b.MaxUnavailable == 0 {
		b.MaxUnavailable = 1
	}
	if b.MaxUnavailable > n {
		b.MaxUnavailable = n
	}
	return b, nil
}

// MinRouted is the fewest of the app's servers that must be routed to at
// any moment.
func (b Budget) MinRouted() int { return b.Replicas - b.MaxUnavailable }

// MaxRunning is the most containers of the app that may run at once.
func (b Budget) MaxRunning() int { return b.Replicas + b.MaxSurge }

// Step is one step of a rollout: start Start new containers at once, wait
// until every one of them is healthy and routed to, then drain the old
// containers in Drain (indexes into the old containers, oldest first) and
// stop them.
type Step struct {
	Start int   `json:"start"`
	Drain []int `json:"drain,omitempty"`
}

// PlanSteps splits the replacement of old running containers by
// b.Replicas new ones into steps that keep the budget, assuming every
// step succeeds: each step starts as many new containers as the surge
// allows, then drains as many old ones (oldest first) as availability
// allows once those are routed. With fewer old containers than MinRouted
// (a first deploy, a scale-up) nothing old is drained until enough new
// ones serve. old may exceed Replicas + MaxSurge (a scale-down): the first
// steps then only drain.
func PlanSteps(old int, b Budget) ([]Step, error) {
	if b.Replicas < 1 || b.MaxSurge < 0 || b.MaxUnavailable < 0 || (b.MaxSurge == 0 && b.MaxUnavailable == 0) {
		return nil, fmt.Errorf("invalid budget %+v", b)
	}
	var steps []Step
	next := 0 // the oldest old container not yet drained
	running, started := old, 0
	for started < b.Replicas || next < old {
		var s Step
		s.Start = min(b.Replicas-started, b.MaxRunning()-running)
		s.Start = max(s.Start, 0)
		started += s.Start
		running += s.Start
		// Once the new ones are routed, every running container is routed:
		// drain down to the availability floor. When all new ones have
		// started this is every old one left (running - MinRouted is then
		// the old ones left plus MaxUnavailable).
		d := min(old-next, running-b.MinRouted())
		for range max(d, 0) {
			s.Drain = append(s.Drain, next)
			next++
			running--
		}
		if s.Start == 0 && len(s.Drain) == 0 {
			return nil, fmt.Errorf("budget %+v makes no progress with %d old containers", b, old)
		}
		steps = append(steps, s)
	}
	return steps, nil
}
