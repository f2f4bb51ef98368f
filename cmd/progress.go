package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/briandowns/spinner"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/deployctl/deployctl/deploy"
)

// Progress modes (--progress, env DEPLOYCTL_PROGRESS).
const (
	progressAuto  = "auto"  // tty when stderr is a terminal, else plain
	progressTTY   = "tty"   // spinner with the current phase; a line per finished phase
	progressPlain = "plain" // one timestamped line per event, no control characters
	progressJSON  = "json"  // one JSON object per event (NDJSON), see docs/events.schema.json
)

var progressModes = []string{progressAuto, progressTTY, progressPlain, progressJSON}

// progressFlag is the value of --progress: parsing rejects unknown modes, so
// a bad value is a flag error (exit 2) like any other.
type progressFlag string

func (p *progressFlag) String() string { return string(*p) }
func (p *progressFlag) Type() string   { return "mode" }
func (p *progressFlag) Set(v string) error {
	for _, m := range progressModes {
		if v == m {
			*p = progressFlag(v)
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(progressModes, ", "))
}

// addProgressFlag registers --progress as a persistent flag of root, so
// every command that runs the engine has it (and DEPLOYCTL_PROGRESS, through
// flagsFromEnv).
func addProgressFlag(root *cobra.Command) {
	v := progressFlag(progressAuto)
	root.PersistentFlags().Var(&v, "progress", "how progress is shown on stderr: auto (tty on a terminal, else plain), tty (spinner), plain (timestamped lines), json (one JSON event per line)")
	_ = root.RegisterFlagCompletionFunc("progress", cobra.FixedCompletions(progressModes, cobra.ShellCompDirectiveNoFileComp))
}

// progress is a renderer of the engine's events. Close stops anything it
// runs (the spinner) and restores the terminal; it is idempotent, and must be
// called before anything else is printed to stderr and on every exit path.
type progress interface {
	deploy.Reporter
	Close()
}

// newProgress returns the renderer --progress selects for c, writing to c's
// stderr. Commands that run the engine use it:
//
//	p := newProgress(c)
//	defer p.Close()
//	eng := &deploy.Engine{..., Reporter: p}
//	res, err := eng.Rollout(ctx, o)
//	p.Close() // before printing the result or the error
func newProgress(c *cobra.Command) progress {
	return newProgressFor(streamsOf(c).progress, c.ErrOrStderr(), os.Getenv)
}

// newProgressFor picks the renderer for mode writing to w; getenv reads
// NO_COLOR and TERM.
func newProgressFor(mode string, w io.Writer, getenv func(string) string) progress {
	f, _ := w.(*os.File)
	isTerm := f != nil && term.IsTerminal(int(f.Fd()))
	dumb := getenv("TERM") == "dumb"
	switch mode {
	case progressJSON:
		return nopClose{newJSONReporter(w)}
	case progressPlain:
		return nopClose{newPlainReporter(w)}
	case progressTTY:
	default: // auto
		if !isTerm || dumb {
			return nopClose{newPlainReporter(w)}
		}
	}
	opts := ttyOptions{colour: isTerm && !dumb && getenv("NO_COLOR") == ""}
	if isTerm {
		opts.term = f
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 0 {
			opts.width = width
		}
	}
	return newTTYReporter(w, opts)
}

type nopClose struct{ deploy.Reporter }

func (nopClose) Close() {}

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
	if d := eventDetails(e); d != "" {
		line += " " + d
	}
	if e.Elapsed > 0 {
		line += fmt.Sprintf(" (%s)", e.Elapsed.Round(time.Millisecond))
	}
	fmt.Fprintln(p.w, strings.TrimRight(line, " "))
}

// eventDetails is an event's container, URL and message, space separated,
// with control characters (from container logs quoted in a message) made
// visible so that no renderer but tty ever writes one. The message of an
// event of a step starts with "step 2/3" (the engine's own messages of a
// step do; those of a restore get it here).
func eventDetails(e deploy.Event) string {
	var parts []string
	for _, s := range []string{e.Container, e.URL, stepMessage(e)} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return stripControl(strings.Join(parts, " "))
}

// stepMessage is e's message, starting with its step when it has one.
func stepMessage(e deploy.Event) string {
	if e.Step == 0 {
		return e.Message
	}
	step := fmt.Sprintf("step %d/%d", e.Step, e.Steps)
	switch {
	case e.Message == "":
		return step
	case strings.HasPrefix(e.Message, step):
		return e.Message
	}
	return step + ": " + e.Message
}

// stripControl replaces control characters other than newline and tab with
// their Go escapes.
func stripControl(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r < 0xa0)
}

// jsonEvent is one line of --progress=json; docs/events.schema.json is its
// schema and TestJSONEventsMatchSchema keeps the two in step.
type jsonEvent struct {
	Time      string        `json:"time"` // RFC 3339 with nanoseconds
	Phase     deploy.Phase  `json:"phase"`
	Status    deploy.Status `json:"status"`
	Container string        `json:"container,omitempty"`
	URL       string        `json:"url,omitempty"`
	Message   string        `json:"message,omitempty"`
	// Code is a warning's stable code (deploy's Warn constants).
	Code string `json:"code,omitempty"`
	// Elapsed is the time spent in the phase, in seconds: on the done and
	// failed events of the phases the engine times.
	Elapsed *float64 `json:"elapsed,omitempty"`
	// Step and Steps: the step of a run of several steps the event
	// belongs to (deploy.Event.Step).
	Step  int `json:"step,omitempty"`
	Steps int `json:"steps,omitempty"`
}

// jsonReporter writes one JSON object per event and line (NDJSON).
type jsonReporter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newJSONReporter(w io.Writer) *jsonReporter {
	enc := json.NewEncoder(w)
	// Keep '<', '>' and '&' readable; JSON escapes every control character.
	enc.SetEscapeHTML(false)
	return &jsonReporter{enc: enc}
}

func (j *jsonReporter) Event(e deploy.Event) {
	out := jsonEvent{
		Time:      e.Time.Format(time.RFC3339Nano),
		Phase:     e.Phase,
		Status:    e.Status,
		Container: e.Container,
		URL:       e.URL,
		Message:   e.Message,
		Code:      e.Code,
		Step:      e.Step,
		Steps:     e.Steps,
	}
	if e.Elapsed > 0 && (e.Status == deploy.StatusDone || e.Status == deploy.StatusFail) {
		secs := float64(e.Elapsed.Round(time.Millisecond).Milliseconds()) / 1000 // 1.503, not 1.5030000000000001
		out.Elapsed = &secs
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(out)
}

// ttyOptions configures the tty renderer.
type ttyOptions struct {
	// term is the terminal to animate the spinner on; nil: no spinner (the
	// lines only, as when --progress=tty is forced onto a pipe).
	term   *os.File
	colour bool
	width  int // terminal columns; 0: unknown
	now    func() time.Time
}

// ttyReporter shows a spinner with the current phase and its elapsed time,
// and prints each finished phase (with its duration), warning and note as a
// line above it. The spinner (briandowns/spinner) runs only on a terminal.
type ttyReporter struct {
	w    io.Writer
	opts ttyOptions
	sp   *spinner.Spinner // nil without a terminal

	// mu orders the reporter's own writes; when the spinner runs, they are
	// also made under the spinner's lock so a frame never lands mid-line.
	mu      sync.Mutex
	started bool
	closed  bool

	// current is what the spinner shows; read by the spinner's goroutine on
	// each frame (under the spinner's lock), hence atomic.
	current atomic.Pointer[ttyStatus]
}

type ttyStatus struct {
	phase deploy.Phase
	since time.Time
	note  string
}

// The spinner's frames: braille dots, as most terminals render them.
var spinnerFrames = spinner.CharSets[14]

func newTTYReporter(w io.Writer, opts ttyOptions) *ttyReporter {
	if opts.now == nil {
		opts.now = time.Now
	}
	t := &ttyReporter{w: w, opts: opts}
	if opts.term != nil {
		// WithWriterFile, not WithWriter: the latter checks os.Stdout for a
		// terminal, and the spinner must follow stderr.
		t.sp = spinner.New(spinnerFrames, 100*time.Millisecond, spinner.WithWriterFile(opts.term))
		if opts.colour {
			_ = t.sp.Color("cyan")
		}
		t.sp.PreUpdate = func(s *spinner.Spinner) { s.Suffix = t.suffix() }
	}
	return t
}

// suffix is the text after the spinner: " phase  elapsed  note", cut to the
// terminal's width so the spinner's erase never has to span lines.
func (t *ttyReporter) suffix() string {
	st := t.current.Load()
	if st == nil {
		return ""
	}
	s := fmt.Sprintf(" %s %s", st.phase, formatElapsed(t.opts.now().Sub(st.since)))
	if st.note != "" {
		s += "  " + st.note
	}
	s = strings.ReplaceAll(s, "\n", " ")
	if t.opts.width > 0 {
		if r := []rune(s); len(r) > t.opts.width-2 {
			s = string(r[:max(t.opts.width-3, 0)]) + "…"
		}
	}
	return s
}

func formatElapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func (t *ttyReporter) Event(e deploy.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	switch e.Status {
	case deploy.StatusStart:
		t.current.Store(&ttyStatus{phase: e.Phase, since: e.Time, note: stripControl(e.Message)})
		t.start()
	case deploy.StatusDone, deploy.StatusFail:
		mark, colour := "✓", ansiGreen
		if e.Status == deploy.StatusFail {
			mark, colour = "✗", ansiRed
		}
		took := "" // the engine does not time every phase (revert)
		if e.Elapsed > 0 {
			took = e.Elapsed.Round(time.Millisecond).String()
		}
		line := fmt.Sprintf("%s %-10s %8s", t.paint(colour, mark), e.Phase, took)
		if d := eventDetails(e); d != "" {
			line += "  " + d
		}
		if st := t.current.Load(); st != nil && st.phase == e.Phase {
			t.current.Store(nil)
		}
		t.printLine(line)
	case deploy.StatusWarn:
		t.printLine(t.paint(ansiYellow, "! warning: "+eventDetails(e)))
	default: // info
		if st := t.current.Load(); st != nil && st.phase == e.Phase {
			next := *st
			next.note = eventDetails(e)
			t.current.Store(&next)
		}
		t.printLine(t.paint(ansiDim, fmt.Sprintf("  %s: %s", e.Phase, eventDetails(e))))
	}
}

// start starts the spinner on the first phase; t.mu is held.
func (t *ttyReporter) start() {
	if t.started || t.sp == nil {
		return
	}
	t.started = true
	registerActive(t)
	t.sp.Suffix = t.suffix()
	t.sp.Start()
}

// printLine prints a line above the spinner; t.mu is held.
func (t *ttyReporter) printLine(line string) {
	if !t.started {
		fmt.Fprintln(t.w, line)
		return
	}
	t.sp.Lock()
	defer t.sp.Unlock()
	// Erase the spinner's frame, then print; the spinner redraws below on
	// its next tick.
	fmt.Fprint(t.w, "\r\x1b[K", line, "\n")
}

// Close stops the spinner, erasing its line and showing the cursor again.
func (t *ttyReporter) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	if t.started {
		t.sp.Stop()
		unregisterActive(t)
	}
}

// Terminal colours (SGR), used only when colour is on.
const (
	ansiRed    = "31"
	ansiGreen  = "32"
	ansiYellow = "33"
	ansiDim    = "2"
)

func (t *ttyReporter) paint(code, s string) string {
	if !t.opts.colour {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// The running spinner, so that Main can stop it when a second signal exits
// at once (os.Exit runs no deferred Close) and print the first signal's
// notice above it.
var active struct {
	sync.Mutex
	t *ttyReporter
}

func registerActive(t *ttyReporter) {
	active.Lock()
	active.t = t
	active.Unlock()
}

func unregisterActive(t *ttyReporter) {
	active.Lock()
	if active.t == t {
		active.t = nil
	}
	active.Unlock()
}

// stopProgress stops the running spinner, if any, restoring the terminal.
func stopProgress() {
	active.Lock()
	t := active.t
	active.Unlock()
	if t != nil {
		t.Close()
	}
}

// printAboveProgress prints a line to w, above the spinner when one runs.
func printAboveProgress(w io.Writer, line string) {
	active.Lock()
	t := active.t
	active.Unlock()
	if t == nil {
		fmt.Fprintln(w, line)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		fmt.Fprintln(w, line)
		return
	}
	t.printLine(line)
}

var _ pflag.Value = (*progressFlag)(nil)
