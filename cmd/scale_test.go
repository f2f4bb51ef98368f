package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

func TestNewScaleCmd(t *testing.T) {
	defaults := func() scaleOptions {
		surge, unavailable := deploy.DefaultMaxSurge, deploy.DefaultMaxUnavailable
		o := scaleOptions{traefik: engineTraefik, drain: "auto", timeout: 10 * time.Minute, io: ioStreams{progress: progressAuto},
			maxSurge: "25%", maxUnavailable: "0"}
		o.App, o.Replicas, o.Drain = "web", 3, deploy.DrainAuto
		o.MaxSurge, o.MaxUnavailable = &surge, &unavailable
		o.DrainGrace, o.DrainInterval = deploy.DefaultDrainGrace, deploy.DefaultDrainInterval
		o.RegisterTimeout, o.DeregisterTimeout = deploy.DefaultRegisterTimeout, deploy.DefaultDeregisterTimeout
		o.PollInterval = deploy.DefaultPollInterval
		return o
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(o *scaleOptions)
		wantErr string
	}{
		{name: "app and replicas", args: []string{"--app", "web", "--replicas", "3"}, want: func(*scaleOptions) {}},
		{name: "from the environment", env: map[string]string{"DEPLOYCTL_APP": "web", "DEPLOYCTL_REPLICAS": "3", "DEPLOYCTL_MAX_SURGE": "100%"},
			want: func(o *scaleOptions) { o.maxSurge, o.MaxSurge = "100%", &deploy.Amount{N: 100, Percent: true} }},
		{name: "json, dry run, budget", args: []string{"--app", "web", "--replicas", "3", "--json", "--dry-run", "--max-surge", "0", "--max-unavailable", "1"},
			want: func(o *scaleOptions) {
				o.json, o.dryRun, o.maxSurge, o.maxUnavailable = true, true, "0", "1"
				o.MaxSurge, o.MaxUnavailable = &deploy.Amount{}, &deploy.Amount{N: 1}
			}},
		{name: "no app", args: []string{"--replicas", "3"}, wantErr: "--app is required"},
		{name: "no replicas", args: []string{"--app", "web"}, wantErr: "--replicas is required"},
		{name: "zero replicas", args: []string{"--app", "web", "--replicas", "0"}, wantErr: "--replicas must be at least 1"},
		{name: "bad surge", args: []string{"--app", "web", "--replicas", "3", "--max-surge", "x"}, wantErr: "--max-surge \"x\""},
		{name: "no budget", args: []string{"--app", "web", "--replicas", "3", "--max-surge", "0"}, wantErr: "--max-surge and --max-unavailable are both 0"},
		{name: "bad drain", args: []string{"--app", "web", "--replicas", "3", "--drain", "now"}, wantErr: "--drain \"now\""},
		{name: "zero poll", args: []string{"--app", "web", "--replicas", "3", "--poll-interval", "0"}, wantErr: "--poll-interval must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := parseCmd(t, func(runF func(*scaleOptions) error) *cobra.Command { return newScaleCmd(nil, runF) },
				append([]string{"scale"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil || exitCode(err) != ExitUsage {
					t.Fatalf("err %v (exit %d), want %q before the run function, exit 2", err, exitCode(err), tc.wantErr)
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

func TestRunScale(t *testing.T) {
	newOpts := func(n int) (*scaleOptions, *bytes.Buffer, *bytes.Buffer) {
		o := &scaleOptions{timeout: time.Minute}
		o.App, o.Replicas, o.MaxSurge = "web", n, &deploy.Amount{N: 1}
		var out, errOut bytes.Buffer
		o.io = ioStreams{out: &out, errOut: &errOut, progress: progressPlain}
		return o, &out, &errOut
	}
	t.Run("no-op", func(t *testing.T) {
		docker, router := webWorld()
		o, out, _ := newOpts(1)
		if err := runScale(context.Background(), fakeFactory(t, docker, router), o); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "web already runs 1 container(s) of v1: nothing to do") || strings.Contains(strings.Join(docker.calls, ","), "create") {
			t.Errorf("stdout %q, Docker calls %q", out.String(), docker.calls)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		docker, router := webWorld()
		o, out, errOut := newOpts(3)
		o.dryRun = true
		if err := runScale(context.Background(), fakeFactory(t, docker, router), o); err != nil {
			t.Fatalf("%v\n%s", err, errOut.String())
		}
		for _, want := range []string{"plan: scale web v1 from 1 to 3 container(s)", "step 1: start new #1, new #2", "web@docker"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("plan lacks %q:\n%s", want, out.String())
			}
		}
		if len(docker.calls) != 0 {
			t.Errorf("dry run: Docker calls %q", docker.calls)
		}
	})
	t.Run("unknown app is a usage error", func(t *testing.T) {
		docker, router := webWorld()
		o, _, errOut := newOpts(3)
		o.App = "shop"
		err := runScale(context.Background(), fakeFactory(t, docker, router), o)
		if exitCode(err) != ExitUsage || !strings.Contains(err.Error(), "app shop has no running containers") || strings.Contains(errOut.String(), "deployctl:") {
			t.Errorf("exit %d: %v\nstderr: %s", exitCode(err), err, errOut.String())
		}
	})
	t.Run("failure, json", func(t *testing.T) {
		docker, router := webWorld()
		o, out, errOut := newOpts(3)
		o.json = true
		err := runScale(context.Background(), fakeFactory(t, docker, router), o)
		if exitCode(err) != ExitFailed || !strings.Contains(strings.Join(docker.calls, ","), "create web:v1") {
			t.Errorf("exit %d: %v\nDocker calls: %q", exitCode(err), err, docker.calls)
		}
		var doc jsonResult
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.OK || doc.ExitCode != ExitFailed {
			t.Errorf("--json: %v %+v\n%s", err, doc, out.String())
		}
		if !strings.Contains(errOut.String(), "deployctl: scale of web failed") {
			t.Errorf("stderr %q", errOut.String())
		}
	})
}
