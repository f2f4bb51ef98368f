package cmd

import (
	"github.com/deployctl/deployctl/deploy"
	"slices"
	"strings"
	"testing"
)

// A malformed -e/--env, --label or --select value is never shown, on
// stderr or in the --json document: a token pasted alone (-e "$TOKEN")
// would land in the CI log. The message says which occurrence it was, its
// shape and what to do instead.
func TestMalformedKeyValueIsNeverEchoed(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	const secret = "ghp_s3cr3tT0kenValue1234567890"
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"token alone as -e", []string{"-e", secret}, nil,
			[]string{"the 1st -e/--env value is 30 characters without '='", "must be KEY=VALUE", "--env-file"}},
		{"token alone as the 3rd --env", []string{"--env", "A=1", "-e", "B=2", "--env", secret}, nil,
			[]string{"the 3rd -e/--env value is 30 characters without '='"}},
		{"key missing", []string{"-e", "=" + secret}, nil,
			[]string{"the 1st -e/--env value is '=' followed by 30 characters, with no key before it"}},
		{"label without =", []string{"--label", "a=1", "--label", secret}, nil,
			[]string{"the 2nd --label value is 30 characters without '='"}},
		{"select without =", []string{"--select", secret}, nil,
			[]string{"the 1st --select value is 30 characters without '='"}},
		{"token alone in DEPLOYCTL_ENV", nil, map[string]string{"DEPLOYCTL_ENV": "A=1\n" + secret + "\n"},
			[]string{"the 2nd line of DEPLOYCTL_ENV is 30 characters without '='", "one NAME=VALUE per line"}},
		{"label in DEPLOYCTL_LABEL without =", nil, map[string]string{"DEPLOYCTL_LABEL": secret},
			[]string{"the 1st line of DEPLOYCTL_LABEL is 30 characters without '='"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			for _, json := range []bool{false, true} {
				args := append([]string{"rollout", "--image", "web", "--version", "v1"}, tc.args...)
				if json {
					args = append(args, "--json")
				}
				code, stdout, stderr := run(t, args...)
				if code != ExitUsage {
					t.Errorf("%q: exit %d, want %d\n%s", args, code, ExitUsage, stderr)
				}
				for _, out := range []string{stdout, stderr} {
					if strings.Contains(out, secret) || strings.Contains(out, secret[:8]) {
						t.Errorf("%q: the value (or its start) is shown:\n%s", args, out)
					}
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) || (json && !strings.Contains(stdout, w)) {
						t.Errorf("%q: stderr/--json lacks %q:\nstderr: %s\nstdout: %s", args, w, stderr, stdout)
					}
				}
			}
		})
	}
}

// DEPLOYCTL_ENV, DEPLOYCTL_LABEL, DEPLOYCTL_TRAEFIK_HEADER (every
// repeatable flag) take one entry per line, never split on commas: a
// database URL with query parameters stays one value.
func TestRepeatableFlagVariablesSplitOnNewlinesOnly(t *testing.T) {
	const dbURL = "DATABASE_URL=postgres://app:p4ss,w0rd@db:5432/shop?sslmode=require&options=-c%20search_path=a,b&application_name=web"
	t.Setenv("DEPLOYCTL_IMAGE", "web")
	t.Setenv("DEPLOYCTL_VERSION", "v1")
	t.Setenv("DEPLOYCTL_ENV", dbURL)
	t.Setenv("DEPLOYCTL_LABEL", "  traefik.http.routers.web.rule=Host(`a.example.com`,`b.example.com`)\r\n\n  team=shop  \n")
	t.Setenv("DEPLOYCTL_TRAEFIK_HEADER", "Authorization: Bearer abc,def")
	got, err := parseCmd(t, rolloutCmdF, "rollout")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Env, []string{dbURL}) {
		t.Errorf("env %q, want the one database URL", got.Env)
	}
	if len(got.Labels) != 2 || got.Labels["traefik.http.routers.web.rule"] != "Host(`a.example.com`,`b.example.com`)" || got.Labels["team"] != "shop" {
		t.Errorf("labels %q", got.Labels)
	}
	if !slices.Equal(got.traefik.headers, []string{"Authorization: Bearer abc,def"}) {
		t.Errorf("traefik headers %q", got.traefik.headers)
	}

	t.Setenv("DEPLOYCTL_ENV", "A=1\n\nB=x,y\n")
	got, err = parseCmd(t, rolloutCmdF, "rollout")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Env, []string{"A=1", "B=x,y"}) {
		t.Errorf("env %q, want A=1 and B=x,y", got.Env)
	}
}

// --traefik-insecure, and credentials sent over plain http to a host that
// is not loopback, are warned about; the run goes on.
func TestTraefikAccessWarnings(t *testing.T) {
	cases := []struct {
		name string
		o    traefikOptions
		want []string
	}{
		{"default", traefikOptions{url: DefaultTraefikURL}, nil},
		{"loopback with credentials", traefikOptions{url: "http://127.0.0.1:8080", user: "u", password: "p", headers: []string{"X-Token: t"}}, nil},
		{"localhost with credentials", traefikOptions{url: "http://localhost:8080", password: "p"}, nil},
		{"IPv6 loopback", traefikOptions{url: "http://[::1]:8080", password: "p"}, nil},
		{"remote http without credentials", traefikOptions{url: "http://traefik.internal:8080"}, nil},
		{"remote https with credentials", traefikOptions{url: "https://traefik.example.com", password: "p"}, nil},
		{"remote http with a password", traefikOptions{url: "http://traefik.example.com/traefik", user: "u", password: "p"},
			[]string{"credentials (--traefik-user/--traefik-password) are sent over plain http to traefik.example.com", "https://"}},
		{"remote http with a header", traefikOptions{url: "http://10.0.0.5:8080", headers: []string{"X-Token: t"}},
			[]string{"(--traefik-header) are sent over plain http to 10.0.0.5:8080"}},
		{"remote http with userinfo", traefikOptions{url: "http://u:p@10.0.0.5:8080"},
			[]string{"(the user:password in --traefik-url) are sent over plain http to 10.0.0.5:8080"}},
		{"insecure", traefikOptions{url: "https://traefik.example.com", insecure: true},
			[]string{"--traefik-insecure: the Traefik API's TLS certificate is not verified", "--traefik-ca"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var msgs []string
			for _, w := range tc.o.warnings() {
				if w.Code != deploy.WarnTraefikInsecure && w.Code != deploy.WarnCredentialsInClear {
					t.Errorf("warning %q has code %q", w.Message, w.Code)
				}
				msgs = append(msgs, w.Message)
			}
			got := strings.Join(msgs, "\n")
			if len(tc.want) == 0 && got != "" {
				t.Errorf("warnings %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("warnings %q lack %q", got, w)
				}
			}
			if strings.Contains(got, "u:p") {
				t.Errorf("warnings show the URL's userinfo: %q", got)
			}
		})
	}

	// They reach the user as warning events, before Docker is contacted.
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	t.Setenv("DEPLOYCTL_TRAEFIK_PASSWORD", "p4ssw0rd-xyz")
	code, _, stderr := run(t, "rollout", "--image", "web", "--version", "v1", "--progress", "plain",
		"--traefik-url", "https://traefik.example.com", "--traefik-insecure")
	if code != ExitUnreachable || !strings.Contains(stderr, "warning --traefik-insecure: the Traefik API's TLS certificate is not verified") {
		t.Errorf("exit %d, want %d and the --traefik-insecure warning:\n%s", code, ExitUnreachable, stderr)
	}
	code, _, stderr = run(t, "rollout", "--image", "web", "--version", "v1", "--progress", "plain", "--traefik-url", "http://traefik.example.com")
	if code != ExitUnreachable || !strings.Contains(stderr, "warning the Traefik API credentials (--traefik-user/--traefik-password) are sent over plain http") {
		t.Errorf("exit %d, want %d and the plain-http warning:\n%s", code, ExitUnreachable, stderr)
	}
}

// The engine is given the Traefik credentials to redact from what it
// relays: the password, the basic auth header, each header's value and a
// bearer token alone.
func TestTraefikSecretsForTheEngine(t *testing.T) {
	o := traefikOptions{url: "http://localhost:8080", user: "deploy", password: "pw-123456", headers: []string{"Authorization: Bearer tok-abcdef", "X-Key:k-998877"}}
	got := o.secrets()
	for _, want := range []string{"pw-123456", "ZGVwbG95OnB3LTEyMzQ1Ng==", "Bearer tok-abcdef", "tok-abcdef", "k-998877"} {
		if !slices.Contains(got, want) {
			t.Errorf("secrets %q lack %q", got, want)
		}
	}
	o = traefikOptions{url: "https://deploy:pw-in-url@traefik.example.com"}
	if got := o.secrets(); !slices.Contains(got, "pw-in-url") {
		t.Errorf("secrets %q lack the password in the URL", got)
	}
}
