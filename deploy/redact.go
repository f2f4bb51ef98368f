package deploy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What a container prints (its log lines, its health probe's output) is
// relayed into progress events, error messages and the --json document,
// which end up in CI logs. An app that crashes often logs its config on
// the way down, env included, and may colour its output with ANSI escapes
// that would rewrite a terminal's screen. Everything relayed goes through
// relay: the values of the container's own environment (--env, --env-file,
// and what was copied from the current container) and the Traefik
// credentials are replaced by [redacted], escape sequences are dropped and
// other control characters shown escaped.

// Redacted replaces a secret in relayed output.
const Redacted = "[redacted]"

// MinRedactedLen is the length (in characters) from which a value is
// redacted: shorter ones ("1", "true", "prod", a port) are rarely secrets,
// and blanking every "1" or "true" would make the app's logs unreadable.
const MinRedactedLen = 6

// relay is text from a container made fit to show: secrets redacted,
// control characters and escape sequences neutralised.
func (r *rollout) relay(text string) string {
	values := slices.Clone(r.e.Secrets)
	values = append(values, envValues(r.o.Env)...)
	for _, c := range []*Container{r.template, r.newC} {
		if c != nil {
			values = append(values, envValues(c.Env)...)
		}
	}
	for _, old := range r.olds {
		values = append(values, envValues(old.Env)...)
	}
	if s := r.stepRun; s != nil {
		for _, t := range s.news {
			values = append(values, envValues(t.c.Env)...)
		}
	}
	return newRedactor(values).clean(text)
}

// probeOutput is the container's last health probe output, relayed.
func (r *rollout) probeOutput(c Container) string {
	return r.relay(lastProbe(c))
}

func envValues(env []string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		if _, v, ok := strings.Cut(e, "="); ok {
			out = append(out, v)
		}
	}
	return out
}

// redactor replaces secrets in text, longest first.
type redactor struct{ secrets []string }

func newRedactor(values []string) redactor {
	var rd redactor
	for _, v := range values {
		// A secret is matched in the printable text only (see clean), so
		// it is matched without its own control characters too.
		v = strings.Map(func(r rune) rune {
			if r == '\t' || r == ' ' || unicode.IsPrint(r) {
				return r
			}
			return -1
		}, v)
		if utf8.RuneCountInString(strings.TrimSpace(v)) >= MinRedactedLen {
			rd.secrets = append(rd.secrets, v)
		}
	}
	slices.SortFunc(rd.secrets, func(a, b string) int { return len(b) - len(a) })
	rd.secrets = slices.Compact(rd.secrets)
	return rd
}

// unit is one piece of the text being cleaned: what it becomes in the
// output, and whether it is printable text a secret can be matched in.
type unit struct {
	out       string
	printable bool
	redacted  bool
}

// clean returns text with escape sequences (CSI, OSC, ...) dropped, other
// control and invisible format characters shown as \xNN or \uNNNN, a lone
// carriage return made a line break, invalid UTF-8 replaced, and every
// secret replaced by Redacted. Secrets are matched in the printable text
// alone, so one split by a line break or an escape sequence (colour codes
// inside a word, a line wrapped by the app) is found too; a secret's tail at
// the start of text or its head at the end (output cut short) as well, from
// MinRedactedLen characters on.
func (rd redactor) clean(text string) string {
	units := split(text)
	if len(rd.secrets) > 0 {
		rd.mark(units)
	}
	var b strings.Builder
	for i := 0; i < len(units); i++ {
		if !units[i].redacted {
			b.WriteString(units[i].out)
			continue
		}
		b.WriteString(Redacted)
		for ; i+1 < len(units) && units[i+1].redacted; i++ {
			if units[i+1].out == "\n" {
				b.WriteString("\n") // keep the lines a secret spanned
			}
		}
	}
	return b.String()
}

// mark sets redacted on the units that make up a secret.
func (rd redactor) mark(units []unit) {
	var view strings.Builder
	var owner []int // unit index of each byte of view
	for i, u := range units {
		if u.printable {
			view.WriteString(u.out)
			for range len(u.out) {
				owner = append(owner, i)
			}
		}
	}
	v := view.String()
	span := func(from, to int) { // view bytes [from, to)
		for i := owner[from]; i <= owner[to-1]; i++ {
			units[i].redacted = true
		}
	}
	for _, s := range rd.secrets {
		for at := 0; ; {
			i := strings.Index(v[at:], s)
			if i < 0 {
				break
			}
			span(at+i, at+i+len(s))
			at += i + len(s)
		}
		// A secret cut off at either end of the text.
		for k := len(s) - 1; k > 0 && utf8.RuneCountInString(s[:k]) >= MinRedactedLen; k-- {
			if strings.HasSuffix(v, s[:k]) {
				span(len(v)-k, len(v))
				break
			}
		}
		for k := len(s) - 1; k > 0 && utf8.RuneCountInString(s[len(s)-k:]) >= MinRedactedLen; k-- {
			if strings.HasPrefix(v, s[len(s)-k:]) {
				span(0, k)
				break
			}
		}
	}
}

// split cuts text into units: printable runes, line breaks, escaped
// control characters and dropped escape sequences.
func split(text string) []unit {
	units := make([]unit, 0, len(text))
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == 0x1b || r == 0x9b: // ESC, or the 8-bit CSI
			i += escapeLen(text[i:], size)
			units = append(units, unit{})
			continue
		case r == '\n':
			units = append(units, unit{out: "\n"})
		case r == '\r':
			if !strings.HasPrefix(text[i+size:], "\n") {
				units = append(units, unit{out: "\n"}) // a progress bar's redraw
			}
		case r == utf8.RuneError && size <= 1:
			units = append(units, unit{out: "\uFFFD"})
		case r == '\t' || r == ' ' || unicode.IsPrint(r):
			units = append(units, unit{out: text[i : i+size], printable: true})
		case r < 0x100:
			units = append(units, unit{out: fmt.Sprintf(`\x%02x`, r)})
		default: // invisible format characters: bidi overrides, zero-width ...
			units = append(units, unit{out: fmt.Sprintf(`\u%04x`, r)})
		}
		i += size
	}
	return units
}

// escapeLen is the length of the escape sequence at the start of s, which
// begins with ESC (or the one-rune CSI of csiSize bytes): CSI (ESC [ ...
// final byte), OSC, DCS, SOS, PM and APC strings (up to BEL or ESC \), or
// ESC with intermediate bytes and a final one. An unfinished sequence runs
// to the end of s.
func escapeLen(s string, csiSize int) int {
	i := 1
	kind := byte('[')
	if s[0] == 0x1b {
		if len(s) < 2 {
			return 1
		}
		kind, i = s[1], 2
	} else {
		i = csiSize
	}
	switch kind {
	case '[':
		for ; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
			if s[i] < 0x20 || s[i] > 0x7e {
				return i // not a CSI byte: the sequence was broken off
			}
		}
		return len(s)
	case ']', 'P', 'X', '^', '_':
		for ; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	}
	for i = 1; i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f; i++ {
	}
	if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
		return i + 1
	}
	return i
}
