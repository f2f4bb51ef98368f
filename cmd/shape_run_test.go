package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

// webWorld is app web at v1, serving through Traefik, with the image of v2
// on the host.
func webWorld() (*fakeDocker, fakeRouter) {
	docker := &fakeDocker{
		containers: []deploy.Container{webContainer("v1", "10.0.0.2")},
		images: map[string]deploy.Image{
			"web:v1": {ID: "sha256:1", OS: "linux", Arch: "amd64", ExposedPorts: []int{8080}},
			"web:v2": {ID: "sha256:2", OS: "linux", Arch: "amd64", ExposedPorts: []int{8080}},
		},
	}
	router := fakeRouter{[]deploy.Service{{Name: "web@docker", Servers: []deploy.Server{{URL: "http://10.0.0.2:8080", Status: "UP"}}}}}
	return docker, router
}

func TestRunRolloutDryRun(t *testing.T) {
	docker, router := webWorld()
	f := fakeFactory(t, docker, router)
	o := rolloutDefaults()
	o.Version, o.dryRun = "v2", true
	var out, errOut bytes.Buffer
	o.io = ioStreams{out: &out, errOut: &errOut, progress: progressPlain}
	if err := runRollout(context.Background(), f, &o); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"plan: roll web out to web:v2", "Traefik service: web@docker", "then drain", "web-v1-abcdef"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	if len(docker.calls) != 0 || !docker.closed {
		t.Errorf("dry run: Docker calls %q, closed %v", docker.calls, docker.closed)
	}
}

func TestRunRolloutFails(t *testing.T) {
	docker, router := webWorld()
	f := fakeFactory(t, docker, router)
	o := rolloutDefaults()
	o.Version, o.json = "v2", true
	var out, errOut bytes.Buffer
	o.io = ioStreams{out: &out, errOut: &errOut, progress: progressPlain}
	err := runRollout(context.Background(), f, &o)
	if exitCode(err) != ExitFailed {
		t.Errorf("exit %d, want %d: %v", exitCode(err), ExitFailed, err)
	}
	var doc jsonResult
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.OK || doc.ExitCode != ExitFailed || !strings.Contains(doc.Error.Message, errNotScripted.Error()) {
		t.Errorf("--json: %v %+v\n%s", err, doc, out.String())
	}
	if !strings.Contains(errOut.String(), "rollout of web:v2 failed") || !docker.closed {
		t.Errorf("stderr %q, closed %v", errOut.String(), docker.closed)
	}
}

func TestRunRollback(t *testing.T) {
	docker, router := webWorld()
	f := fakeFactory(t, docker, router)
	o := &rollbackOptions{timeout: time.Minute}
	o.App = "web"
	var out, errOut bytes.Buffer
	o.io = ioStreams{out: &out, errOut: &errOut, progress: progressPlain}
	// Nothing to go back to: a usage error, left for Run to print.
	err := runRollback(context.Background(), f, o)
	if exitCode(err) != ExitUsage || !strings.Contains(err.Error(), "no earlier version of web") || strings.Contains(errOut.String(), "deployctl:") {
		t.Errorf("exit %d: %v\nstderr: %s", exitCode(err), err, errOut.String())
	}
	// --to a version whose image is on the host: the engine creates its
	// container, which fails here; reported, exit 1.
	docker.images["web:v0"] = docker.images["web:v1"]
	o.Version = "v0"
	errOut.Reset()
	err = runRollback(context.Background(), f, o)
	if exitCode(err) != ExitFailed || !strings.Contains(errOut.String(), "deployctl: rollback of web failed") || !strings.Contains(strings.Join(docker.calls, ","), "create web:v0") {
		t.Errorf("exit %d: %v\nstderr: %s\nDocker calls: %q", exitCode(err), err, errOut.String(), docker.calls)
	}
}

func TestRunCheck(t *testing.T) {
	docker, router := webWorld()
	f := fakeFactory(t, docker, router)
	var out bytes.Buffer
	o := &checkOptions{io: ioStreams{out: &out}}
	// The fake router cannot switch atomically: check --switch atomic
	// would say so (TestCheckSaysWhyNotAtomic in deploy).
	o.App, o.Switch = "web", deploy.SwitchGradual
	if err := runCheck(context.Background(), f, o); err != nil {
		t.Fatal(err)
	}
	if out.String() != "web: nothing found that would make a rollout fail or drop requests\n" || !docker.closed {
		t.Errorf("check: %q, closed %v", out.String(), docker.closed)
	}
	// A held lock is a finding: exit 1, already reported.
	docker.holder = &deploy.Holder{User: "ci", Host: "runner-1", PID: 42, Since: fakeNow, Expires: fakeNow.Add(time.Hour)}
	out.Reset()
	o.json = true
	err := runCheck(context.Background(), f, o)
	var findings []deploy.Finding
	if jerr := json.Unmarshal(out.Bytes(), &findings); jerr != nil || len(findings) == 0 || exitCode(err) != ExitFailed {
		t.Errorf("check with a held lock: exit %d, %v: %s", exitCode(err), jerr, out.String())
	}
}

// --app and --version complete from what the factory's completer lists;
// when it cannot connect they complete to nothing.
func TestCompletionsThroughTheFactory(t *testing.T) {
	comp := &fakeCompleter{
		containers: []map[string]string{
			{deploy.LabelApp: "shop", deploy.LabelVersion: "v1"},
			{deploy.LabelApp: "shop", deploy.LabelVersion: "v2"},
			{deploy.LabelApp: "blog", deploy.LabelVersion: "2024"},
			{"com.example": "x"},
		},
		repoTags: []string{"registry.example.com/shop:v3", "registry.example.com/shop:v2", "registry.example.com/shop-admin:v9"},
	}
	f := fakeFactory(t, nil, nil)
	f.Completer = func(context.Context) (completer, error) { return comp, nil }
	complete := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		root := newRootCmd(f, &out, &out)
		root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		// The values, one a line, then ":<directive>".
		var values []string
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, ":") {
				break
			}
			values = append(values, line)
		}
		return strings.Join(values, " ")
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"status", "--app", ""}, "blog shop"},
		{[]string{"unlock", "--app", "s"}, "shop"},
		{[]string{"rollout", "--image", "registry.example.com/shop", "--version", ""}, "v1 v2 v3"},
		{[]string{"rollback", "--app", "shop", "--to", "v"}, "v1 v2"},
		{[]string{"rollout", "--version", ""}, ""},
	}
	for _, tc := range cases {
		if got := complete(tc.args...); got != tc.want {
			t.Errorf("%q: completes to %q, want %q", tc.args, got, tc.want)
		}
	}
	if !comp.closed {
		t.Error("the completer was not closed")
	}
	f.Completer = func(context.Context) (completer, error) { return nil, deploy.ErrUnreachable }
	if got := complete("status", "--app", ""); got != "" {
		t.Errorf("Docker unreachable: completes to %q, want nothing", got)
	}
}

func TestRunCompletion(t *testing.T) {
	root := newRootCmd(fakeFactory(t, nil, nil), &bytes.Buffer{}, &bytes.Buffer{})
	for _, sh := range completionShells {
		var out bytes.Buffer
		if err := runCompletion(&completionOptions{io: ioStreams{out: &out}, shell: sh.name, root: root}); err != nil || !strings.Contains(out.String(), "deployctl") {
			t.Errorf("%s: %v\n%.200s", sh.name, err, out.String())
		}
	}
	err := runCompletion(&completionOptions{io: ioStreams{out: &bytes.Buffer{}}, shell: "tcsh", root: root})
	if exitCode(err) != ExitUsage {
		t.Errorf("tcsh: exit %d: %v", exitCode(err), err)
	}
}

// rollback --dry-run of two replicas: the target and why, then per step
// the retained container restarted and the current one drained and
// stopped; nothing changed. --json has the same plan.
func TestRunRollbackDryRun(t *testing.T) {
	docker, _ := webWorld()
	second := webContainer("v1", "10.0.0.3")
	second.ID, second.Name = "id-web-v1-b", "web-v1-b"
	second.Created = second.Created.Add(time.Minute)
	docker.containers = append(docker.containers, second)
	for i, id := range []string{"a", "b"} {
		c := webContainer("v0", "")
		c.ID, c.Name, c.State, c.Health = "id-web-v0-"+id, "web-v0-"+id, "exited", ""
		c.Finished = fakeNow.Add(-time.Duration(i+3) * time.Hour) // a is the newest
		docker.containers = append(docker.containers, c)
	}
	docker.images["web:v0"] = docker.images["web:v1"]
	router := fakeRouter{[]deploy.Service{{Name: "web@docker", Servers: []deploy.Server{{URL: "http://10.0.0.2:8080", Status: "UP"}, {URL: "http://10.0.0.3:8080", Status: "UP"}}}}}
	f := fakeFactory(t, docker, router)
	newOpts := func() (*rollbackOptions, *bytes.Buffer) {
		o := &rollbackOptions{timeout: time.Minute, dryRun: true}
		o.App, o.Version = "web", "v0"
		o.MaxSurge, o.MaxUnavailable = &deploy.Amount{N: 1}, &deploy.Amount{}
		var out, errOut bytes.Buffer
		o.io = ioStreams{out: &out, errOut: &errOut, progress: progressPlain}
		return o, &out
	}
	o, out := newOpts()
	if err := runRollback(context.Background(), f, o); err != nil {
		t.Fatal(err)
	}
	want := "plan: roll web back from v1 to v0 (--to) (dry run: nothing was changed)\n" +
		"  Traefik service: web@docker\n" +
		"  step 1: restart retained web-v0-a\n" +
		"          then drain (health) and stop web-v1-abcdef (v1, http://10.0.0.2:8080)\n" +
		"  step 2: restart retained web-v0-b\n" +
		"          then drain (health) and stop web-v1-b (v1, http://10.0.0.3:8080)\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	o, out = newOpts()
	o.json = true
	if err := runRollback(context.Background(), f, o); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Rollback deploy.RollbackPlan `json:"rollback"`
		Plan     deploy.Plan         `json:"plan"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Rollback.To != "v0" || len(doc.Plan.Actions) != 2 || doc.Plan.Actions[1].Restart[0] != "web-v0-b" || doc.Plan.Actions[1].Stop[0] != "web-v1-b" {
		t.Errorf("--json: %v %+v\n%s", err, doc, out.String())
	}
	for _, call := range docker.calls {
		for _, verb := range []string{"create", "start", "stop", "copy", "remove", "pull"} {
			if strings.HasPrefix(call, verb) {
				t.Errorf("dry run: Docker call %q", call)
			}
		}
	}
}

// rollback --json writes exactly one JSON document on every path, as
// rollout and scale do: a no-op (the plan), and a failure before the
// engine ran.
func TestRunRollbackJSON(t *testing.T) {
	docker, router := webWorld()
	f := fakeFactory(t, docker, router)
	o := &rollbackOptions{timeout: time.Minute, json: true}
	o.App, o.Version = "web", "v1" // already serving
	var out, errOut bytes.Buffer
	o.io = ioStreams{out: &out, errOut: &errOut, progress: progressPlain}
	if err := runRollback(context.Background(), f, o); err != nil {
		t.Fatal(err)
	}
	var plan deploy.RollbackPlan
	if err := json.Unmarshal(out.Bytes(), &plan); err != nil || !plan.NoOp || plan.To != "v1" {
		t.Errorf("no-op --json: %v %+v\n%s", err, plan, out.String())
	}
	out.Reset()
	f.Docker = func(context.Context) (dockerClient, error) { return nil, deploy.ErrUnreachable }
	err := runRollback(context.Background(), f, o)
	var doc jsonResult
	if jerr := json.Unmarshal(out.Bytes(), &doc); jerr != nil || doc.OK || doc.ExitCode != ExitUnreachable || exitCode(err) != ExitUnreachable {
		t.Errorf("unreachable Docker: exit %d (%v), --json: %v %+v\n%s", exitCode(err), err, jerr, doc, out.String())
	}
}
