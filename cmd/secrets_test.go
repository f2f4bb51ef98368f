package cmd

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
	got := &rolloutOptions{}
	c := rolloutCommand(got, func(_ context.Context, c *cobra.Command, o *rolloutOptions) error {
		if err := flagsFromEnv(c); err != nil {
			return err
		}
		return o.complete(c)
	})
	c.SetArgs(nil)
	if err := c.Execute(); err != nil {
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
	got = &rolloutOptions{}
	c = rolloutCommand(got, func(_ context.Context, c *cobra.Command, o *rolloutOptions) error {
		if err := flagsFromEnv(c); err != nil {
			return err
		}
		return o.complete(c)
	})
	c.SetArgs(nil)
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Env, []string{"A=1", "B=x,y"}) {
		t.Errorf("env %q, want A=1 and B=x,y", got.Env)
	}
}
