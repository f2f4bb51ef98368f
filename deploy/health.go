package deploy

import (
	"encoding/json"
	"fmt"
	"strconv"
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
// check it tests that the server port accepts connections.
//
// The start period is the original one plus interval x retries, so the
// container is declared unhealthy at about the time the app's own check
// would have declared it so.
func drainAwareHealthcheck(orig *Healthcheck, port int, drainInterval time.Duration) Healthcheck {
	args := []string{"CMD", ProbePath, "probe", "--marker", MarkerPath, "--state", ProbeState}
	var h Healthcheck
	if orig.Disabled() {
		h = Healthcheck{Interval: drainInterval, Timeout: 5 * time.Second, StartPeriod: defaultTCPStartPeriod, Retries: 1}
		args = append(args, "--tcp", "127.0.0.1:"+strconv.Itoa(port))
	} else {
		o := orig.WithDefaults()
		h = Healthcheck{
			Interval:    drainInterval,
			Timeout:     o.Timeout + time.Second, // the probe stops the check at o.Timeout
			StartPeriod: o.StartPeriod + o.Interval*time.Duration(o.Retries),
			Retries:     1,
		}
		args = append(args, "--interval", o.Interval.String(), "--timeout", o.Timeout.String(), "--retries", strconv.Itoa(o.Retries), "--")
		args = append(args, o.Test...)
	}
	h.Test = args
	return h
}

// defaultTCPStartPeriod is how long an app without a healthcheck of its own
// may take to open its port before it counts as unhealthy.
const defaultTCPStartPeriod = 60 * time.Second

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
