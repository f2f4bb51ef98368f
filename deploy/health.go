package deploy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// drainAwareHealthcheck wraps the app's own healthcheck (orig, nil when it
// has none) in deployctl's probe, so that the container can be taken out of
// Traefik by writing a marker file, before it gets any signal.
//
// Docker runs the probe every drainInterval with retries=1, so a drain shows
// within about one drainInterval. The probe itself keeps the app's own
// semantics: it runs the original check at most once per original interval
// and reports failure only after the original number of consecutive
// failures (or while the app has never passed it). Without an original
// check it tests that the server port accepts connections, and reports
// failure after tcpRetries failed connects in a row.
//
// With retries=1, every probe run Docker gives up on counts: Docker's own
// timeout is therefore the probe's bound plus probeExecAllowance, so a host
// too busy to run the probe on time does not take a serving container out of
// Traefik.
//
// The start period is the original one plus interval x retries, so the
// container is declared unhealthy at about the time the app's own check
// would have declared it so.
func drainAwareHealthcheck(orig *Healthcheck, port int, drainInterval time.Duration) Healthcheck {
	args := []string{"CMD", ProbePath, "--marker", MarkerPath, "--state", ProbeState}
	var h Healthcheck
	if orig.Disabled() {
		h = Healthcheck{Interval: drainInterval, Timeout: tcpCheckTimeout + probeExecAllowance, StartPeriod: defaultTCPStartPeriod, Retries: 1}
		args = append(args, "--timeout", tcpCheckTimeout.String(), "--retries", strconv.Itoa(tcpRetries), "--tcp", "127.0.0.1:"+strconv.Itoa(port))
	} else {
		o := orig.WithDefaults()
		h = Healthcheck{
			Interval:    drainInterval,
			Timeout:     o.Timeout + probeExecAllowance, // the probe stops the check at o.Timeout
			StartPeriod: o.StartPeriod + o.Interval*time.Duration(o.Retries),
			Retries:     1,
		}
		args = append(args, "--interval", o.Interval.String(), "--timeout", o.Timeout.String(), "--retries", strconv.Itoa(o.Retries), "--")
		args = append(args, o.Test...)
	}
	h.Test = args
	return h
}

const (
	// defaultTCPStartPeriod is how long an app without a healthcheck of its
	// own may take to open its port before it counts as unhealthy.
	defaultTCPStartPeriod = 60 * time.Second
	// tcpCheckTimeout bounds one connect to such an app's port, and
	// tcpRetries is how many failed connects in a row make it unhealthy
	// (Docker's default retries): one refused or slow connect is not enough
	// to take a serving container out of Traefik.
	tcpCheckTimeout = 5 * time.Second
	tcpRetries      = 3
	// probeExecAllowance is how much longer than the probe's own bound
	// Docker may take to run it. A probe run that exceeds Docker's timeout
	// counts as failed, and with retries=1 that makes a serving container
	// unhealthy at once: on a host at load 14 on 2 cores Docker took over
	// 3 s to exec the probe, and Traefik dropped the only server for 4.4 s
	// (bench TestSmoke in CI, Docker's log: "Health check ... context
	// deadline exceeded"). The probe bounds its own work, so this only
	// matters when Docker is slow to run it.
	probeExecAllowance = 30 * time.Second
)

// probePathOf is where container c's healthcheck runs the probe from: the
// path in its drain-aware healthcheck (LegacyProbePath for containers made
// by earlier deployctl versions), else ProbePath.
func probePathOf(c Container) string {
	if h := c.Healthcheck; h != nil && len(h.Test) >= 2 && h.Test[0] == "CMD" && strings.HasPrefix(h.Test[1], ProbeDir+"/") {
		return h.Test[1]
	}
	return ProbePath
}

// probeHealthDeadline is how long to wait for a container with the
// drain-aware healthcheck h to turn healthy: its start period already
// includes the app's interval x retries; add half of one run of the app's
// check (not of Docker's allowance) and slack.
func probeHealthDeadline(h *Healthcheck) time.Duration {
	const slack = 10 * time.Second
	check := max(h.Timeout-probeExecAllowance, 0)
	return h.StartPeriod + check/2 + slack
}

// healthDeadline is how long to wait for a container with healthcheck h to
// turn healthy: its start period plus interval x retries, plus slack for
// Docker's scheduling and a slow first probe.
func healthDeadline(h *Healthcheck) time.Duration {
	const slack = 10 * time.Second
	if h.Disabled() {
		return defaultTCPStartPeriod + slack
	}
	d := h.WithDefaults()
	return d.StartPeriod + d.Interval*time.Duration(d.Retries) + d.Timeout/2 + slack
}

// encodeHealthcheck records the user's own healthcheck in a label, so the
// next rollout can wrap it again ("" means: use the image's).
func encodeHealthcheck(h *Healthcheck) string {
	if h == nil {
		return ""
	}
	b, _ := json.Marshal(h)
	return string(b)
}

func decodeHealthcheck(s string) (*Healthcheck, error) {
	if s == "" {
		return nil, nil
	}
	var h Healthcheck
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return nil, fmt.Errorf("label %s: %w", LabelHealthcheck, err)
	}
	return &h, nil
}
