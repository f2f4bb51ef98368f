package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// Bad input is a usage error (exit 2) found before Docker or Traefik is
// contacted: these run with DOCKER_HOST pointing nowhere.
func TestUsageErrors(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "--image", "web"}, "--version is required"},
		{[]string{"rollout", "--version", "v1"}, "--image is required"},
		{[]string{"rollout", "--image", "web:v1", "--version", "v2"}, "without tag"},
		{[]string{"rollout", "--image", "web", "--version", "bad/tag"}, "not a valid Docker tag"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--label", "novalue"}, "the 1st --label value is 7 characters without '='"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--env", "A=1", "--env", "NOVALUE"}, "the 2nd -e/--env value is 7 characters without '='"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--select", "=x"}, "--select"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--health-interval", "5s"}, "need --health-cmd"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--no-healthcheck", "--health-cmd", "x"}, "cannot be combined"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--drain", "maybe"}, "--drain"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--stop-timeout", "-1s"}, "must not be negative"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--timeout", "0s"}, "--timeout must be positive"},
		// Zero where it means nothing: the engine would quietly take the
		// default (see positiveDurations).
		{[]string{"rollout", "--image", "web", "--version", "v1", "--poll-interval", "0"}, "--poll-interval must be positive (got 0s): polling without a pause"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--register-timeout", "0s"}, "--register-timeout must be positive"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--drain-interval", "0s"}, "--drain-interval must be positive"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--traefik-throttle", "0s"}, "pass 1ms"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--healthy-timeout", "-5s"}, "--healthy-timeout must not be negative (got -5s)"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--health-cmd", "true", "--health-timeout", "-5s"}, "--health-timeout must not be negative (got -5s)"},
		// rollback checks its flags before it contacts Docker too.
		{[]string{"rollback", "--app", "web", "--poll-interval", "0"}, "--poll-interval must be positive"},
		{[]string{"rollback", "--app", "web", "--drain-grace", "-1ms"}, "--drain-grace must not be negative"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--traefik-url", "ftp://x"}, "--traefik-url"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--traefik-header", "nocolon"}, "Name: value"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--env-file", "/does/not/exist"}, "--env-file"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "--restart", "sometimes"}, "--restart"},
		{[]string{"rollout", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"rollout", "--keep", "many"}, "invalid argument"},
		{[]string{"rollout", "web", "extra-arg"}, "accepts at most 1 arg"},
		{[]string{"rollout", "--image", "web", "--version", "v1", "web"}, "--image cannot be given with a compose service"},
		{[]string{"rollout", "-f", "compose.yaml", "--version", "v1"}, "name the service to roll out"},
		{[]string{"nosuchcommand"}, "unknown command"},
	}
	for _, tc := range cases {
		code, stdout, stderr := run(t, tc.args...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", tc.args, code, ExitUsage, stderr)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tc.args, tc.want, stderr)
		}
		if stdout != "" {
			t.Errorf("%q: stdout %q", tc.args, stdout)
		}
	}
}

// Zero is a legitimate value of these duration flags (README, "Usage"):
// they pass validation and the run goes on to contact Docker, which here
// is unreachable (exit 4, not 2).
func TestZeroDurationsThatMeanSomething(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	for _, flag := range []string{"--drain-grace", "--drain-timeout", "--stop-timeout", "--watch", "--lock-wait", "--healthy-timeout"} {
		for _, args := range [][]string{{"rollout", "--image", "web", "--version", "v1"}, {"rollback", "--app", "web"}} {
			args = append(args, flag, "0")
			if code, _, stderr := run(t, args...); code != ExitUnreachable {
				t.Errorf("%q: exit %d, want %d (validation passed, Docker unreachable):\n%s", args, code, ExitUnreachable, stderr)
			}
		}
	}
	// --drain-grace 0 reaches the engine as "no wait".
	got, err := parseCmd(t, rolloutCmdF, "rollout", "--image", "web", "--version", "v1", "--drain-grace", "0")
	if err != nil {
		t.Fatal(err)
	}
	if got.DrainGrace != 0 {
		t.Errorf("DrainGrace %s, want 0", got.DrainGrace)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("--drain-grace 0: %v", err)
	}
}

func TestUnreachableDocker(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	code, _, stderr := run(t, "rollout", "--image", "web", "--version", "v1")
	if code != ExitUnreachable || !strings.Contains(stderr, "tcp://127.0.0.1:1") || !strings.Contains(stderr, "nothing was changed") {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}

func TestEnvFillsFlagsAndFlagsWin(t *testing.T) {
	t.Setenv("DEPLOYCTL_IMAGE", "from-env")
	t.Setenv("DEPLOYCTL_VERSION", "v9")
	t.Setenv("DEPLOYCTL_KEEP", "7")
	t.Setenv("DEPLOYCTL_LABEL", "a=1\nb=2")
	got, err := parseCmd(t, rolloutCmdF, "rollout", "--version", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Image != "from-env" || got.Version != "v1" || got.Keep != 7 {
		t.Errorf("image %q version %q keep %d", got.Image, got.Version, got.Keep)
	}
	if got.Labels["a"] != "1" || got.Labels["b"] != "2" {
		t.Errorf("labels %v", got.Labels)
	}
	t.Setenv("DEPLOYCTL_KEEP", "lots")
	code, _, stderr := run(t, "rollout")
	if code != ExitUsage || !strings.Contains(stderr, "DEPLOYCTL_KEEP") {
		t.Errorf("bad env value: exit %d %s", code, stderr)
	}
}

func TestHealthFlagsAndEnvFile(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "web.env")
	os.WriteFile(envFile, []byte("# comment\n\nDB=postgres://x\nFROM_HOST\nUNSET_ONE\n"), 0o600)
	t.Setenv("FROM_HOST", "h")
	got, err := parseCmd(t, rolloutCmdF, "rollout", "--image", "web", "--version", "v1", "--env-file", envFile, "-e", "X=1",
		"--health-cmd", "wget -qO- localhost:8080/up", "--health-interval", "2s", "--health-retries", "5")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Env, []string{"DB=postgres://x", "FROM_HOST=h", "X=1"}) {
		t.Errorf("env %q", got.Env)
	}
	want := deploy.Healthcheck{Test: []string{"CMD-SHELL", "wget -qO- localhost:8080/up"}, Interval: 2 * time.Second, Retries: 5}
	if got.Healthcheck == nil || !slices.Equal(got.Healthcheck.Test, want.Test) || got.Healthcheck.Interval != want.Interval || got.Healthcheck.Retries != 5 {
		t.Errorf("healthcheck %+v", got.Healthcheck)
	}
}

func TestExitCodes(t *testing.T) {
	code, stdout, _ := run(t, "help", "exit-codes")
	if code != 0 || !strings.Contains(stdout, "130") || !strings.Contains(stdout, "still serving") {
		t.Errorf("help exit-codes: %d %q", code, stdout)
	}
	cases := []struct {
		err  error
		want int
	}{
		{&deploy.Error{Kind: deploy.KindFailed, Err: errors.New("x")}, ExitFailed},
		{&deploy.Error{Kind: deploy.KindUsage, Err: errors.New("x")}, ExitUsage},
		{&deploy.Error{Kind: deploy.KindNeedsHuman, Err: errors.New("x")}, ExitNeedsHuman},
		{&deploy.Error{Kind: deploy.KindUnreachable, Err: errors.New("x")}, ExitUnreachable},
		{&deploy.Error{Kind: deploy.KindInterrupted, Err: interrupt{syscall.SIGTERM}}, ExitSIGTERM},
		{&deploy.Error{Kind: deploy.KindInterrupted, Err: interrupt{os.Interrupt}}, ExitSIGINT},
		{usagef("bad"), ExitUsage},
	}
	for _, tc := range cases {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.err, got, tc.want)
		}
	}
}
