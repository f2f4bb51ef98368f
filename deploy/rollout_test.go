package deploy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func testOptions(version string) Options {
	return Options{
		Image: "web", Version: version, Keep: DefaultKeep, Switch: SwitchGradual, // switch_test.go tests atomic
		PollInterval: time.Millisecond, RegisterTimeout: 300 * time.Millisecond,
		DeregisterTimeout: 300 * time.Millisecond, HealthTimeout: 300 * time.Millisecond,
		Probes: fakeProbes{},
	}
}

func engine(w *world) (*Engine, *events) {
	ev := &events{}
	// The cleanup's bound is for a loaded machine: CI runs these tests 20
	// times with -race beside the end-to-end tests, where a restore that
	// takes a few ms here took over 1 s (TestWatchWindowRollsBackWhenNewCrashes).
	return &Engine{Runtime: w.runtime(), Router: w.router(), Reporter: ev, CleanupTimeout: 5 * time.Second}, ev
}

// indexOf finds the first op with the given prefix, failing when absent.
func indexOf(t *testing.T, ops []string, prefix string) int {
	t.Helper()
	for i, op := range ops {
		if strings.HasPrefix(op, prefix) {
			return i
		}
	}
	t.Fatalf("no op %q in %q", prefix, ops)
	return -1
}

func hasOp(ops []string, prefix string) bool {
	return slices.ContainsFunc(ops, func(op string) bool { return strings.HasPrefix(op, prefix) })
}

func TestRolloutDrainsOldBeforeStopping(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", &Healthcheck{Test: []string{"CMD", "/app", "probe"}, Interval: 2 * time.Second, Retries: 2})
	old := w.addRunning("web-v1", "v1", true)
	var spec CreateSpec
	w.createHook = func(s CreateSpec) { spec = s }
	// Assert, at the moment the old container is stopped, that Traefik
	// no longer lists it and lists the new one.
	var listedAtStop []Server
	rt := w.runtime()
	e, _ := engine(w)
	e.Runtime = &stopSpy{fakeRuntime: rt, before: func() {
		svc, err := w.router().Service(context.Background(), "web@docker")
		if err != nil {
			t.Errorf("service at stop: %v", err)
		}
		listedAtStop = svc.Servers
	}}

	res, err := e.Rollout(context.Background(), testOptions("v2"))
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	ops := w.ops
	if !(indexOf(t, ops, "start web-v2") < indexOf(t, ops, "marker web-v1 drain") &&
		indexOf(t, ops, "marker web-v1 drain") < indexOf(t, ops, "stop web-v1")) {
		t.Errorf("want start new < drain old < stop old, got %q", ops)
	}
	if len(listedAtStop) != 1 || listedAtStop[0].URL != res.New.URL {
		t.Errorf("at stop, Traefik listed %v; want only the new server %s", listedAtStop, res.New.URL)
	}
	if old.State != "exited" {
		t.Errorf("old container state %q, want exited (kept stopped)", old.State)
	}
	if _, ok := w.containers[old.ID]; !ok {
		t.Errorf("old container removed; want it kept for rollback")
	}
	if got := res.Service; len(got) != 1 || got[0] != "web@docker" {
		t.Errorf("services %v, want [web@docker]", got)
	}
	if len(res.Old) != 1 || res.Old[0].Drain != DrainHealth {
		t.Errorf("old %+v, want one drained by health", res.Old)
	}
	// The new container is made from the old one, with the probe wrapping
	// the image's healthcheck and the labels set.
	if spec.From != old.ID || spec.Image != "web:v2" {
		t.Errorf("spec from %q image %q", spec.From, spec.Image)
	}
	if spec.Labels[LabelApp] != "web" || spec.Labels[LabelVersion] != "v2" || spec.Labels[LabelDrain] != "probe" {
		t.Errorf("labels %v", spec.Labels)
	}
	want := []string{"CMD", ProbePath, "--marker", MarkerPath, "--state", ProbeState, "--interval", "2s", "--timeout", "30s", "--retries", "2", "--", "CMD", "/app", "probe"}
	if !slices.Equal(spec.Healthcheck.Test, want) {
		t.Errorf("healthcheck\n got %q\nwant %q", spec.Healthcheck.Test, want)
	}
	if spec.Healthcheck.Interval != DefaultDrainInterval || spec.Healthcheck.Retries != 1 || spec.Healthcheck.StartPeriod != 4*time.Second {
		t.Errorf("healthcheck timing %+v", spec.Healthcheck)
	}
	var phases []Phase
	for _, p := range res.Phases {
		phases = append(phases, p.Phase)
	}
	if !slices.Equal(phases, []Phase{PhasePlan, PhaseCreate, PhaseHealthy, PhaseRegister, PhaseDrain, PhaseStop}) {
		t.Errorf("phases %v", phases)
	}
}

// stopSpy calls before() just before each Stop.
type stopSpy struct {
	*fakeRuntime
	before func()
}

func (s *stopSpy) Stop(ctx context.Context, id string, timeout time.Duration) error {
	s.before()
	return s.fakeRuntime.Stop(ctx, id, timeout)
}

func TestFirstDeploy(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	var spec CreateSpec
	w.createHook = func(s CreateSpec) { spec = s }
	e, _ := engine(w)
	o := testOptions("v1")
	o.Network = "proxy"
	o.Labels = webLabels()
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if spec.From != "" || !slices.Equal(spec.Networks, []string{"proxy"}) {
		t.Errorf("spec from %q networks %v", spec.From, spec.Networks)
	}
	// No healthcheck anywhere: the probe checks the server port.
	if !slices.Contains(spec.Healthcheck.Test, "--tcp") || !slices.Contains(spec.Healthcheck.Test, "127.0.0.1:8080") {
		t.Errorf("healthcheck %q, want a TCP probe of port 8080", spec.Healthcheck.Test)
	}
	if len(res.Old) != 0 || res.Service[0] != "web@docker" || res.New.URL == "" {
		t.Errorf("result %+v", res)
	}
	if hasOp(w.ops, "stop") || hasOp(w.ops, "remove") {
		t.Errorf("first deploy stopped or removed something: %q", w.ops)
	}
}

func TestOldNotMadeByDeployctlIsStoppedBySignal(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("legacy", "v1", false)
	e, ev := engine(w)
	o := testOptions("v2")
	o.Select = map[string]string{"app": "web"}
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if hasOp(w.ops, "marker legacy") {
		t.Errorf("wrote a drain marker into a container without the probe: %q", w.ops)
	}
	if old.State != "exited" || res.Old[0].Drain != DrainSignal {
		t.Errorf("old state %q drain %q", old.State, res.Old[0].Drain)
	}
	if ws := ev.warnings(); len(ws) == 0 || !strings.Contains(ws[0], "not created by deployctl") {
		t.Errorf("want a warning about signal drain, got %q", ws)
	}
	// The adopted container's own labels carry over, so the next rollout
	// finds both by either selector.
	for _, c := range w.containers {
		if c.ID != old.ID && (c.Labels["app"] != "web" || c.Labels[LabelApp] != "web") {
			t.Errorf("new container labels %v", c.Labels)
		}
	}
}

func TestDrainHealthRefusesContainersWithoutProbe(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	w.addRunning("legacy", "v1", false)
	e, _ := engine(w)
	o := testOptions("v2")
	o.Select = map[string]string{"app": "web"}
	o.Drain = DrainHealth
	_, err := e.Rollout(context.Background(), o)
	assertKind(t, err, KindUsage)
	if len(w.ops) > 1 { // a Traefik lookup at most
		t.Errorf("changed things: %q", w.ops)
	}
}

func assertKind(t *testing.T, err error, want Kind) *Error {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("want *Error of kind %d, got %v", want, err)
	}
	if de.Kind != want {
		t.Fatalf("kind %d, want %d: %v", de.Kind, want, err)
	}
	return de
}

// Each of these fails before the old container is touched: the new
// container must be gone, the old one untouched.
func TestFailuresBeforeCutoverLeaveOldServing(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(w *world, o *Options)
		phase   Phase
		kind    Kind
		message []string
	}{
		{"crashes on start", func(w *world, o *Options) {
			w.behave = func(c *fakeContainer) { c.crash = true }
		}, PhaseHealthy, KindFailed, []string{"exited with code 3", "panic: boom"}},
		{"unhealthy", func(w *world, o *Options) {
			w.behave = func(c *fakeContainer) { c.sick = true }
		}, PhaseHealthy, KindFailed, []string{"unhealthy", "503"}},
		{"never healthy", func(w *world, o *Options) {
			w.behave = func(c *fakeContainer) { c.never = true }
		}, PhaseHealthy, KindFailed, []string{"did not become healthy within 300ms", `"starting"`, "raise --healthy-timeout"}},
		{"not on Traefik's network", func(w *world, o *Options) {
			w.behave = func(c *fakeContainer) {
				c.network = "other"
				c.Networks = map[string]string{"other": ""}
			}
		}, PhaseRegister, KindFailed, []string{"not on network \"proxy\""}},
		{"healthy but Traefik never lists it", func(w *world, o *Options) {
			w.behave = func(c *fakeContainer) {
				c.Labels["traefik.http.services.web.loadbalancer.server.port"] = ""
				delete(c.Labels, "traefik.http.services.web.loadbalancer.server.port")
				c.Labels["traefik.backend"] = "elsewhere"
			}
		}, PhaseRegister, KindFailed, []string{"never appeared in service web@docker", "service web@docker has servers [http://10.0.0.2:8080 UP]"}},
		{"label names a network the container is not on", func(w *world, o *Options) {
			o.Labels = map[string]string{"traefik.docker.network": "elsewhere"}
		}, PhaseCreate, KindFailed, []string{`not on network "elsewhere"`}},
		{"image missing, pull fails", func(w *world, o *Options) {
			delete(w.images, "web:v2")
			w.pullErr = errors.New("pull access denied")
		}, PhasePlan, KindFailed, []string{"could not be pulled", "pull access denied"}},
		{"image missing, --pull=never", func(w *world, o *Options) {
			delete(w.images, "web:v2")
			o.Pull = PullNever
		}, PhasePlan, KindFailed, []string{"not on the Docker host"}},
		{"Traefik unreachable", func(w *world, o *Options) {
			w.traefikErr = ErrUnreachable
		}, PhasePlan, KindUnreachable, []string{"Traefik"}},
		{"already serving", func(w *world, o *Options) {
			o.Version = "v1"
			w.addImage("web:v1", nil)
		}, PhasePlan, KindUsage, []string{"already serving", "--force"}},
		{"probe cannot be copied", func(w *world, o *Options) {
			w.copyErr = errors.New("container rootfs is marked read-only")
		}, PhaseCreate, KindFailed, []string{"read-only", "--drain=signal"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.addImage("web:v2", nil)
			old := w.addRunning("web-v1", "v1", true)
			o := testOptions("v2")
			tc.setup(w, &o)
			e, _ := engine(w)
			_, err := e.Rollout(context.Background(), o)
			de := assertKind(t, err, tc.kind)
			if de.Phase != tc.phase {
				t.Errorf("phase %s, want %s", de.Phase, tc.phase)
			}
			for _, m := range tc.message {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error does not mention %q:\n%v", m, err)
				}
			}
			if len(w.containers) != 1 {
				t.Errorf("containers left: %d, want only the old one (ops %q)", len(w.containers), w.ops)
			}
			if old.State != "running" || old.marker != MarkerServe || hasOp(w.ops, "marker web-v1") || hasOp(w.ops, "stop web-v1") {
				t.Errorf("old container touched: state %s marker %q ops %q", old.State, old.marker, w.ops)
			}
			// A new container that Traefik may route to is drained and
			// stopped before it is removed, so removing it fails no request.
			if tc.name == "healthy but Traefik never lists it" &&
				!(slices.IndexFunc(w.ops, func(op string) bool {
					return strings.HasPrefix(op, "marker web-v2-") && strings.HasSuffix(op, " drain")
				}) >= 0 &&
					slices.IndexFunc(w.ops, func(op string) bool {
						return strings.HasPrefix(op, "marker web-v2-") && strings.HasSuffix(op, " drain")
					}) < indexOf(t, w.ops, "stop web-v2-") &&
					indexOf(t, w.ops, "stop web-v2-") < indexOf(t, w.ops, "remove web-v2-")) {
				t.Errorf("new container not drained before removal: %q", w.ops)
			}
			if strings.HasPrefix(tc.name, "label names a network") && hasOp(w.ops, "start") {
				t.Errorf("a container that failed its checks at create was started: %q", w.ops)
			}
			if !strings.Contains(de.State, "still serving") && !(de.Phase == PhasePlan && de.State == "nothing was changed") {
				t.Errorf("state %q does not say the old version is untouched", de.State)
			}
		})
	}
}

func TestForceRedeploysServingVersion(t *testing.T) {
	w := newWorld()
	w.addImage("web:v1", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, _ := engine(w)
	o := testOptions("v1")
	o.Force = true
	if _, err := e.Rollout(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if old.State != "exited" {
		t.Errorf("old state %s", old.State)
	}
}

func TestDrainNotConfirmedIsReverted(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	w.drainIgnored = true
	e, _ := engine(w)
	_, err := e.Rollout(context.Background(), testOptions("v2"))
	de := assertKind(t, err, KindFailed)
	if de.Phase != PhaseDrain || !strings.Contains(err.Error(), "still lists") {
		t.Errorf("error %v", err)
	}
	if old.State != "running" || old.marker != MarkerServe {
		t.Errorf("old state %s marker %q: want running and back to serve", old.State, old.marker)
	}
	if len(w.containers) != 1 {
		t.Errorf("new container left behind: ops %q", w.ops)
	}
	if indexOf(t, w.ops, "marker web-v1 serve") > indexOf(t, w.ops, "remove web-v2") {
		t.Errorf("new removed before old restored: %q", w.ops)
	}
}

func TestInterruptBeforeCutoverRemovesNew(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	w.behave = func(c *fakeContainer) { c.never = true }
	ctx, cancel := context.WithCancelCause(context.Background())
	w.onInspect = func(c *fakeContainer) {
		if c.inspects == 3 {
			cancel(ErrInterrupted)
		}
	}
	e, _ := engine(w)
	o := testOptions("v2")
	o.HealthTimeout = time.Minute
	_, err := e.Rollout(ctx, o)
	assertKind(t, err, KindInterrupted)
	if !errors.Is(err, ErrInterrupted) {
		t.Errorf("error %v does not wrap ErrInterrupted", err)
	}
	if len(w.containers) != 1 || old.State != "running" {
		t.Errorf("after interrupt: %d containers, old %s; ops %q", len(w.containers), old.State, w.ops)
	}
}

func TestInterruptDuringDrainRestoresOld(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	w.drainIgnored = true // the drain would take forever
	ctx, cancel := context.WithCancelCause(context.Background())
	e, ev := engine(w)
	e.Reporter = ReporterFunc(func(e Event) {
		ev.Event(e)
		if e.Phase == PhaseDrain && e.Status == StatusInfo {
			cancel(ErrInterrupted)
		}
	})
	o := testOptions("v2")
	o.DeregisterTimeout = time.Minute
	_, err := e.Rollout(ctx, o)
	assertKind(t, err, KindInterrupted)
	if old.State != "running" || old.marker != MarkerServe || len(w.containers) != 1 {
		t.Errorf("old %s marker %q, %d containers; ops %q", old.State, old.marker, len(w.containers), w.ops)
	}
}

// An interrupt right after the old container's drain marker is written: a
// health check that read "drain" ends after the marker says serve again,
// so Docker reports the old container unhealthy for one more check, while
// Traefik, behind, still lists it. Taking that listing as "back" and
// draining the new container left nothing in rotation for ~1.7 s (e2e
// TestSignalsInEachPhase/SIGINT_while_draining, 170 of 763 requests
// failed). The new container may go only once a check that began after
// the restore has passed and Traefik has had time to apply it.
func TestInterruptDuringDrainWaitsForACheckAfterTheRestore(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	old.drainLag = 1000 // Traefik keeps it while the drain runs
	w.trackServed = true
	ctx, cancel := context.WithCancelCause(context.Background())
	e, ev := engine(w)
	e.Reporter = ReporterFunc(func(e Event) {
		ev.Event(e)
		if e.Phase == PhaseDrain && e.Status == StatusInfo {
			w.mu.Lock()
			old.staleRestore, old.staleListed = 1, 3 // a check reads "drain"
			w.mu.Unlock()
			cancel(ErrInterrupted)
		}
	})
	o := testOptions("v2")
	o.DeregisterTimeout = time.Minute
	_, err := e.Rollout(ctx, o)
	assertKind(t, err, KindInterrupted)
	if old.State != "running" || old.marker != MarkerServe || old.Health != "healthy" || len(w.containers) != 1 {
		t.Errorf("old %s %s marker %q, %d containers; ops %q", old.State, old.Health, old.marker, len(w.containers), w.ops)
	}
	restored := indexOf(t, w.ops, "marker web-v1 serve")
	for i := restored; i < len(w.ops); i++ {
		if w.served[i] == 0 {
			t.Fatalf("nothing in rotation after %q; ops %q, served %v", w.ops[i], w.ops, w.served)
		}
	}
	if old.staleRestore != 0 {
		t.Errorf("the stale check never ran: the engine did not look at the old container's health")
	}
}

func TestTwoOldContainersAreAllDrainedAndStopped(t *testing.T) {
	w := newWorld()
	w.addImage("web:v3", nil)
	a := w.addRunning("web-v1", "v1", true)
	b := w.addRunning("web-v2", "v2", true)
	e, _ := engine(w)
	res, err := e.Rollout(context.Background(), testOptions("v3"))
	if err != nil {
		t.Fatal(err)
	}
	if a.State != "exited" || b.State != "exited" || len(res.Old) != 2 {
		t.Errorf("old states %s %s, result old %+v", a.State, b.State, res.Old)
	}
	for _, name := range []string{"web-v1", "web-v2"} {
		if indexOf(t, w.ops, "marker "+name+" drain") > indexOf(t, w.ops, "stop "+name) {
			t.Errorf("%s stopped before drained: %q", name, w.ops)
		}
	}
}

func TestPruneKeepsNewestOldVersions(t *testing.T) {
	w := newWorld()
	w.addImage("web:v9", nil)
	for i := 1; i <= 4; i++ {
		c := w.addRunning("web-old"+string(rune('0'+i)), "v"+string(rune('0'+i)), true)
		c.State = "exited"
	}
	w.addRunning("web-v5", "v5", true)
	e, _ := engine(w)
	o := testOptions("v9")
	o.Keep = 2
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// Stopped now: v5 and old1..old4; keep the two newest (v5, old4).
	if !slices.Equal(res.Pruned, []string{"web-old3", "web-old2", "web-old1"}) {
		t.Errorf("pruned %v", res.Pruned)
	}
	if _, ok := w.containers["id-web-v5"]; !ok {
		t.Errorf("just-stopped version pruned")
	}
}

func TestHealthcheckInheritedFromLabelNotImage(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", &Healthcheck{Test: []string{"CMD", "image-check"}})
	old := w.addRunning("web-v1", "v1", true)
	own := &Healthcheck{Test: []string{"CMD-SHELL", "curl -f localhost:8080/up"}, Interval: 5 * time.Second, Retries: 3}
	old.Labels[LabelHealthcheck] = encodeHealthcheck(own)
	var spec CreateSpec
	w.createHook = func(s CreateSpec) { spec = s }
	e, _ := engine(w)
	if _, err := e.Rollout(context.Background(), testOptions("v2")); err != nil {
		t.Fatal(err)
	}
	tail := spec.Healthcheck.Test[len(spec.Healthcheck.Test)-2:]
	if !slices.Equal(tail, own.Test) {
		t.Errorf("wrapped check %q, want the user's own %q", spec.Healthcheck.Test, own.Test)
	}
	if spec.Labels[LabelHealthcheck] != encodeHealthcheck(own) {
		t.Errorf("label %q not carried", spec.Labels[LabelHealthcheck])
	}
}

func TestNoProbeWithDrainSignal(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", &Healthcheck{Test: []string{"CMD", "image-check"}})
	w.addRunning("web-v1", "v1", true)
	var spec CreateSpec
	w.createHook = func(s CreateSpec) { spec = s }
	e, _ := engine(w)
	o := testOptions("v2")
	o.Drain = DrainSignal
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Labels[LabelDrain] != "" {
		t.Errorf("drain=signal still installed the probe: %+v", spec)
	}
	// The current container's healthcheck runs the probe, which the new one
	// does not get: copied, it would never turn healthy. The new one gets
	// the app's own check (here the image's: none was recorded).
	if spec.Healthcheck == nil || !slices.Equal(spec.Healthcheck.Test, []string{"CMD", "image-check"}) {
		t.Errorf("healthcheck %+v, want the image's own check instead of the inherited probe", spec.Healthcheck)
	}
	if res.Old[0].Drain != DrainSignal || hasOp(w.ops, "marker") {
		t.Errorf("old drained by %s; ops %q", res.Old[0].Drain, w.ops)
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Image = "" }, "--image is required"},
		{func(o *Options) { o.Image = "web:v1" }, "without tag"},
		{func(o *Options) { o.Image = "Web" }, "not a valid image repository"},
		{func(o *Options) { o.Version = "" }, "--version is required"},
		{func(o *Options) { o.Version = "-bad" }, "not a valid Docker tag"},
		{func(o *Options) { o.Version = "has/slash" }, "not a valid Docker tag"},
		{func(o *Options) { o.Drain = "maybe" }, "--drain"},
		{func(o *Options) { o.Pull = "sometimes" }, "--pull"},
		{func(o *Options) { o.StopTimeout = -time.Second }, "--stop-timeout must not be negative"},
		{func(o *Options) { o.Keep = -1 }, "--keep"},
		{func(o *Options) { o.Env = []string{"NOVALUE"} }, "KEY=VALUE"},
		{func(o *Options) { o.Restart = "sometimes" }, "--restart"},
		{func(o *Options) { o.App = "-x" }, "--app"},
	}
	for _, tc := range cases {
		o := testOptions("v1")
		tc.mod(&o)
		_, err := o.normalize()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error with %q, got %v", tc.want, err)
		}
	}
	o, err := Options{Image: "registry.example.com:5000/team/web-app", Version: "3f9ace5"}.normalize()
	if err != nil || o.App != "web-app" || o.ImageRef() != "registry.example.com:5000/team/web-app:3f9ace5" {
		t.Errorf("normalize: %+v, %v", o, err)
	}
}

// TestCandidateURLs: the router's endpoint (the fake reads Traefik's
// labels; traefikapi's TestLabelEndpoint tests the real reading) on the
// container's networks: the network the configuration names wins over
// --network, which wins over every network.
func TestCandidateURLs(t *testing.T) {
	endpoint := (&fakeRouter{}).Endpoint
	c := Container{Name: "x", Networks: map[string]string{"a": "10.0.0.2", "b": "10.1.0.2"}, Ports: []int{80, 8080},
		Labels: map[string]string{}}
	urls, err := candidateURLs(endpoint, c, "")
	if err != nil || len(urls) != 2 || urls["a"] != "http://10.0.0.2:80" {
		t.Errorf("no hints: %v %v", urls, err)
	}
	urls, _ = candidateURLs(endpoint, c, "b")
	if len(urls) != 1 || urls["b"] != "http://10.1.0.2:80" {
		t.Errorf("--network b: %v", urls)
	}
	c.Labels = map[string]string{"traefik.docker.network": "a", "traefik.http.services.s.loadbalancer.server.port": "9000"}
	urls, _ = candidateURLs(endpoint, c, "b")
	if len(urls) != 1 || urls["a"] != "http://10.0.0.2:9000" {
		t.Errorf("label network wins: %v", urls)
	}
	if urls, err := candidateURLs(endpoint, c, "zzz"); err != nil || urls["a"] == "" {
		t.Errorf("label network wins over a missing --network: %v %v", urls, err)
	}
	c.Labels = map[string]string{}
	if _, err := candidateURLs(endpoint, c, "zzz"); err == nil || !strings.Contains(err.Error(), `not on network "zzz"`) {
		t.Errorf("missing network: %v", err)
	}
	if err := checkNetwork(endpoint, c, "zzz"); err == nil || !strings.Contains(err.Error(), `not on network "zzz"`) {
		t.Errorf("checkNetwork, missing network: %v", err)
	}
	c.Ports = nil
	if _, err := candidateURLs(endpoint, c, ""); err == nil || !strings.Contains(err.Error(), "exposes no port") {
		t.Errorf("no port: %v", err)
	}
}

func TestHealthDeadline(t *testing.T) {
	if got := healthDeadline(&Healthcheck{Test: []string{"CMD", "x"}, Interval: time.Second, Retries: 3, StartPeriod: 5 * time.Second, Timeout: 2 * time.Second}); got != 19*time.Second {
		t.Errorf("deadline %s, want 5s + 3x1s + 1s + 10s slack", got)
	}
	h := drainAwareHealthcheck(nil, 8080, 500*time.Millisecond)
	if h.Interval != 500*time.Millisecond || h.Retries != 1 || h.StartPeriod != defaultTCPStartPeriod {
		t.Errorf("tcp probe %+v", h)
	}
	if want := []string{"--timeout", "5s", "--retries", "3", "--tcp", "127.0.0.1:8080"}; !slices.Equal(h.Test[len(h.Test)-len(want):], want) {
		t.Errorf("tcp probe runs %q, want it to end in %q", h.Test, want)
	}
	if got := probeHealthDeadline(&h); got != defaultTCPStartPeriod+2500*time.Millisecond+10*time.Second {
		t.Errorf("tcp probe deadline %s", got)
	}

	// Docker's timeout on a probe run is far above what the probe itself
	// may take: with retries=1, one run Docker gives up on would take the
	// container out of Traefik.
	own := &Healthcheck{Test: []string{"CMD", "check"}, Interval: 3 * time.Second, Timeout: 2 * time.Second, Retries: 3, StartPeriod: 4 * time.Second}
	h = drainAwareHealthcheck(own, 8080, time.Second)
	if h.Retries != 1 || h.Timeout < own.Timeout+20*time.Second {
		t.Errorf("wrapped probe: retries %d, Docker timeout %s for a check bounded at %s", h.Retries, h.Timeout, own.Timeout)
	}
	if got := probeHealthDeadline(&h); got != 4*time.Second+3*3*time.Second+time.Second+10*time.Second {
		t.Errorf("wrapped probe deadline %s, want start 4s + 3x3s + half the check's 2s + 10s slack", got)
	}
}

func TestWatchWindowRollsBackWhenNewCrashes(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, _ := engine(w)
	o := testOptions("v2")
	o.Watch = time.Minute
	// The new container crashes once the watch has begun.
	e.Reporter = ReporterFunc(func(ev Event) {
		if ev.Phase == PhaseWatch && ev.Status == StatusStart {
			w.mu.Lock()
			for _, c := range w.containers {
				if c.ID != old.ID {
					c.State, c.ExitCode = "exited", 2
				}
			}
			w.mu.Unlock()
		}
	})
	_, err := e.Rollout(context.Background(), o)
	de := assertKind(t, err, KindFailed)
	if de.Phase != PhaseWatch || !strings.Contains(err.Error(), "exited with code 2") || !strings.Contains(de.State, "serving again") {
		t.Errorf("error %v", err)
	}
	if old.State != "running" || old.marker != MarkerServe || len(w.containers) != 1 {
		t.Errorf("old %s marker %q, %d containers; ops %q", old.State, old.marker, len(w.containers), w.ops)
	}
	if hasOp(w.ops, "stop web-v1") {
		t.Errorf("old container stopped during the watch window: %q", w.ops)
	}
}

func TestWatchWindowPassesThenStopsOld(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, _ := engine(w)
	o := testOptions("v2")
	o.Watch = 50 * time.Millisecond
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if old.State != "exited" || indexOf(t, w.ops, "marker web-v1 drain") > indexOf(t, w.ops, "stop web-v1") {
		t.Errorf("old %s; ops %q", old.State, w.ops)
	}
	var phases []Phase
	for _, p := range res.Phases {
		phases = append(phases, p.Phase)
	}
	if !slices.Contains(phases, PhaseWatch) {
		t.Errorf("phases %v lack watch", phases)
	}
}

func TestWatchNeedsDrainableOld(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	w.addRunning("legacy", "v1", false)
	e, _ := engine(w)
	o := testOptions("v2")
	o.Select = map[string]string{"app": "web"}
	o.Watch = time.Second
	_, err := e.Rollout(context.Background(), o)
	assertKind(t, err, KindUsage)
}

// Row 9 of the fault matrix: the old container is removed by someone else
// while it is being drained: the rollout completes, the new one serves.
func TestOldContainerRemovedDuringDrain(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, ev := engine(w)
	e.Reporter = ReporterFunc(func(e Event) {
		ev.Event(e)
		if e.Phase == PhaseDrain && e.Status == StatusStart {
			w.mu.Lock()
			delete(w.containers, old.ID)
			w.mu.Unlock()
		}
	})
	res, err := e.Rollout(context.Background(), testOptions("v2"))
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if len(w.containers) != 1 || res.New.URL == "" {
		t.Errorf("containers %d, result %+v", len(w.containers), res)
	}
	if ws := strings.Join(ev.warnings(), "\n"); !strings.Contains(ws, "disappeared") {
		t.Errorf("warnings %q", ws)
	}
}

// A container that never started was made by a run killed between
// creating and starting it: it never served, so it is no retained version.
// The next rollout removes it, and it takes no --keep slot from a version
// that served.
func TestPruneRemovesNeverStartedContainers(t *testing.T) {
	w := newWorld()
	w.addImage("web:v3", nil)
	w.addImage("web:v5", nil)
	served := w.addRunning("web-v0", "v0", true)
	served.State, served.Finished = "exited", w.clock.Add(30*time.Minute)
	w.addRunning("web-v1", "v1", true)
	half := w.addRunning("web-v2-half", "v2", true) // made after v0 stopped
	half.State, half.Health, half.Networks["proxy"] = "created", "", ""
	half.Created = w.clock.Add(60 * time.Minute)
	e, _ := engine(w)
	o := testOptions("v3")
	o.Keep = 2
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Pruned, []string{"web-v2-half"}) {
		t.Errorf("pruned %v, want only the never-started web-v2-half", res.Pruned)
	}
	// With room to spare under --keep, too.
	half = w.addRunning("web-v4-half", "v4", true)
	half.State, half.Health, half.Networks["proxy"] = "created", "", ""
	o = testOptions("v5")
	o.Keep = 10
	if res, err = e.Rollout(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Pruned, []string{"web-v4-half"}) {
		t.Errorf("pruned %v, want only the never-started web-v2-half", res.Pruned)
	}
	for _, id := range []string{"id-web-v0", "id-web-v1"} {
		if _, ok := w.containers[id]; !ok {
			t.Errorf("%s pruned: it served and is within --keep 2", id)
		}
	}
}

// A run killed after starting its new container leaves it running, not yet
// healthy. The next run's plan finds it out of Traefik, but it turns
// healthy and Traefik routes to it while that run goes on: it is drained
// with the old version, and not stopped before Traefik has dropped it too,
// even if Traefik drops it later than the old one.
func TestLeftRunningContainerListedAfterThePlanIsDrainedBeforeStop(t *testing.T) {
	w := newWorld()
	w.addImage("web:v3", nil)
	w.addRunning("web-v1", "v1", true)
	half := w.addRunning("web-v2-half", "v2", true)
	half.Health = "starting"
	half.drainLag = 5
	w.onInspect = func(c *fakeContainer) {
		if strings.HasPrefix(c.Name, "web-v3") && half.marker == MarkerServe {
			half.Health = "healthy" // Traefik lists it from now on
		}
	}
	rt := w.runtime()
	e, ev := engine(w)
	e.Runtime = &stopSpy{fakeRuntime: rt, before: func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, svc := range w.servicesLocked() {
			for _, srv := range svc.Servers {
				if srv.URL == "http://"+half.Networks["proxy"]+":8080" {
					t.Errorf("an old container is stopped while Traefik still routes to %s (web-v2-half)", srv.URL)
				}
			}
		}
	}}
	// Traefik drops web-v2-half after drainLag of its calls, a few ms at
	// the test's poll interval; the timeouts are for a loaded machine (CI
	// runs this 20 times with -race beside the end-to-end tests), not
	// what the test is about.
	o := testOptions("v3")
	o.RegisterTimeout, o.DeregisterTimeout, o.HealthTimeout = 10*time.Second, 10*time.Second, 10*time.Second
	if _, err := e.Rollout(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if half.State != "exited" || half.marker != MarkerDrain {
		t.Errorf("web-v2-half: %s, marker %q; want drained and stopped", half.State, half.marker)
	}
	if !slices.ContainsFunc(ev.warnings(), func(s string) bool {
		return strings.Contains(s, "web-v2-half") && strings.Contains(s, "interrupted run")
	}) {
		t.Errorf("no warning about the leftover: %q", ev.warnings())
	}
}

// A run killed after starting its new container but before Traefik routed
// to it leaves it running, out of Traefik, and newer than the version that
// serves (often without the probe, which was being copied in). It never
// served: the next rollout drains and stops it with the old version, then
// removes it rather than keeping it as a version to roll back to, and it
// takes no --keep slot from the version that served.
func TestHalfMadeContainerIsRemovedNotKept(t *testing.T) {
	for _, health := range []string{"unhealthy", "starting"} {
		t.Run(health, func(t *testing.T) {
			w := newWorld()
			w.addImage("web:v3", nil)
			w.addRunning("web-v1", "v1", true)
			half := w.addRunning("web-v2-half", "v2", true)
			half.Health = health
			e, ev := engine(w)
			o := testOptions("v3")
			o.Keep = 1
			res, err := e.Rollout(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := w.containers["id-web-v2-half"]; ok {
				t.Errorf("web-v2-half kept (%s); want it removed", half.State)
			}
			if i, j := indexOf(t, w.ops, "stop web-v2-half"), indexOf(t, w.ops, "remove web-v2-half"); j < i {
				t.Errorf("removed before it was stopped: %q", w.ops)
			}
			if v1, ok := w.containers["id-web-v1"]; !ok || v1.State != "exited" {
				t.Errorf("web-v1 not kept stopped for rollback (--keep 1): %v", ok)
			}
			if len(res.Pruned) != 0 {
				t.Errorf("pruned %v", res.Pruned)
			}
			for _, old := range res.Old {
				if old.HalfMade != (old.Name == "web-v2-half") || old.Gone {
					t.Errorf("result: %+v", old)
				}
			}
			if !slices.ContainsFunc(ev.warnings(), func(s string) bool { return strings.Contains(s, "web-v2-half") && strings.Contains(s, "removed") }) {
				t.Errorf("no warning saying web-v2-half will be removed: %q", ev.warnings())
			}
		})
	}
}

// observeOnly is a router with the protocol's required half only: no
// Drainer, no Propagator.
type observeOnly struct{ f *fakeRouter }

func (r observeOnly) Name() string                                    { return "a proxy" }
func (r observeOnly) Services(ctx context.Context) ([]Service, error) { return r.f.Services(ctx) }
func (r observeOnly) Service(ctx context.Context, name string) (Service, error) {
	return r.f.Service(ctx, name)
}
func (r observeOnly) Endpoint(c Container) (Endpoint, error) { return r.f.Endpoint(c) }

// A router without the Drainer capability gets the engine's fallback, not
// a branch: the old container, probe and all, is stopped by its signal
// and never gets a drain marker.
func TestRouterWithoutDrainerStopsBySignal(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, _ := engine(w)
	e.Router = observeOnly{w.router()}
	res, err := e.Rollout(context.Background(), testOptions("v2"))
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if hasOp(w.ops, "marker web-v1") {
		t.Errorf("wrote a drain marker through a router that cannot drain: %q", w.ops)
	}
	if old.State != "exited" || res.Old[0].Drain != DrainSignal {
		t.Errorf("old state %q drain %q", old.State, res.Old[0].Drain)
	}
}

// Status asks the router's Drainer whether a running container was left
// drained (Traefik's docker provider: by its marker).
func TestStatusReportsADrainedContainer(t *testing.T) {
	w := newWorld()
	w.addRunning("web-v1", "v1", true)
	drained := w.addRunning("web-v2", "v2", true)
	drained.marker, drained.Health = MarkerDrain, "unhealthy"
	e, _ := engine(w)
	st, err := e.Status(context.Background(), "web")
	if err != nil || len(st) != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	got := map[string]bool{}
	for _, c := range st[0].Containers {
		got[c.Name] = c.Drained
	}
	if !got["web-v2"] || got["web-v1"] || !strings.Contains(strings.Join(st[0].Problems, "\n"), "web-v2 (v2) is drained but still running") {
		t.Errorf("drained %v, problems %q", got, st[0].Problems)
	}
}

// A new container that turns healthy and exits before Traefik lists it
// fails the step at once, as exited, not at the register timeout as
// "never listed".
func TestNewContainerExitingWhileWaitingForTraefikFailsAtOnce(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	w.unlisted = func(c *fakeContainer) bool { return c.Labels[LabelVersion] == "v2" }
	w.onInspect = func(c *fakeContainer) {
		if c.Labels[LabelVersion] == "v2" && c.Health == "healthy" && c.inspects > 3 {
			c.State, c.Health, c.ExitCode = "exited", "", 2
		}
	}
	e, _ := engine(w)
	o := testOptions("v2")
	o.RegisterTimeout = time.Minute
	start := time.Now()
	_, err := e.Rollout(context.Background(), o)
	de := assertKind(t, err, KindFailed)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failed after %s, want at once", d)
	}
	if de.Phase != PhaseRegister && de.Phase != PhaseHealthy || !strings.Contains(de.Error(), "exited with code 2") {
		t.Errorf("error %q (phase %s), want the exit named", de.Error(), de.Phase)
	}
	if old.State != "running" || !strings.Contains(de.State, "untouched") {
		t.Errorf("old %s, state %q", old.State, de.State)
	}
}

// The old container, the way back, is removed by someone else during the
// watch window: the new version is fine, so the rollout completes, and it
// warns that the way back is gone.
func TestOldContainerRemovedDuringTheWatchIsWarnedAbout(t *testing.T) {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	e, ev := engine(w)
	o := testOptions("v2")
	o.Watch = 1500 * time.Millisecond
	e.Reporter = ReporterFunc(func(x Event) {
		ev.Event(x)
		if x.Phase == PhaseWatch && x.Status == StatusStart {
			w.mu.Lock()
			delete(w.containers, old.ID)
			w.mu.Unlock()
		}
	})
	if _, err := e.Rollout(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, x := range ev.all {
		if x.Status == StatusWarn {
			codes = append(codes, x.Code)
			if x.Code == WarnOldGone && (x.Container != "web-v1" || !strings.Contains(x.Message, "can no longer be put back")) {
				t.Errorf("warning %+v", x)
			}
		}
	}
	if !slices.Contains(codes, WarnOldGone) {
		t.Errorf("warnings %q, want %s", codes, WarnOldGone)
	}
}
