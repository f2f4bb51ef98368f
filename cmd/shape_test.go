package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/traefikapi"
)

// Each command's flags (and DEPLOYCTL_* variables) parse into the options
// struct its run function gets, with no Docker and no Traefik (GitHub CLI's
// Test_NewCmdX). A bad flag is an error before the run function.

// defaultTraefik is the traefik options with no flag given.
var defaultTraefik = traefikOptions{url: DefaultTraefikURL}

// engineTraefik is the traefik options with no flag given, of a command
// that has --traefik-throttle.
var engineTraefik = traefikOptions{url: DefaultTraefikURL, throttle: traefikapi.DefaultThrottle}

// rolloutDefaults is rollout's options with no flag given but --image web
// --version v1, as complete makes them.
func rolloutDefaults() rolloutOptions {
	unavailable := deploy.DefaultMaxUnavailable
	return rolloutOptions{
		Options: deploy.Options{
			Image: "web", Version: "v1", Drain: deploy.DrainAuto, Switch: deploy.SwitchAtomic, Pull: deploy.PullMissing, Keep: deploy.DefaultKeep,
			DrainGrace: deploy.DefaultDrainGrace, DrainTimeout: deploy.DefaultDrainTimeout, DrainInterval: deploy.DefaultDrainInterval,
			RegisterTimeout: deploy.DefaultRegisterTimeout, DeregisterTimeout: deploy.DefaultDeregisterTimeout,
			PollInterval:   deploy.DefaultPollInterval,
			MaxUnavailable: &unavailable, // MaxSurge: nil unless --max-surge is given (the default depends on --switch)
		},
		maxUnavailable: "0",
		traefik:        engineTraefik, drain: "auto", switchMode: "atomic", pull: "missing", timeout: 10 * time.Minute,
		io: ioStreams{progress: progressAuto},
	}
}

// clearWriters leaves the progress mode of s only: the writers are
// io.Discard in every test.
func clearWriters(s *ioStreams) { s.out, s.errOut = nil, nil }

func TestNewRolloutCmd(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(o *rolloutOptions)
		wantErr string
	}{
		{name: "required only", args: []string{"--image", "web", "--version", "v1"}, want: func(*rolloutOptions) {}},
		{name: "from the environment", args: nil,
			env:  map[string]string{"DEPLOYCTL_IMAGE": "web", "DEPLOYCTL_VERSION": "v1", "DEPLOYCTL_PROGRESS": "json", "DEPLOYCTL_TRAEFIK_URL": "https://traefik.example.com"},
			want: func(o *rolloutOptions) { o.io.progress = progressJSON; o.traefik.url = "https://traefik.example.com" }},
		{name: "flags win over the environment", args: []string{"--image", "web", "--version", "v1", "--keep", "2"},
			env:  map[string]string{"DEPLOYCTL_VERSION": "v9", "DEPLOYCTL_KEEP": "7"},
			want: func(o *rolloutOptions) { o.Keep = 2 }},
		{name: "first deploy", args: []string{"--image", "web", "--version", "v1", "--app", "shop", "--network", "proxy",
			"--label", "a=1", "-e", "X=1", "--select", "app=web", "--restart", "always", "--health-cmd", "true", "--health-retries", "2", "-v", "data:/data"},
			want: func(o *rolloutOptions) {
				o.App, o.Network, o.Restart, o.restart = "shop", "proxy", "always", "always"
				o.labels, o.Labels = []string{"a=1"}, map[string]string{"a": "1"}
				o.envs, o.Env = []string{"X=1"}, []string{"X=1"}
				o.selectors, o.Select = []string{"app=web"}, map[string]string{"app": "web"}
				o.Volumes = []string{"data:/data"}
				o.health = healthFlags{cmd: "true", retries: 2}
				o.Healthcheck = &deploy.Healthcheck{Test: []string{"CMD-SHELL", "true"}, Retries: 2}
			}},
		{name: "procedure", args: []string{"--image", "web", "--version", "v1", "--drain", "signal", "--pull", "never", "--drain-grace", "0",
			"--watch", "1m", "--timeout", "5m", "--force", "--json", "--dry-run", "--traefik-user", "u", "--traefik-header", "X-A: b"},
			want: func(o *rolloutOptions) {
				o.drain, o.Drain, o.pull, o.Pull = "signal", deploy.DrainSignal, "never", deploy.PullNever
				o.DrainGrace, o.Watch, o.timeout, o.Force, o.json, o.dryRun = 0, time.Minute, 5*time.Minute, true, true, true
				o.traefik.user, o.traefik.headers = "u", []string{"X-A: b"}
			}},
		{name: "no healthcheck", args: []string{"--image", "web", "--version", "v1", "--no-healthcheck"},
			want: func(o *rolloutOptions) {
				o.health.none = true
				o.Healthcheck = &deploy.Healthcheck{Test: []string{"NONE"}}
			}},
		{name: "replicas", args: []string{"--image", "web", "--version", "v1", "--replicas", "4", "--max-surge", "100%"},
			env: map[string]string{"DEPLOYCTL_MAX_UNAVAILABLE": "1"},
			want: func(o *rolloutOptions) {
				o.Replicas, o.maxSurge, o.maxUnavailable = 4, "100%", "1"
				o.MaxSurge, o.MaxUnavailable = &deploy.Amount{N: 100, Percent: true}, &deploy.Amount{N: 1}
			}},
		{name: "zero replicas", args: []string{"--image", "web", "--version", "v1", "--replicas", "0"}, wantErr: "--replicas must be at least 1"},
		{name: "bad surge", args: []string{"--image", "web", "--version", "v1", "--max-surge", "1x"}, wantErr: `--max-surge "1x"`},
		{name: "surge over 100%", args: []string{"--image", "web", "--version", "v1", "--max-unavailable", "150%"}, wantErr: "--max-unavailable"},
		{name: "surge and unavailable 0", args: []string{"--image", "web", "--version", "v1", "--max-surge", "0"}, wantErr: "--max-surge and --max-unavailable are both 0"},
		{name: "missing version", args: []string{"--image", "web"}, wantErr: "--version is required"},
		{name: "zero poll interval", args: []string{"--image", "web", "--version", "v1", "--poll-interval", "0"}, wantErr: "--poll-interval must be positive"},
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: "unknown flag: --bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := parseCmd(t, rolloutCmdF, append([]string{"rollout"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil {
					t.Fatalf("err %v (options %v), want %q before the run function", err, got != nil, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := rolloutDefaults()
			tc.want(&want)
			clearWriters(&got.io)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("options\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

func TestNewRollbackCmd(t *testing.T) {
	defaults := func() rollbackOptions {
		o := rollbackOptions{traefik: engineTraefik, drain: "auto", timeout: 10 * time.Minute, io: ioStreams{progress: progressAuto}}
		o.App, o.Drain, o.Keep = "web", deploy.DrainAuto, deploy.DefaultKeep
		o.DrainGrace, o.DrainTimeout, o.DrainInterval = deploy.DefaultDrainGrace, deploy.DefaultDrainTimeout, deploy.DefaultDrainInterval
		o.RegisterTimeout, o.DeregisterTimeout = deploy.DefaultRegisterTimeout, deploy.DefaultDeregisterTimeout
		o.PollInterval = deploy.DefaultPollInterval
		unavailable := deploy.DefaultMaxUnavailable
		// MaxSurge: nil unless --max-surge is given (the engine's default
		// depends on how the app is routed).
		o.maxUnavailable, o.MaxUnavailable = unavailable.String(), &unavailable
		return o
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(o *rollbackOptions)
		wantErr string
	}{
		{name: "app", args: []string{"--app", "web"}, want: func(*rollbackOptions) {}},
		{name: "to, from the environment", env: map[string]string{"DEPLOYCTL_APP": "web", "DEPLOYCTL_TO": "v1", "DEPLOYCTL_DRAIN": "health"},
			want: func(o *rollbackOptions) { o.Version, o.drain, o.Drain = "v1", "health", deploy.DrainHealth }},
		{name: "json and progress", args: []string{"--app", "web", "--json", "--progress", "plain", "--lock-wait", "30s"},
			want: func(o *rollbackOptions) { o.json, o.io.progress, o.LockWait = true, progressPlain, 30*time.Second }},
		{name: "no app", args: nil, wantErr: "--app is required"},
		{name: "negative grace", args: []string{"--app", "web", "--drain-grace", "-1s"}, wantErr: "--drain-grace must not be negative"},
		{name: "surge and unavailable", args: []string{"--app", "web", "--max-surge", "100%", "--max-unavailable", "1"},
			want: func(o *rollbackOptions) {
				o.maxSurge, o.maxUnavailable = "100%", "1"
				o.MaxSurge, o.MaxUnavailable = &deploy.Amount{N: 100, Percent: true}, &deploy.Amount{N: 1}
			}},
		{name: "bad surge", args: []string{"--app", "web", "--max-surge", "lots"}, wantErr: "--max-surge"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := parseCmd(t, func(runF func(*rollbackOptions) error) *cobra.Command { return newRollbackCmd(nil, runF) },
				append([]string{"rollback"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil {
					t.Fatalf("err %v, want %q before the run function", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tc.want(&want)
			clearWriters(&got.io)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("options\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

// status, history, unlock and check: their few flags each.
func TestNewSmallCmds(t *testing.T) {
	auto := ioStreams{progress: progressAuto}
	remote := traefikOptions{url: "https://traefik.example.com", insecure: true}
	cases := []struct {
		name    string
		parse   func(t *testing.T, args ...string) (any, error)
		args    []string
		env     map[string]string
		want    any
		wantErr string
	}{
		{name: "status", parse: parseStatus, args: []string{"status"}, want: &statusOptions{io: auto, traefik: defaultTraefik}},
		{name: "status flags", parse: parseStatus, args: []string{"status", "--app", "web", "--json", "--traefik-url", "https://traefik.example.com", "--traefik-insecure"},
			want: &statusOptions{io: auto, app: "web", json: true, traefik: remote}},
		{name: "status env", parse: parseStatus, args: []string{"status"}, env: map[string]string{"DEPLOYCTL_APP": "web", "DEPLOYCTL_JSON": "true"},
			want: &statusOptions{io: auto, app: "web", json: true, traefik: defaultTraefik}},
		{name: "history", parse: parseHistory, args: []string{"history", "--app", "web", "--json"},
			want: &historyOptions{io: auto, app: "web", json: true, traefik: defaultTraefik}},
		{name: "history env", parse: parseHistory, args: []string{"history"}, env: map[string]string{"DEPLOYCTL_TRAEFIK_URL": "https://traefik.example.com", "DEPLOYCTL_TRAEFIK_INSECURE": "1"},
			want: &historyOptions{io: auto, traefik: remote}},
		{name: "unlock", parse: parseUnlock, args: []string{"unlock", "--app", "web"}, want: &unlockOptions{io: auto, app: "web"}},
		{name: "unlock env", parse: parseUnlock, args: []string{"unlock"}, env: map[string]string{"DEPLOYCTL_APP": "web"}, want: &unlockOptions{io: auto, app: "web"}},
		{name: "unlock without app", parse: parseUnlock, args: []string{"unlock"}, wantErr: "--app is required"},
		{name: "check", parse: parseCheck, args: []string{"check", "--app", "web", "--network", "proxy", "--service", "web@docker", "--json"},
			want: &checkOptions{Options: deploy.Options{App: "web", Network: "proxy", Service: "web@docker", Switch: deploy.SwitchAtomic}, io: auto, json: true, traefik: defaultTraefik}},
		{name: "check atomic", parse: parseCheck, args: []string{"check", "--app", "web", "--switch", "atomic"},
			want: &checkOptions{Options: deploy.Options{App: "web", Switch: deploy.SwitchAtomic}, io: auto, traefik: defaultTraefik}},
		{name: "check bad switch", parse: parseCheck, args: []string{"check", "--app", "web", "--switch", "fast"}, wantErr: `--switch "fast": must be atomic or gradual`},
		{name: "check env", parse: parseCheck, args: []string{"check"}, env: map[string]string{"DEPLOYCTL_APP": "web", "DEPLOYCTL_PROGRESS": "json"},
			want: &checkOptions{Options: deploy.Options{App: "web", Switch: deploy.SwitchAtomic}, io: ioStreams{progress: progressJSON}, traefik: defaultTraefik}},
		{name: "check without app", parse: parseCheck, args: []string{"check", "--json"}, wantErr: "--app is required"},
		{name: "completion", parse: parseCompletion, args: []string{"completion", "zsh", "--no-descriptions"}, want: &completionOptions{io: auto, shell: "zsh", noDesc: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := tc.parse(t, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("options\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func parseStatus(t *testing.T, args ...string) (any, error) {
	o, err := parseCmd(t, func(runF func(*statusOptions) error) *cobra.Command { return newStatusCmd(nil, runF) }, args...)
	if o != nil {
		clearWriters(&o.io)
	}
	return o, err
}

func parseHistory(t *testing.T, args ...string) (any, error) {
	o, err := parseCmd(t, func(runF func(*historyOptions) error) *cobra.Command { return newHistoryCmd(nil, runF) }, args...)
	if o != nil {
		clearWriters(&o.io)
	}
	return o, err
}

func parseUnlock(t *testing.T, args ...string) (any, error) {
	o, err := parseCmd(t, func(runF func(*unlockOptions) error) *cobra.Command { return newUnlockCmd(nil, runF) }, args...)
	if o != nil {
		clearWriters(&o.io)
	}
	return o, err
}

func parseCheck(t *testing.T, args ...string) (any, error) {
	o, err := parseCmd(t, func(runF func(*checkOptions) error) *cobra.Command { return newCheckCmd(nil, runF) }, args...)
	if o != nil {
		clearWriters(&o.io)
	}
	return o, err
}

func parseCompletion(t *testing.T, args ...string) (any, error) {
	o, err := parseCmd(t, newCompletionCmd, args...)
	if o != nil {
		clearWriters(&o.io)
		o.root = nil
	}
	return o, err
}

// The run functions, with the factory's fakes: what they print from what
// the engine found, and that they close what they opened.

func TestRunStatus(t *testing.T) {
	docker := &fakeDocker{containers: []deploy.Container{webContainer("v1", "10.0.0.2")}}
	router := fakeRouter{[]deploy.Service{{Name: "web@docker", Servers: []deploy.Server{{URL: "http://10.0.0.2:8080", Status: "UP"}}}}}
	f := fakeFactory(t, docker, router)
	var out bytes.Buffer
	if err := runStatus(context.Background(), f, &statusOptions{io: ioStreams{out: &out}, app: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"app web  service web@docker", "web-v1-abcdef", "running", "healthy", "2h", "http://10.0.0.2:8080"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	if !docker.closed {
		t.Error("the Docker connection was not closed")
	}
	out.Reset()
	if err := runStatus(context.Background(), f, &statusOptions{io: ioStreams{out: &out}, app: "web", json: true}); err != nil {
		t.Fatal(err)
	}
	var apps []deploy.AppStatus
	if err := json.Unmarshal(out.Bytes(), &apps); err != nil || len(apps) != 1 || apps[0].App != "web" {
		t.Errorf("--json: %v %+v\n%s", err, apps, out.String())
	}
}

func TestRunHistory(t *testing.T) {
	docker := &fakeDocker{records: []deploy.Record{
		{App: "web", Operation: "rollout", From: "v1", To: "v2", Result: "failed", Phase: deploy.PhaseRegister, Error: "Traefik did not list it", Started: fakeNow},
		{App: "web", Operation: "scale", From: "v1", To: "v1", Result: "ok", Started: fakeNow.Add(-time.Minute), FromReplicas: 1, Replicas: 3},
		{App: "web", Operation: "rollout", To: "v1", Result: "ok", Started: fakeNow.Add(-time.Hour)},
	}}
	f := fakeFactory(t, docker, fakeRouter{})
	var out bytes.Buffer
	if err := runHistory(context.Background(), f, &historyOptions{io: ioStreams{out: &out}, app: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"failed (" + string(deploy.PhaseRegister) + ")", "v1 -> v2: Traefik did not list it", "REPLICAS", "scale      v1    v1  1 -> 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("history lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := runHistory(context.Background(), f, &historyOptions{io: ioStreams{out: &out}, app: "blog", json: true}); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("--json of no history: %q, want []", out.String())
	}
}

func TestRunUnlock(t *testing.T) {
	docker := &fakeDocker{holder: &deploy.Holder{User: "ci", Host: "runner-1", PID: 42, Since: fakeNow}}
	f := fakeFactory(t, docker, nil)
	f.Router = func(*traefikOptions) (deploy.Observer, error) {
		t.Error("unlock asked for Traefik's API")
		return nil, errors.New("no router")
	}
	var out bytes.Buffer
	if err := runUnlock(context.Background(), f, &unlockOptions{io: ioStreams{out: &out}, app: "web"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "web: removed the deploy lock held by ci@runner-1") || docker.holder != nil || !docker.closed {
		t.Errorf("unlock: %q, holder %v, closed %v", out.String(), docker.holder, docker.closed)
	}
	out.Reset()
	if err := runUnlock(context.Background(), f, &unlockOptions{io: ioStreams{out: &out}, app: "web"}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "web: not locked\n" {
		t.Errorf("second unlock: %q", out.String())
	}
	// Docker unreachable: exit 4, nothing changed.
	f.Docker = func(context.Context) (dockerClient, error) { return nil, deploy.ErrUnreachable }
	err := runUnlock(context.Background(), f, &unlockOptions{io: ioStreams{out: &out}, app: "web"})
	if exitCode(err) != ExitUnreachable || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("unreachable Docker: exit %d: %v", exitCode(err), err)
	}
}

// status of three replicas: a row each with what Traefik says of it, the
// counts in the app's line, and the one Traefik marks DOWN as a problem.
func TestRunStatusOfReplicas(t *testing.T) {
	var cs []deploy.Container
	var servers []deploy.Server
	for i, ip := range []string{"10.0.0.2", "10.0.0.3", "10.0.0.4"} {
		c := webContainer("v2", ip)
		c.ID, c.Name = fmt.Sprintf("id-web-v2-%d", i), fmt.Sprintf("web-v2-%d", i)
		cs = append(cs, c)
		status := "UP"
		if i == 2 {
			status = "DOWN"
		}
		servers = append(servers, deploy.Server{URL: "http://" + ip + ":8080", Status: status})
	}
	f := fakeFactory(t, &fakeDocker{containers: cs}, fakeRouter{[]deploy.Service{{Name: "web@docker", Servers: servers}}})
	var out bytes.Buffer
	if err := runStatus(context.Background(), f, &statusOptions{io: ioStreams{out: &out}, app: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"app web  service web@docker  3 running, 2 UP in Traefik", "web-v2-0", "web-v2-1", "web-v2-2", "http://10.0.0.4:8080",
		"! web-v2-2 (v2) is running but DOWN in Traefik"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	up := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) == 7 && strings.HasPrefix(f[0], "web-v2-") && f[5] == "UP" {
			up++
		}
	}
	if up != 2 {
		t.Errorf("%d rows UP, want 2:\n%s", up, out.String())
	}
	out.Reset()
	if err := runStatus(context.Background(), f, &statusOptions{io: ioStreams{out: &out}, app: "web", json: true}); err != nil {
		t.Fatal(err)
	}
	var apps []deploy.AppStatus
	if err := json.Unmarshal(out.Bytes(), &apps); err != nil || len(apps) != 1 || apps[0].Running != 3 || apps[0].Up != 2 || len(apps[0].Containers) != 3 {
		t.Errorf("--json: %v %+v\n%s", err, apps, out.String())
	}
}
