package cmd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

// scriptedEvents is a rollout as the engine reports it: a success, with
// warnings and notes, and a message quoting a container's log (with an ESC
// in it, which only the tty renderer may ever write).
func scriptedEvents(start time.Time) []deploy.Event {
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	return []deploy.Event{
		{Time: at(0), Phase: deploy.PhasePlan, Status: deploy.StatusStart},
		{Time: at(5), Phase: deploy.PhasePlan, Status: deploy.StatusInfo, Message: "pulling web:v2"},
		{Time: at(9), Phase: deploy.PhasePlan, Status: deploy.StatusWarn, Code: deploy.WarnNoProbeOnCurrent, Message: "container web-old was not created by deployctl"},
		{Time: at(12), Phase: deploy.PhasePlan, Status: deploy.StatusDone, Message: "1 current container", Elapsed: 12 * time.Millisecond},
		{Time: at(12), Phase: deploy.PhaseCreate, Status: deploy.StatusStart, Message: "web:v2"},
		{Time: at(300), Phase: deploy.PhaseCreate, Status: deploy.StatusDone, Container: "web-v2-1a2b3c", Message: "started", Elapsed: 288 * time.Millisecond},
		{Time: at(300), Phase: deploy.PhaseHealthy, Status: deploy.StatusStart},
		{Time: at(2300), Phase: deploy.PhaseHealthy, Status: deploy.StatusDone, Container: "web-v2-1a2b3c", Message: "healthy; log: \x1b[31mred\x1b[0m <ok> & done", Elapsed: 2 * time.Second},
		{Time: at(2300), Phase: deploy.PhaseRegister, Status: deploy.StatusStart},
		{Time: at(4300), Phase: deploy.PhaseRegister, Status: deploy.StatusDone, Container: "web-v2-1a2b3c", URL: "http://172.18.0.5:8080", Message: "in Traefik service web@docker", Elapsed: 2 * time.Second},
		{Time: at(4300), Phase: deploy.PhaseDrain, Status: deploy.StatusStart},
		{Time: at(4310), Phase: deploy.PhaseDrain, Status: deploy.StatusInfo, Container: "web-v1-9f8e7d", URL: "http://172.18.0.4:8080", Message: "drain marker written"},
		{Time: at(7000), Phase: deploy.PhaseDrain, Status: deploy.StatusDone, Message: "old server(s) out of Traefik: web-v1-9f8e7d", Elapsed: 2700 * time.Millisecond},
		{Time: at(7000), Phase: deploy.PhaseStop, Status: deploy.StatusStart},
		{Time: at(7500), Phase: deploy.PhaseStop, Status: deploy.StatusDone, Message: "old container(s) stopped: web-v1-9f8e7d", Elapsed: 500 * time.Millisecond},
		{Time: at(7500), Phase: deploy.PhaseDone, Status: deploy.StatusDone, Container: "web-v2-1a2b3c", URL: "http://172.18.0.5:8080", Message: "web v2 is serving", Elapsed: 7500 * time.Millisecond},
	}
}

// failedEvents is a rollout that fails in register and is reverted.
func failedEvents(start time.Time) []deploy.Event {
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	return []deploy.Event{
		{Time: at(0), Phase: deploy.PhaseRegister, Status: deploy.StatusStart},
		{Time: at(30000), Phase: deploy.PhaseRegister, Status: deploy.StatusFail, Message: "never appeared in service web@docker", Elapsed: 30 * time.Second},
		{Time: at(30000), Phase: deploy.PhaseRevert, Status: deploy.StatusStart, Message: "putting the old version back in rotation"},
		{Time: at(30100), Phase: deploy.PhaseRevert, Status: deploy.StatusDone, Container: "web-v2-1a2b3c", Message: "new container removed"},
	}
}

// steppedEvents is step 2 of 3 of a rollout of three replicas failing,
// and the restore after it: the engine's messages of a step start with
// the step, a restore's do not.
func steppedEvents(start time.Time) []deploy.Event {
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	return []deploy.Event{
		{Time: at(0), Phase: deploy.PhaseCreate, Status: deploy.StatusStart, Message: "step 2/3: starting 1 new container(s) of web:v2", Step: 2, Steps: 3},
		{Time: at(200), Phase: deploy.PhaseCreate, Status: deploy.StatusInfo, Container: "web-v2-2b3c4d", Message: "step 2/3: started", Step: 2, Steps: 3},
		{Time: at(900), Phase: deploy.PhaseHealthy, Status: deploy.StatusFail, Container: "web-v2-2b3c4d", Message: "step 2/3, container web-v2-2b3c4d: exited with code 3", Step: 2, Steps: 3, Elapsed: 700 * time.Millisecond},
		{Time: at(900), Phase: deploy.PhaseRevert, Status: deploy.StatusStart, Message: "restoring the old version", Step: 2, Steps: 3},
		{Time: at(1000), Phase: deploy.PhaseRevert, Status: deploy.StatusInfo, Container: "web-v2-2b3c4d", Message: "new container removed", Step: 2, Steps: 3},
		{Time: at(1500), Phase: deploy.PhaseRevert, Status: deploy.StatusInfo, Container: "web-v1-a", Message: "old container started again", Step: 2, Steps: 3},
		{Time: at(2000), Phase: deploy.PhaseRevert, Status: deploy.StatusDone, Message: "the old version is serving again", Step: 2, Steps: 3},
	}
}

// The human renderers put an event's step before its message once: the
// engine's messages of a step already start with it, a restore's get it.
func TestPlainNamesTheStep(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressFor(progressPlain, &buf, noEnv)
	render(p, steppedEvents(time.Now()))
	out := buf.String()
	for _, want := range []string{
		"create     info    web-v2-2b3c4d step 2/3: started\n",
		"healthy    failed  web-v2-2b3c4d step 2/3, container web-v2-2b3c4d: exited with code 3 (700ms)\n",
		"revert     start   step 2/3: restoring the old version\n",
		"revert     info    web-v1-a step 2/3: old container started again\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plain output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "step 2/3: step 2/3") {
		t.Errorf("the step is named twice:\n%s", out)
	}
}

func render(r deploy.Reporter, events []deploy.Event) {
	for _, e := range events {
		r.Event(e)
	}
}

func TestPlainHasNoControlCharacters(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressFor(progressPlain, &buf, noEnv)
	render(p, append(scriptedEvents(time.Now()), failedEvents(time.Now())...))
	p.Close()
	out := buf.String()
	if strings.ContainsFunc(out, func(r rune) bool { return r != '\n' && isControl(r) }) {
		t.Errorf("control characters in plain output:\n%q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(scriptedEvents(time.Now()))+len(failedEvents(time.Now())) {
		t.Errorf("%d lines, want one per event:\n%s", len(lines), out)
	}
	for _, want := range []string{"register   done    web-v2-1a2b3c http://172.18.0.5:8080 in Traefik service web@docker (2s)", `log: \x1b[31mred`, "register   failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("plain output lacks %q:\n%s", want, out)
		}
	}
}

func noEnv(string) string { return "" }

// TestJSONEventsMatchSchema checks the json renderer's output against
// docs/events.schema.json, and the schema's phase and status lists against
// the constants the engine declares.
func TestJSONEventsMatchSchema(t *testing.T) {
	schema := loadSchema(t)
	var buf bytes.Buffer
	p := newProgressFor(progressJSON, &buf, noEnv)
	events := append(scriptedEvents(time.Now()), failedEvents(time.Now())...)
	events = append(events, steppedEvents(time.Now())...)
	render(p, events)
	p.Close()
	if bytes.IndexByte(buf.Bytes(), 0x1b) >= 0 {
		t.Errorf("ESC byte in json output")
	}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		var v any
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", n+1, err, line)
		}
		if err := validate(schema, v, "$"); err != nil {
			t.Errorf("line %d: %v\n%s", n+1, err, line)
		}
		obj := v.(map[string]any)
		e := events[n]
		wantElapsed := e.Elapsed > 0 && (e.Status == deploy.StatusDone || e.Status == deploy.StatusFail)
		if _, has := obj["elapsed"]; has != wantElapsed {
			t.Errorf("line %d: elapsed present=%v for status %s, elapsed %s", n+1, has, e.Status, e.Elapsed)
		}
		if num, ok := obj["elapsed"].(json.Number); ok {
			if got, _ := num.Float64(); math.Abs(got-e.Elapsed.Seconds()) > 0.001 {
				t.Errorf("line %d: elapsed %v, want %v", n, got, e.Elapsed.Seconds())
			}
		}
		if ts, _ := time.Parse(time.RFC3339Nano, obj["time"].(string)); !ts.Equal(e.Time) {
			t.Errorf("line %d: time %v, want %v", n+1, obj["time"], e.Time)
		}
		if step, _ := obj["step"].(json.Number); step.String() != nonZero(e.Step) {
			t.Errorf("line %d: step %q, want %q: %s", n+1, step, nonZero(e.Step), line)
		}
		if steps, _ := obj["steps"].(json.Number); steps.String() != nonZero(e.Steps) {
			t.Errorf("line %d: steps %q, want %q: %s", n+1, steps, nonZero(e.Steps), line)
		}
		if obj["message"] != nilIfEmpty(e.Message) || obj["container"] != nilIfEmpty(e.Container) || obj["url"] != nilIfEmpty(e.URL) || obj["code"] != nilIfEmpty(e.Code) {
			t.Errorf("line %d does not carry the event's fields: %s", n+1, line)
		}
		n++
	}
	if n != len(events) {
		t.Errorf("%d lines for %d events", n, len(events))
	}

	// Every phase, status and warning code the engine declares must be in
	// the schema.
	phases, statuses := engineConstants(t)
	props := schema["properties"].(map[string]any)
	for name, want := range map[string][]string{"phase": phases, "status": statuses, "code": warningCodes(t)} {
		enum := props[name].(map[string]any)["enum"].([]any)
		for _, w := range want {
			if !slices.Contains(enum, any(w)) {
				t.Errorf("docs/events.schema.json: %s %q (declared in deploy) is not in the enum", name, w)
			}
		}
		for _, e := range enum {
			if !slices.Contains(want, e.(string)) {
				t.Errorf("docs/events.schema.json: %s %q is not declared in deploy", name, e)
			}
		}
	}
}

// nonZero is n as JSON writes it, "" for 0 (omitted).
func nonZero(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "events.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&schema); err != nil {
		t.Fatalf("docs/events.schema.json: %v", err)
	}
	return schema
}

// validate checks v against the subset of JSON Schema (2020-12) that
// docs/events.schema.json uses; a keyword outside that subset fails, so the
// schema cannot outgrow this check unnoticed.
func validate(schema map[string]any, v any, path string) error {
	var errs []error
	for kw, arg := range schema {
		switch kw {
		case "$schema", "$id", "title", "description", "examples":
		case "type":
			if !hasType(v, arg.(string)) {
				errs = append(errs, fmt.Errorf("%s: %v is not of type %s", path, v, arg))
			}
		case "enum":
			if !slices.Contains(arg.([]any), v) {
				errs = append(errs, fmt.Errorf("%s: %v is not one of %v", path, v, arg))
			}
		case "format":
			if arg != "date-time" {
				errs = append(errs, fmt.Errorf("%s: format %q not supported by this check", path, arg))
			} else if s, ok := v.(string); ok {
				if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
					errs = append(errs, fmt.Errorf("%s: %q is not an RFC 3339 date-time", path, s))
				}
			}
		case "minLength":
			n, _ := strconv.Atoi(arg.(json.Number).String())
			if s, ok := v.(string); ok && len([]rune(s)) < n {
				errs = append(errs, fmt.Errorf("%s: %q is shorter than %d", path, s, n))
			}
		case "minimum":
			min, _ := arg.(json.Number).Float64()
			if n, ok := v.(json.Number); ok {
				if f, _ := n.Float64(); f < min {
					errs = append(errs, fmt.Errorf("%s: %v is less than %v", path, f, min))
				}
			}
		case "required":
			if obj, ok := v.(map[string]any); ok {
				for _, r := range arg.([]any) {
					if _, ok := obj[r.(string)]; !ok {
						errs = append(errs, fmt.Errorf("%s: %q is required", path, r))
					}
				}
			}
		case "properties":
			if obj, ok := v.(map[string]any); ok {
				for name, sub := range arg.(map[string]any) {
					if pv, ok := obj[name]; ok {
						errs = append(errs, validate(sub.(map[string]any), pv, path+"."+name))
					}
				}
			}
		case "additionalProperties":
			if arg != false {
				errs = append(errs, fmt.Errorf("%s: additionalProperties other than false not supported by this check", path))
			} else if obj, ok := v.(map[string]any); ok {
				known, _ := schema["properties"].(map[string]any)
				for name := range obj {
					if _, ok := known[name]; !ok {
						errs = append(errs, fmt.Errorf("%s: property %q is not in the schema", path, name))
					}
				}
			}
		default:
			errs = append(errs, fmt.Errorf("%s: schema keyword %q not supported by this check; extend validate", path, kw))
		}
	}
	return errors.Join(errs...)
}

func hasType(v any, typ string) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		_, err := n.Int64()
		return ok && err == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	}
	return false
}

// engineConstants returns the values of the Phase and Status constants
// declared in package deploy.
func engineConstants(t *testing.T) (phases, statuses []string) {
	t.Helper()
	for _, gd := range genDecls(t, filepath.Join("..", "deploy"), token.CONST) {
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			id, ok := vs.Type.(*ast.Ident)
			if !ok || len(vs.Values) != 1 {
				continue
			}
			lit, ok := vs.Values[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				continue
			}
			v, _ := strconv.Unquote(lit.Value)
			switch id.Name {
			case "Phase":
				phases = append(phases, v)
			case "Status":
				statuses = append(statuses, v)
			}
		}
	}
	if len(phases) == 0 || len(statuses) == 0 {
		t.Fatalf("found no Phase or Status constants in deploy")
	}
	return phases, statuses
}

// warningCodes are the values of deploy's Warn* constants.
func warningCodes(t *testing.T) []string {
	t.Helper()
	var codes []string
	for _, gd := range genDecls(t, filepath.Join("..", "deploy"), token.CONST) {
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			if len(vs.Names) != 1 || len(vs.Values) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Warn") {
				continue
			}
			if lit, ok := vs.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				codes = append(codes, v)
			}
		}
	}
	if len(codes) == 0 {
		t.Fatalf("found no Warn constants in deploy")
	}
	return codes
}

func TestProgressModeSelection(t *testing.T) {
	ptmx, tty := openPTY(t)
	_ = ptmx
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cases := []struct {
		mode       string
		w          io.Writer
		getenv     func(string) string
		want       string
		spin, colr bool
	}{
		{"auto", &bytes.Buffer{}, noEnv, "plain", false, false},
		{"auto", tty, noEnv, "tty", true, true},
		{"auto", tty, env("NO_COLOR", "1"), "tty", true, false},
		{"auto", tty, env("TERM", "dumb"), "plain", false, false},
		{"tty", &bytes.Buffer{}, noEnv, "tty", false, false},
		{"tty", tty, env("TERM", "dumb"), "tty", true, false},
		{"plain", tty, noEnv, "plain", false, false},
		{"json", tty, noEnv, "json", false, false},
	}
	for _, tc := range cases {
		p := newProgressFor(tc.mode, tc.w, tc.getenv)
		var got string
		switch r := p.(type) {
		case *ttyReporter:
			got = "tty"
			if (r.sp != nil) != tc.spin || r.opts.colour != tc.colr {
				t.Errorf("%s on %T: spinner %v colour %v, want %v %v", tc.mode, tc.w, r.sp != nil, r.opts.colour, tc.spin, tc.colr)
			}
		case nopClose:
			switch r.Reporter.(type) {
			case *plainReporter:
				got = "plain"
			case *jsonReporter:
				got = "json"
			}
		}
		if got != tc.want {
			t.Errorf("%s on %T (%v): %s, want %s", tc.mode, tc.w, tc.getenv("TERM"), got, tc.want)
		}
		p.Close()
	}
}

func TestProgressFlagAndEnv(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	code, stdout, stderr := run(t, "rollout", "--image", "web", "--version", "v1", "--progress", "fancy")
	if code != ExitUsage || stdout != "" || !strings.Contains(stderr, `invalid argument "fancy" for "--progress" flag: must be one of auto, tty, plain, json`) {
		t.Errorf("--progress fancy: exit %d\n%s", code, stderr)
	}
	t.Setenv("DEPLOYCTL_PROGRESS", "fancy")
	code, _, stderr = run(t, "rollout", "--image", "web", "--version", "v1")
	if code != ExitUsage || !strings.Contains(stderr, `DEPLOYCTL_PROGRESS="fancy"`) {
		t.Errorf("DEPLOYCTL_PROGRESS=fancy: exit %d\n%s", code, stderr)
	}
	// The flag wins over the environment, and the value reaches newProgress.
	t.Setenv("DEPLOYCTL_PROGRESS", "json")
	root := newRootCmd(newFactory(), io.Discard, io.Discard)
	var got progress
	for _, c := range root.Commands() {
		if c.Name() == "rollout" {
			c.RunE = func(c *cobra.Command, _ []string) error { got = newProgress(c); return nil }
		}
	}
	root.SetArgs([]string{"rollout", "--progress", "plain"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if r, ok := got.(nopClose); !ok || !isPlain(r.Reporter) {
		t.Errorf("--progress plain with DEPLOYCTL_PROGRESS=json: %T", got)
	}
	root = newRootCmd(newFactory(), io.Discard, io.Discard)
	for _, c := range root.Commands() {
		if c.Name() == "rollout" {
			c.RunE = func(c *cobra.Command, _ []string) error { got = newProgress(c); return nil }
		}
	}
	root.SetArgs([]string{"rollout"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if r, ok := got.(nopClose); !ok || isPlain(r.Reporter) {
		t.Errorf("DEPLOYCTL_PROGRESS=json: %T", got)
	}
}

func isPlain(r deploy.Reporter) bool { _, ok := r.(*plainReporter); return ok }

// TestTTYRendererOnPTY renders the scripted events through the tty renderer
// on a real pseudo-terminal (in this process): the spinner must run, show
// the phase and elapsed time, print each finished phase with its duration,
// and leave the terminal as it found it (cursor shown, line erased).
func TestTTYRendererOnPTY(t *testing.T) {
	ptmx, tty := openPTY(t)
	out := readAll(ptmx)
	p := newProgressFor(progressAuto, tty, noEnv)
	r, ok := p.(*ttyReporter)
	if !ok || r.sp == nil {
		t.Fatalf("auto on a terminal: %T", p)
	}
	start := time.Now()
	events := scriptedEvents(start)
	for i, e := range events {
		r.Event(e)
		if i == 0 {
			time.Sleep(350 * time.Millisecond) // a few spinner frames
		}
	}
	// A notice printed by Main on a signal goes above the spinner.
	printAboveProgress(tty, "deployctl: notice")
	p.Close()
	p.Close() // idempotent
	r.Event(deploy.Event{Time: time.Now(), Phase: deploy.PhasePrune, Status: deploy.StatusWarn, Message: "after close"})
	got := out.all(tty)

	for _, want := range []string{
		"\x1b[?25l", // spinner hid the cursor
		"plan 0.",   // current phase and elapsed time
		"\x1b[32m✓\x1b[0m plan",
		"healthy          2s  web-v2-1a2b3c healthy; log: \\x1b[31mred\\x1b[0m <ok> & done",
		"\x1b[33m! warning: container web-old was not created by deployctl\x1b[0m",
		"  plan: pulling web:v2",
		"deployctl: notice",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("tty output lacks %q:\n%q", want, got)
		}
	}
	if frames := countFrames(got); frames < 2 {
		t.Errorf("%d spinner frames, want several:\n%q", frames, got)
	}
	if strings.Contains(got, "after close") {
		t.Errorf("event rendered after Close")
	}
	assertTerminalRestored(t, got)
}

// TestStopProgress: what Main calls before os.Exit on a second signal stops
// the running spinner and restores the terminal.
func TestStopProgress(t *testing.T) {
	ptmx, tty := openPTY(t)
	out := readAll(ptmx)
	p := newProgressFor(progressTTY, tty, noEnv)
	p.Event(deploy.Event{Time: time.Now(), Phase: deploy.PhaseDrain, Status: deploy.StatusStart})
	time.Sleep(150 * time.Millisecond)
	stopProgress()
	stopProgress()
	p.Close()
	got := out.all(tty)
	if !strings.Contains(got, "drain 0.") {
		t.Errorf("spinner did not run:\n%q", got)
	}
	assertTerminalRestored(t, got)
	if active.t != nil {
		t.Errorf("renderer still registered after stopProgress")
	}
}

// countFrames counts the spinner's frames in out.
func countFrames(out string) int {
	n := 0
	for _, f := range spinnerFrames {
		n += strings.Count(out, "\r"+f) + strings.Count(out, "m"+f)
	}
	return n
}

// assertTerminalRestored checks that the last cursor change shows it, and
// that nothing but an erased line follows.
func assertTerminalRestored(t *testing.T, out string) {
	t.Helper()
	hide, show := strings.LastIndex(out, "\x1b[?25l"), strings.LastIndex(out, "\x1b[?25h")
	if show < 0 || show < hide {
		t.Errorf("cursor left hidden:\n%q", out)
	}
}

// TestTTYWithoutTerminal: --progress=tty forced onto a pipe prints the tty
// layout without spinner, colour or any control character.
func TestTTYWithoutTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressFor(progressTTY, &buf, noEnv)
	render(p, append(scriptedEvents(time.Now()), failedEvents(time.Now())...))
	p.Close()
	out := buf.String()
	if strings.ContainsFunc(out, func(r rune) bool { return r != '\n' && isControl(r) }) {
		t.Errorf("control characters:\n%q", out)
	}
	for _, want := range []string{"✓ register         2s  web-v2-1a2b3c http://172.18.0.5:8080", "✗ register        30s  never appeared", "✓ revert               web-v2-1a2b3c new container removed", "! warning: container web-old"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}

func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	_ = pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 200})
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return ptmx, tty
}

// reader reads a terminal's master side in the background.
type reader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func readAll(f *os.File) *reader {
	r := &reader{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			r.mu.Lock()
			r.buf.Write(b[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return r
}

// sofar is what has been read until now.
func (r *reader) sofar() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// endMarker is written to the terminal after what a test checks.
const endMarker = "<<end of test output>>"

// all returns everything written to tty until now. It does not wait for EOF:
// Linux hands data written to a terminal to its master side asynchronously,
// and a read after the last close of tty may return EIO with the tail of the
// output still unread (seen in CI under -race: the output ended mid-run).
// Instead it writes endMarker to tty and waits until the reader has it; the
// terminal keeps the order of writes, so everything before it has been read.
func (r *reader) all(tty *os.File) string {
	if _, err := tty.WriteString(endMarker); err != nil {
		return r.sofar() + fmt.Sprintf("<<writing the end marker: %v>>", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := r.sofar(); strings.Contains(got, endMarker) {
			return got[:strings.Index(got, endMarker)]
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r.sofar() + "<<end marker not read within 10s>>"
}

// The binary under a pseudo-terminal. The deployctl on PATH is this test
// binary registered through testscript.Main (see testscript_test.go): a
// real process running cmd.Main, with stderr on the terminal. A fake Docker
// engine (fakeDocker) answers the ping and then holds every other request
// for a while before failing it, so the real engine starts its plan phase,
// emits real events, and fails: a short, honest run with no Docker needed.

type ptyRun struct {
	stderr string // what the terminal showed
	stdout string
	code   int
}

func runUnderPTY(t *testing.T, env []string, args []string, signals ...os.Signal) ptyRun {
	t.Helper()
	bin, err := exec.LookPath("deployctl")
	if err != nil {
		t.Skip("deployctl is not on PATH (run through go test, which sets it up in TestMain)")
	}
	ptmx, tty := openPTY(t)
	out := readAll(ptmx)
	var stdout bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stderr, cmd.Stdout = tty, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// tty stays open here: all writes the end marker to it after the run.
	if len(signals) > 0 {
		// Signal once the spinner runs (it hides the cursor first), and
		// again once deployctl says it is cleaning up. (Two signals sent at
		// once would merge into one.)
		waitFor := func(s string) {
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(out.sofar(), s) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		for i, s := range signals {
			if i == 0 {
				waitFor("\x1b[?25l")
			} else {
				waitFor("received: cleaning up")
			}
			_ = cmd.Process.Signal(s)
		}
	}
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("killed by %v", ws.Signal())
		}
	} else if err != nil {
		t.Fatal(err)
	}
	return ptyRun{stderr: out.all(tty), stdout: stdout.String(), code: code}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DEPLOYCTL_") || strings.HasPrefix(kv, "NO_COLOR=") || strings.HasPrefix(kv, "TERM=") || strings.HasPrefix(kv, "DOCKER_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TERM=xterm")
}

func TestBinaryProgressUnderPTY(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	args := []string{"rollout", "--image", "web", "--version", "v2", "--traefik-url", "http://127.0.0.1:1"}
	for _, tc := range []struct {
		name    string
		env     []string
		flags   []string
		spinner bool
		colour  bool
	}{
		{"auto", nil, nil, true, true},
		{"tty", nil, []string{"--progress=tty"}, true, true},
		{"env tty, NO_COLOR", []string{"DEPLOYCTL_PROGRESS=tty", "NO_COLOR=1"}, nil, true, false},
		{"plain", nil, []string{"--progress=plain"}, false, false},
		{"env plain", []string{"DEPLOYCTL_PROGRESS=plain"}, nil, false, false},
		{"json", nil, []string{"--progress", "json"}, false, false},
		{"auto, TERM=dumb", []string{"TERM=dumb"}, nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docker := startFakeDocker(t, 600*time.Millisecond)
			r := runUnderPTY(t, append([]string{"DOCKER_HOST=" + docker}, tc.env...), append(args, tc.flags...))
			if r.code == ExitOK || r.code == ExitUsage {
				t.Fatalf("exit %d, want a failed rollout\n%q", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "plan") || !strings.Contains(r.stderr, "fake docker") {
				t.Errorf("no plan events or failure on the terminal:\n%q", r.stderr)
			}
			if tc.spinner {
				if !strings.Contains(r.stderr, "\x1b[?25l") || countFrames(r.stderr) < 2 || !strings.Contains(r.stderr, "\r\x1b[K") {
					t.Errorf("no spinner control characters:\n%q", r.stderr)
				}
				assertTerminalRestored(t, r.stderr)
				if hasSGR := strings.Contains(r.stderr, "\x1b[31m"); hasSGR != tc.colour {
					t.Errorf("colour %v, want %v:\n%q", hasSGR, tc.colour, r.stderr)
				}
				if !tc.colour && sgr(r.stderr) {
					t.Errorf("colour codes with NO_COLOR:\n%q", r.stderr)
				}
				return
			}
			t.Logf("terminal: %q", r.stderr)
			if strings.ContainsRune(r.stderr, 0x1b) {
				t.Errorf("ESC byte in %s output:\n%q", tc.name, r.stderr)
			}
			if tc.name == "json" {
				events := 0
				for _, line := range strings.Split(r.stderr, "\r\n") {
					if !strings.HasPrefix(line, "{") {
						continue
					}
					var v map[string]any
					if err := json.Unmarshal([]byte(line), &v); err != nil {
						t.Errorf("bad JSON line %q: %v", line, err)
					}
					events++
				}
				if events < 2 {
					t.Errorf("%d JSON events:\n%q", events, r.stderr)
				}
			}
		})
	}
}

// sgr reports whether out has a colour (SGR) sequence.
func sgr(out string) bool {
	for i := strings.Index(out, "\x1b["); i >= 0; {
		j := i + 2
		for j < len(out) && (out[j] >= '0' && out[j] <= '9' || out[j] == ';') {
			j++
		}
		if j < len(out) && out[j] == 'm' {
			return true
		}
		k := strings.Index(out[j:], "\x1b[")
		if k < 0 {
			return false
		}
		i = j + k
	}
	return false
}

// TestBinarySignalsRestoreTerminal: on SIGINT the rollout cleans up and
// exits 130 with the spinner stopped; a second signal exits at once, and
// the spinner is stopped on that path too.
func TestBinarySignalsRestoreTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	args := []string{"rollout", "--image", "web", "--version", "v2", "--traefik-url", "http://127.0.0.1:1", "--progress=tty"}
	for _, sigs := range [][]os.Signal{{os.Interrupt}, {os.Interrupt, os.Interrupt}, {syscall.SIGTERM}} {
		t.Run(fmt.Sprint(sigs), func(t *testing.T) {
			docker := startFakeDocker(t, time.Minute) // holds the first request until cancelled
			r := runUnderPTY(t, []string{"DOCKER_HOST=" + docker}, args, sigs...)
			want := ExitSIGINT
			if sigs[0] == syscall.SIGTERM {
				want = ExitSIGTERM
			}
			if r.code != want {
				t.Errorf("exit %d, want %d\n%q", r.code, want, r.stderr)
			}
			if !strings.Contains(r.stderr, "\x1b[?25l") {
				t.Errorf("spinner never ran:\n%q", r.stderr)
			}
			if !strings.Contains(r.stderr, "received: cleaning up") {
				t.Errorf("no signal notice:\n%q", r.stderr)
			}
			assertTerminalRestored(t, r.stderr)
			t.Logf("terminal: %q", r.stderr)
		})
	}
}

// genDecls returns the top-level declarations of kind tok (CONST, VAR) in
// the non-test Go files of dir.
func genDecls(t *testing.T, dir string, tok token.Token) []*ast.GenDecl {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []*ast.GenDecl
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == tok {
				out = append(out, gd)
			}
		}
	}
	return out
}
