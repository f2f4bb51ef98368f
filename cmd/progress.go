package cmd

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// plainReporter prints one timestamped line per event, without control
// characters: the format for CI logs.
type plainReporter struct {
	mu sync.Mutex
	w  io.Writer
}

func newPlainReporter(w io.Writer) *plainReporter { return &plainReporter{w: w} }

func (p *plainReporter) Event(e deploy.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("%s %-10s %-7s", e.Time.Format("15:04:05.000"), e.Phase, e.Status)
	if e.Container != "" {
		line += " " + e.Container
	}
	if e.URL != "" {
		line += " " + e.URL
	}
	if e.Message != "" {
		line += " " + e.Message
	}
	if e.Elapsed > 0 {
		line += fmt.Sprintf(" (%s)", e.Elapsed.Round(time.Millisecond))
	}
	fmt.Fprintln(p.w, line)
}
