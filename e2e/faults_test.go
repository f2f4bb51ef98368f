package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/testenv"
)

// Faults of Traefik's API (through a testenv.FaultProxy in front of it) and
// of the containers (changed from outside) during a rollout under load. In
// every case deployctl ends with a clear verdict and exit code, no request
// through Traefik fails, the version it says serves does, nothing of the run
// is left behind, and no credential it was given appears in any output.

// progressEvent is one line of --progress=json.
type progressEvent struct {
	Time      time.Time     `json:"time"`
	Phase     deploy.Phase  `json:"phase"`
	Status    deploy.Status `json:"status"`
	Container string        `json:"container"`
	URL       string        `json:"url"`
	Message   string        `json:"message"`
}

// line renders ev like a --progress=plain line without its time stamp, so
// that triggers are written as for signalAt ("register   start").
func (ev progressEvent) line() string {
	var parts []string
	for _, s := range []string{ev.Container, ev.URL, ev.Message} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.TrimRight(fmt.Sprintf("%-10s %-7s %s", ev.Phase, ev.Status, strings.Join(parts, " ")), " ")
}

// faultRun is one deployctl run of deployctlVia.
type faultRun struct {
	code           int
	stdout, stderr string
	// doc is the --json document.
	doc struct {
		OK       bool           `json:"ok"`
		ExitCode int            `json:"exit_code"`
		Result   *deploy.Result `json:"result"`
		Error    *struct {
			Phase    deploy.Phase `json:"phase"`
			Message  string       `json:"message"`
			Observed string       `json:"observed"`
			State    string       `json:"state"`
			Hint     string       `json:"hint"`
		} `json:"error"`
	}
	events    []progressEvent
	start     time.Time
	triggered time.Time // when the trigger line was read (zero: never)
	end       time.Time
	maxRSS    int64 // bytes, of the deployctl process
}

// errorText is the whole error of the --json document, "" on success.
func (r faultRun) errorText() string {
	if r.doc.Error == nil {
		return ""
	}
	e := r.doc.Error
	return strings.Join([]string{e.Message, e.Observed, e.State, e.Hint}, "\n")
}

// warnings are the messages of the warning events.
func (r faultRun) warnings() []string {
	var w []string
	for _, ev := range r.events {
		if ev.Status == deploy.StatusWarn {
			w = append(w, ev.Message)
		}
	}
	return w
}

// deployctlVia runs deployctl with apiURL as the Traefik API URL
// (DEPLOYCTL_TRAEFIK_URL), the extra environment env, --json and
// --progress=json. When a progress event's line (see progressEvent.line)
// contains trigger, action runs in its own goroutine while the progress
// keeps being read; deployctlVia returns once deployctl exited and action
// returned. It is e.deployctl with another Traefik URL, for runs through a
// FaultProxy.
func (e *env) deployctlVia(apiURL string, env []string, trigger string, action func(), args ...string) faultRun {
	e.t.Helper()
	cmd := deployctlCommand(append(args, "--json")...)
	cmd.Env = append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+apiURL, "DEPLOYCTL_POLL_INTERVAL=50ms", "DEPLOYCTL_PROGRESS=json")
	cmd.Env = append(cmd.Env, env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	r := faultRun{start: time.Now()}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var stderr strings.Builder
	var acting sync.WaitGroup
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		stderr.WriteString(line + "\n")
		var ev progressEvent
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &ev) != nil {
			continue // the final error message, in text
		}
		r.events = append(r.events, ev)
		if trigger != "" && r.triggered.IsZero() && strings.Contains(ev.line(), trigger) {
			r.triggered = time.Now()
			acting.Add(1)
			go func() {
				defer acting.Done()
				action()
			}()
		}
	}
	err = cmd.Wait()
	r.end = time.Now()
	acting.Wait()
	r.code = exitCode(e.t, err)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024 // KiB on Linux
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if jerr := json.Unmarshal(stdout.Bytes(), &r.doc); jerr != nil {
		e.t.Errorf("--json output is not JSON: %v\n%s", jerr, r.stdout)
	}
	if trigger != "" && r.triggered.IsZero() {
		e.t.Errorf("never saw a progress line with %q", trigger)
	}
	e.t.Logf("deployctl %s (Traefik API %s) -> exit %d after %s, max RSS %.1f MiB\n%s", strings.Join(args, " "), apiURL, r.code,
		r.end.Sub(r.start).Round(time.Millisecond), float64(r.maxRSS)/(1<<20), r.stderr)
	return r
}

// leakCheck hands deployctl credentials for Traefik's API (basic auth
// through DEPLOYCTL_TRAEFIK_USER/PASSWORD, a token header through
// --traefik-header) and a secret for the new container (--env-file), then
// collects everything deployctl printed and fails the test if any secret
// shows up in it.
type leakCheck struct {
	user, password, token, apiKey string
	envFile                       string

	mu      sync.Mutex
	outputs []string
}

func newLeakCheck(t *testing.T) *leakCheck {
	t.Helper()
	l := &leakCheck{user: "deployer", password: "s3cr3t-" + randomHex(8), token: "tok-" + randomHex(8), apiKey: "key-" + randomHex(8)}
	l.envFile = filepath.Join(t.TempDir(), "app.env")
	if err := os.WriteFile(l.envFile, []byte("# secrets of the app\nAPI_KEY="+l.apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// proxyOptions make a FaultProxy require the credentials.
func (l *leakCheck) proxyOptions() []testenv.FaultProxyOption {
	return []testenv.FaultProxyOption{testenv.WithBasicAuth(l.user, l.password), testenv.WithRequiredHeader("X-Token", l.token)}
}

// env is the environment that gives deployctl the basic auth credentials.
func (l *leakCheck) env() []string {
	return []string{"DEPLOYCTL_TRAEFIK_USER=" + l.user, "DEPLOYCTL_TRAEFIK_PASSWORD=" + l.password}
}

// traefikArgs give deployctl the token header.
func (l *leakCheck) traefikArgs() []string {
	return []string{"--traefik-header", "X-Token: " + l.token}
}

// rolloutArgs are traefikArgs plus the env file of the new container.
func (l *leakCheck) rolloutArgs() []string {
	return append(l.traefikArgs(), "--env-file", l.envFile)
}

// add records a run's output.
func (l *leakCheck) add(r faultRun) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outputs = append(l.outputs, "stdout:\n"+r.stdout, "stderr (progress events and messages):\n"+r.stderr)
}

func (l *leakCheck) secrets() map[string]string {
	return map[string]string{
		"the Traefik password":           l.password,
		"the basic auth header":          base64.StdEncoding.EncodeToString([]byte(l.user + ":" + l.password)),
		"the Traefik token header":       l.token,
		"the app's API_KEY (--env-file)": l.apiKey,
	}
}

// check runs `deployctl status` and `deployctl history` of app (--json and
// text) with the credentials against apiURL, adds their output, and fails t
// if any secret appears in anything collected.
func (l *leakCheck) check(t *testing.T, app, apiURL string) {
	t.Helper()
	for _, args := range [][]string{
		{"status", "--app", app, "--json"}, {"history", "--app", app, "--json"},
		{"status", "--app", app}, {"history", "--app", app},
	} {
		cmd := deployctlCommand(append(args, l.traefikArgs()...)...)
		cmd.Env = append(append(os.Environ(), "DEPLOYCTL_TRAEFIK_URL="+apiURL), l.env()...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("deployctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		l.mu.Lock()
		l.outputs = append(l.outputs, "deployctl "+strings.Join(args, " ")+":\n"+string(out))
		l.mu.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, out := range l.outputs {
		n += len(out)
		for what, secret := range l.secrets() {
			if i := strings.Index(out, secret); i >= 0 {
				head, _, _ := strings.Cut(out, "\n")
				t.Errorf("%s appears in the output (%s): ...%s...", what, head, out[max(0, i-200):min(len(out), i+len(secret)+50)])
			}
		}
	}
	t.Logf("no secret in %d outputs (%d bytes)", len(l.outputs), n)
}

// networks returns the names of the Docker networks, except those of the
// test harness (made by testenv.Network, in this or another test process).
func (e *env) networks() map[string]bool {
	e.t.Helper()
	res, err := e.cli.NetworkList(context.Background(), client.NetworkListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]bool{}
	for _, n := range res.Items {
		if !strings.HasPrefix(n.Name, testenv.NetworkPrefix) {
			m[n.Name] = true
		}
	}
	return m
}

// expectAftermath checks what a run left: Traefik routes app to serving,
// exactly one container of the app runs and it is of that version, there is
// no container of version gone (the removed new one), the app's lock is
// released, and there is no network that was not there before.
func (e *env) expectAftermath(app, serving, gone string, networksBefore map[string]bool) {
	e.t.Helper()
	e.expectServing(app, serving)
	running := 0
	for _, c := range e.containers(app) {
		v := c.Labels[deploy.LabelVersion]
		if c.Running() {
			running++
			if v != serving {
				e.t.Errorf("still running: %s (%s, %s)", c.Name, v, c.State)
			}
		}
		if gone != "" && v == gone {
			e.t.Errorf("left behind: %s (%s, %s)", c.Name, v, c.State)
		}
	}
	if running != 1 {
		e.t.Errorf("%d containers of %s running, want 1 (%s)", running, app, serving)
	}
	if st := e.status(app); st.Lock != nil {
		e.t.Errorf("lock not released: %+v", st.Lock)
	}
	for n := range e.networks() {
		if !networksBefore[n] {
			e.t.Errorf("network %s appeared during the run", n)
		}
	}
}

// containsAny reports whether s contains one of subs (case-insensitively).
func containsAny(s string, subs ...string) bool {
	s = strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(s, strings.ToLower(sub)) {
			return true
		}
	}
	return false
}

// phaseTime is how long phase p took in a successful run's result.
func (r faultRun) phaseTime(p deploy.Phase) time.Duration {
	if r.doc.Result == nil {
		return 0
	}
	for _, pt := range r.doc.Result.Phases {
		if pt.Phase == p {
			return time.Duration(pt.Duration)
		}
	}
	return 0
}

// faultSetup is the fixture of a fault test: Traefik, images v1 and v2, an
// app deployed at v1, the proxy in front of Traefik's API (requiring the
// credentials of a leakCheck), and load through Traefik's entrypoint.
type faultSetup struct {
	e       *env
	repo    string
	app     string
	leaks   *leakCheck
	proxy   *testenv.FaultProxy
	nets    map[string]bool
	keep    *load
	fresh   *load
	rollout []string // rollout v2 of app, with the leak check's arguments
}

func newFaultSetup(t *testing.T, e *env, repo, base string, firstDeployArgs ...string) *faultSetup {
	t.Helper()
	e = e.with(t)
	s := &faultSetup{e: e, repo: repo, app: e.appName(base), leaks: newLeakCheck(t)}
	e.firstDeploy(s.app, repo, "v1", firstDeployArgs...)
	s.nets = e.networks()
	s.proxy = testenv.StartFaultProxy(t, e.traefik.APIURL, s.leaks.proxyOptions()...)
	s.rollout = append([]string{"rollout", "--image", repo, "--version", "v2", "--app", s.app}, s.leaks.rolloutArgs()...)
	s.keep = startLoad(t, e.traefik.EntryURL, s.app+".test", 100, true)
	s.fresh = startLoad(t, e.traefik.EntryURL, s.app+".test", 50, false)
	time.Sleep(300 * time.Millisecond) // steady state
	return s
}

// run runs the rollout through the proxy (see deployctlVia).
func (s *faultSetup) run(trigger string, action func(), extra ...string) faultRun {
	s.e.t.Helper()
	r := s.e.deployctlVia(s.proxy.URL, s.leaks.env(), trigger, action, append(append([]string{}, s.rollout...), extra...)...)
	s.leaks.add(r)
	return r
}

// finish stops the load and checks that no request failed, then checks
// what was left (expectAftermath) and, with the proxy passing again, that no
// secret leaked.
func (s *faultSetup) finish(serving, gone string) {
	t := s.e.t
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	s.keep.expectNoFailures(t)
	s.fresh.expectNoFailures(t)
	s.e.expectAftermath(s.app, serving, gone, s.nets)
	s.proxy.SetMode(testenv.FaultPass)
	s.leaks.check(t, s.app, s.proxy.URL)
	t.Logf("Traefik API requests through the proxy: %s", s.proxy.Counts())
}

func TestFaultTraefikErrors5xxMidRollout(t *testing.T) {
	transientAPIFault(t, "f5xx", testenv.Fault5xx, "answering 5xx")
}

func TestFaultTraefikHangsMidRollout(t *testing.T) {
	transientAPIFault(t, "fhang", testenv.FaultHang, "hanging")
}

// transientAPIFault puts Traefik's API in mode for 3s while deployctl waits
// for the register and the switch: deployctl retries and the rollout
// completes.
func transientAPIFault(t *testing.T, name string, mode testenv.FaultMode, doing string) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	s := newFaultSetup(t, e, repo, name)
	// From the start of the lifted route container (the atomic switch's,
	// started as the register begins: a Docker start that took 5 s on a
	// loaded host once outlasted a fault set at "register start").
	r := s.run("Traefik switches every new request", func() { s.proxy.SetModeFor(mode, 3*time.Second) })
	if r.code != 0 || !r.doc.OK {
		t.Errorf("exit %d, want 0 (Traefik's API %s for 3s while deployctl waits for it is retried)\n%s", r.code, doing, r.errorText())
	}
	if n := s.proxy.Requests(mode); n == 0 {
		t.Errorf("no request met the fault (%s): it was not exercised", s.proxy.Counts())
	}
	t.Logf("register phase took %s with Traefik's API %s for its first 3s", r.phaseTime(deploy.PhaseRegister), doing)
	s.finish("v2", "")
}

// Traefik's API goes away while deployctl waits for it to list the new
// container: before anything of the old version was touched, so deployctl
// gives up, removes the new container and says Traefik could not be reached.
func TestFaultTraefikDownBeforeDrain(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	s := newFaultSetup(t, e, repo, "fdown1")
	r := s.run("register   start", func() { s.proxy.SetMode(testenv.FaultDown) }, "--register-timeout", "5s")
	gaveUp := r.end.Sub(r.triggered)
	t.Logf("gave up %s after the API went down (--register-timeout 5s); failed event %s after the run started", gaveUp.Round(time.Millisecond), failedAfter(r))
	if r.code != 4 {
		t.Errorf("exit %d, want 4 (Traefik unreachable; nothing changed)", r.code)
	}
	proxyAddr := strings.TrimPrefix(s.proxy.URL, "http://")
	if !strings.Contains(r.stderr, proxyAddr) {
		t.Errorf("the message does not name the Traefik API URL %s", s.proxy.URL)
	}
	if !containsAny(r.errorText(), "unreachable", "could not be reached", "not reachable") {
		t.Errorf("the message does not say Traefik's API could not be reached:\n%s", r.errorText())
	}
	if r.doc.Error == nil || r.doc.Error.Phase != deploy.PhaseRegister {
		t.Errorf("--json error %+v, want phase register", r.doc.Error)
	}
	if !containsAny(r.errorText(), "still serving", "untouched") {
		t.Errorf("the message does not say the old version is still serving")
	}
	if r.doc.Error == nil || !strings.Contains(r.doc.Error.Hint, "--traefik-url") {
		t.Errorf("the hint does not say what to check (--traefik-url)")
	}
	s.finish("v1", "v2")
}

// Traefik's API goes away right after the old container's drain marker was
// written: deployctl cannot see Traefik drop the old server, so it relies on
// Docker's health of the drained container (Traefik's Docker provider drops
// an unhealthy container) plus a safety wait, finishes the rollout, and
// warns that the drain was confirmed by Docker health only. (The gradual
// switch's drain: the atomic switch needs Traefik's API to confirm it.)
func TestFaultTraefikDownDuringDrain(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	s := newFaultSetup(t, e, repo, "fdown2")
	r := s.run("drain marker written", func() { s.proxy.SetMode(testenv.FaultDown) }, "--switch", "gradual")
	t.Logf("finished %s after the API went down; drain phase %s, stop phase %s", r.end.Sub(r.triggered).Round(time.Millisecond),
		r.phaseTime(deploy.PhaseDrain), r.phaseTime(deploy.PhaseStop))
	if r.code != 0 || !r.doc.OK {
		t.Errorf("exit %d, want 0 (drain confirmed by Docker health while Traefik's API was down)\n%s", r.code, r.errorText())
	}
	warned := false
	for _, w := range r.warnings() {
		if containsAny(w, "traefik") && containsAny(w, "unreachable", "could not be reached", "not reachable", "stopped answering", "did not answer") &&
			containsAny(w, "docker") && containsAny(w, "health") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning that Traefik's API was unreachable and the drain was confirmed by Docker health; warnings: %q", r.warnings())
	}
	s.finish("v2", "")
	for _, c := range s.e.containers(s.app) {
		if c.Labels[deploy.LabelVersion] == "v1" && c.State != "exited" {
			t.Errorf("old container %s is %s, want exited", c.Name, c.State)
		}
	}
}

// failedAfter is how long after the run started its failed event came.
func failedAfter(r faultRun) time.Duration {
	for _, ev := range r.events {
		if ev.Status == deploy.StatusFail {
			return ev.Time.Sub(r.start).Round(time.Millisecond)
		}
	}
	return 0
}

// Traefik's API answers, but not usably, from the start: deployctl refuses
// before it changes anything, says what was wrong with the answer, and
// reads a huge answer in bounded memory.
func TestFaultTraefikBadAnswers(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	cases := []struct {
		name string
		mode testenv.FaultMode
		want []string // in the message, any of them
	}{
		{"garbage", testenv.FaultGarbage, []string{"not JSON", "no JSON", "invalid JSON", "no version JSON"}},
		{"truncated", testenv.FaultTruncated, []string{"truncated", "invalid JSON", "unexpected end", "cut short"}},
		{"huge", testenv.FaultHuge, []string{"MiB", "too large", "too big"}},
		{"unexpected schema", testenv.FaultSchema, []string{"schema", "not an array", "another API version"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newFaultSetup(t, e, repo, fmt.Sprintf("fbad%d", i))
			before := s.e.containers(s.app)
			s.proxy.SetMode(tc.mode)
			r := s.run("", nil)
			t.Logf("%s: exit %d after %s, max RSS %.1f MiB; message:\n%s", tc.name, r.code, r.end.Sub(r.start).Round(time.Millisecond), float64(r.maxRSS)/(1<<20), r.errorText())
			if r.code != 4 {
				t.Errorf("exit %d, want 4 (Traefik's API does not answer usably; nothing changed)", r.code)
			}
			msg := r.errorText()
			if !containsAny(msg, tc.want...) {
				t.Errorf("the message does not say what was wrong with Traefik's answer (any of %q)", tc.want)
			}
			if !strings.Contains(msg, strings.TrimPrefix(s.proxy.URL, "http://")) {
				t.Errorf("the message does not name the Traefik API URL %s", s.proxy.URL)
			}
			if !strings.Contains(msg, "--traefik-url") {
				t.Errorf("the message does not say what to check (--traefik-url)")
			}
			if r.doc.Error == nil || r.doc.Error.Phase != deploy.PhasePlan {
				t.Errorf("--json error %+v, want phase plan", r.doc.Error)
			}
			if !containsAny(msg, "nothing was changed", "still serving", "untouched") {
				t.Errorf("the message does not say that nothing was changed")
			}
			if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("deployctl crashed")
			}
			if limit := int64(200 << 20); r.maxRSS > limit {
				t.Errorf("max RSS %.1f MiB, want < %d MiB", float64(r.maxRSS)/(1<<20), limit>>20)
			}
			if after := s.e.containers(s.app); len(after) != len(before) {
				t.Errorf("%d containers of the app after the refused rollout, %d before: it created one", len(after), len(before))
			}
			s.finish("v1", "v2")
		})
	}
}

// The new container is removed by someone else while deployctl waits for
// Docker to report it healthy: deployctl says it disappeared and the old
// version keeps serving.
func TestFaultNewContainerRemovedFromOutside(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	s := newFaultSetup(t, e, repo, "fnewrm")
	removed := ""
	r := s.run("healthy    start", func() {
		time.Sleep(time.Second)
		cs, err := runtime(t).List(context.Background(), map[string]string{deploy.LabelApp: s.app})
		if err != nil {
			t.Errorf("listing the app's containers: %v", err)
		}
		for _, c := range cs {
			if c.Labels[deploy.LabelVersion] == "v2" {
				if _, err := e.cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
					t.Errorf("docker rm -f %s: %v", c.Name, err)
				}
				removed = c.Name
			}
		}
	}, "--env", "STARTUP_DELAY=8s")
	if removed == "" {
		t.Fatal("found no new container to remove")
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if !containsAny(r.errorText(), "disappeared", "removed by", "was removed", "no longer exists") {
		t.Errorf("the message does not say the new container disappeared:\n%s", r.errorText())
	}
	if r.doc.Error == nil || r.doc.Error.Phase != deploy.PhaseHealthy || r.doc.Error.Hint == "" {
		t.Errorf("--json error %+v, want phase healthy and a hint", r.doc.Error)
	}
	if !containsAny(r.errorText(), "still serving", "untouched") {
		t.Errorf("the message does not say the old version is still serving")
	}
	s.finish("v1", "v2")
}

// The drained old container is restarted or removed from outside during the
// watch window: the new version is fine, so the rollout completes.
func TestFaultOldContainerRestartedOrRemovedDuringWatch(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2")
	for i, what := range []string{"restarted", "removed"} {
		t.Run(what, func(t *testing.T) {
			s := newFaultSetup(t, e, repo, fmt.Sprintf("fwatch%d", i))
			old := s.e.containers(s.app)
			if len(old) != 1 {
				t.Fatalf("%d containers after the first deploy", len(old))
			}
			r := s.run("watch      start", func() {
				time.Sleep(time.Second)
				ctx := context.Background()
				var err error
				if what == "restarted" {
					_, err = e.cli.ContainerRestart(ctx, old[0].ID, client.ContainerRestartOptions{})
				} else {
					_, err = e.cli.ContainerRemove(ctx, old[0].ID, client.ContainerRemoveOptions{Force: true})
				}
				if err != nil {
					t.Errorf("%s %s: %v", what, old[0].Name, err)
				}
				t.Logf("old container %s %s during the watch", old[0].Name, what)
			}, "--watch", "6s")
			if r.code != 0 || !r.doc.OK {
				t.Errorf("exit %d, want 0\n%s", r.code, r.errorText())
			}
			t.Logf("warnings: %q", r.warnings())
			if what == "removed" && !containsAny(strings.Join(r.warnings(), "\n"), "removed by someone else") {
				t.Errorf("no warning that the old version, the way back, was removed: %q", r.warnings())
			}
			s.finish("v2", "")
		})
	}
}
