package deploy

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRedactorClean(t *testing.T) {
	secrets := []string{
		"sk-live-4f9a2c7e", // --env API_KEY
		"postgres://app:p4ss,w0rd@db/shop?sslmode=require", // a comma, regexp metacharacters
		"p4ss,w0rd",                            // inside the longer one: longest first
		"1", "true", "prod", "8080", "   x   ", // too short to redact (MinRedactedLen)
	}
	rd := newRedactor(secrets)
	cases := []struct{ name, in, want string }{
		{"nothing to do", "listening on :8080\n", "listening on :8080\n"},
		{"a secret in a line", "config: API_KEY=sk-live-4f9a2c7e debug=true", "config: API_KEY=[redacted] debug=true"},
		{"twice, and the longer first", "db=postgres://app:p4ss,w0rd@db/shop?sslmode=require pw=p4ss,w0rd",
			"db=[redacted] pw=[redacted]"},
		{"short values stay", "DEBUG=1 ENV=prod PORT=8080 ok=true", "DEBUG=1 ENV=prod PORT=8080 ok=true"},
		{"split by colour codes", "key=\x1b[1;31msk-live-\x1b[0m4f9a2c7e!", "key=[redacted]!"},
		{"wrapped across lines", "key=sk-live-4f\n9a2c7e end\nnext", "key=[redacted]\n end\nnext"},
		{"across CRLF", "key=sk-live-4f\r\n9a2c7e", "key=[redacted]\n"},
		{"zero-width character inside", "key=sk-live\u200b-4f9a2c7e", "key=[redacted]"},
		{"head at the end (cut short)", "probe: GET /x?key=sk-live-4", "probe: GET /x?key=[redacted]"},
		{"tail at the start", "f9a2c7e rest", "[redacted] rest"},
		{"a piece too short to tell", "ends with sk-li", "ends with sk-li"},
		{"CSI dropped", "\x1b[2J\x1b[Hclear\x1b[0m", "clear"},
		{"OSC (window title) dropped", "\x1b]0;pwned\x07title", "title"},
		{"OSC with ST dropped", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"two-byte escape dropped", "\x1b(Bcharset \x1bMup", "charset up"},
		{"unfinished escape", "text\x1b[31", "text"},
		{"8-bit CSI dropped", "a\u009b31mb", "ab"},
		{"bell and NUL escaped", "ding\x07 nul\x00", `ding\x07 nul\x00`},
		{"lone CR is a line break", "10%\r50%\r100%", "10%\n50%\n100%"},
		{"bidi override escaped", "file\u202etxt.exe", `file\u202etxt.exe`},
		{"invalid UTF-8 replaced", "bad \xff byte", "bad \uFFFD byte"},
		{"tabs stay", "a\tb", "a\tb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rd.clean(tc.in); got != tc.want {
				t.Errorf("clean(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if got := (redactor{}).clean("plain \x1b[31mred\x1b[0m"); got != "plain red" {
		t.Errorf("without secrets: %q", got)
	}
}

// Everything the engine relays from a container (its log lines on a crash,
// its health probe's output, in errors and in warning events) has the
// container's own env values (--env/--env-file and those copied from the
// current container) and the Traefik credentials redacted, and no escape
// sequence.
func TestRelayedContainerOutputIsRedacted(t *testing.T) {
	const (
		fromFlag    = "flag-secret-4c1d"
		copied      = "copied-secret-9e2b"
		traefikPass = "traefik-pass-77aa"
	)
	dump := "config: API_KEY=" + fromFlag + " DB_PASSWORD=\x1b[33m" + copied + "\x1b[0m DEBUG=1\n" +
		"\x1b]0;owned\x07traefik password " + traefikPass + "\npanic: boom\n"
	probe := "check failed: GET /health?key=" + fromFlag + "&db=" + copied + " \x1b[31m503\x1b[0m"
	cases := []struct {
		name  string
		setup func(w *world, o *Options, e *Engine)
		want  []string
	}{
		{"crash on start", func(w *world, o *Options, e *Engine) {
			w.behave = func(c *fakeContainer) { c.crash = true }
		}, []string{"exited with code 3", "API_KEY=[redacted] DB_PASSWORD=[redacted] DEBUG=1", "traefik password [redacted]", "panic: boom"}},
		{"unhealthy", func(w *world, o *Options, e *Engine) {
			w.behave = func(c *fakeContainer) { c.sick = true }
			w.onInspect = func(c *fakeContainer) {
				if c.Health == "unhealthy" {
					c.HealthLog = []HealthRun{{ExitCode: 1, Output: probe}}
				}
			}
		}, []string{"is unhealthy", "last probe output: check failed: GET /health?key=[redacted]&db=[redacted] 503", "DB_PASSWORD=[redacted]"}},
		{"health check fails in the watch window", func(w *world, o *Options, e *Engine) {
			o.Watch = time.Minute
			rep := e.Reporter
			e.Reporter = ReporterFunc(func(ev Event) {
				rep.Event(ev)
				if ev.Phase == PhaseWatch && ev.Status == StatusStart {
					w.mu.Lock()
					for _, c := range w.containers {
						if c.Name != "web-v1" {
							c.HealthLog = []HealthRun{{ExitCode: 1, Output: probe}}
						}
					}
					w.mu.Unlock()
				}
			})
		}, []string{"its health check started failing: check failed: GET /health?key=[redacted]&db=[redacted] 503"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.addImage("web:v2", nil)
			w.logs = dump
			old := w.addRunning("web-v1", "v1", true)
			old.Env = []string{"DB_PASSWORD=" + copied, "DEBUG=1"}
			o := testOptions("v2")
			o.Env = []string{"API_KEY=" + fromFlag}
			e, ev := engine(w)
			e.Secrets = []string{traefikPass}
			tc.setup(w, &o, e)
			_, err := e.Rollout(context.Background(), o)
			if err == nil {
				t.Fatal("the rollout succeeded")
			}
			shown := []string{err.Error()}
			ev.mu.Lock()
			for _, e := range ev.all {
				shown = append(shown, e.Message)
			}
			ev.mu.Unlock()
			all := strings.Join(shown, "\n")
			for _, secret := range []string{fromFlag, copied, traefikPass} {
				if strings.Contains(all, secret) {
					t.Errorf("%s shown:\n%s", secret, all)
				}
			}
			if strings.ContainsAny(all, "\x1b\x07") {
				t.Errorf("an escape sequence or control character is relayed: %q", all)
			}
			for _, want := range tc.want {
				if !strings.Contains(all, want) {
					t.Errorf("the output lacks %q:\n%s", want, all)
				}
			}
		})
	}
}
