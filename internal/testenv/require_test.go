package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// verdictTB records what a helper decided instead of ending the test.
type verdictTB struct {
	testing.TB
	verdict string // "", "skip: ..." or "fatal: ..."
}

func (v *verdictTB) Helper() {}
func (v *verdictTB) Skipf(format string, args ...any) {
	if v.verdict == "" {
		v.verdict = "skip: " + fmt.Sprintf(format, args...)
	}
}
func (v *verdictTB) Fatalf(format string, args ...any) {
	if v.verdict == "" {
		v.verdict = "fatal: " + fmt.Sprintf(format, args...)
	}
}

// TestRequireVariables: only DEPLOYCTL_REQUIRE_DOCKER_TESTS and
// DEPLOYCTL_REQUIRE_ROOT_TESTS turn a skip into a failure; the generic CI
// variable, which hosted CI sets for a non-root user, changes nothing.
func TestRequireVariables(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		euid   int
		docker bool // call NoDocker rather than requireRoot
		want   string
	}{
		{name: "root", euid: 0, env: map[string]string{RequireRootEnv: "1"}, want: ""},
		{name: "not root", euid: 1001, want: "skip: needs root (to test it), runs as uid 1001; set DEPLOYCTL_REQUIRE_ROOT_TESTS=1"},
		{name: "not root, CI=true", euid: 1001, env: map[string]string{"CI": "true"}, want: "skip: needs root (to test it)"},
		{name: "not root, only Docker required", euid: 1001, env: map[string]string{RequireDockerEnv: "1"}, want: "skip: needs root"},
		{name: "not root, root required", euid: 1001, env: map[string]string{RequireRootEnv: "1"}, want: "fatal: needs root (to test it), runs as uid 1001 (DEPLOYCTL_REQUIRE_ROOT_TESTS=1, not skipping)"},
		{name: "not root, root not required", euid: 1001, env: map[string]string{RequireRootEnv: "0"}, want: "skip: needs root"},
		{name: "not root, bad value", euid: 1001, env: map[string]string{RequireRootEnv: "yes"}, want: `fatal: DEPLOYCTL_REQUIRE_ROOT_TESTS="yes": want 1`},
		{name: "no Docker", docker: true, want: "skip: needs Docker, skipping (set DEPLOYCTL_REQUIRE_DOCKER_TESTS=1 to make this fatal): engine gone"},
		{name: "no Docker, CI=true", docker: true, env: map[string]string{"CI": "true"}, want: "skip: needs Docker"},
		{name: "no Docker, only root required", docker: true, env: map[string]string{RequireRootEnv: "1"}, want: "skip: needs Docker"},
		{name: "no Docker, Docker required", docker: true, env: map[string]string{RequireDockerEnv: "1"}, want: "fatal: needs Docker (DEPLOYCTL_REQUIRE_DOCKER_TESTS=1, not skipping): engine gone"},
		{name: "no Docker, bad value", docker: true, env: map[string]string{RequireDockerEnv: "true"}, want: `fatal: DEPLOYCTL_REQUIRE_DOCKER_TESTS="true": want 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"CI", RequireDockerEnv, RequireRootEnv} {
				t.Setenv(k, tt.env[k])
			}
			v := &verdictTB{TB: t}
			if tt.docker {
				NoDocker(v, "engine %s", "gone")
			} else {
				requireRoot(v, tt.euid, "to test it")
			}
			if tt.want == "" && v.verdict != "" || !strings.HasPrefix(v.verdict, tt.want) {
				t.Errorf("verdict %q, want one starting with %q", v.verdict, tt.want)
			}
		})
	}
}
