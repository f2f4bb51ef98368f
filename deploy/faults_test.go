package deploy

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Rows 7 and 15 of the fault matrix: Docker or the journal fails at any
// call of a rollout or a rollback. Whatever fails, the old version keeps
// serving, nothing is leaked, the lock is released and the error says the
// phase, the cause, the state and what to do.

// Errors a Docker host gives.
var (
	errDiskFull        = errors.New("Error response from daemon: write /var/lib/docker/containers/tmp: no space left on device")
	errDaemonGone      = fmt.Errorf("%w: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", ErrUnreachable)
	errNoSuchContainer = fmt.Errorf("%w: Error response from daemon: No such container", ErrContainerNotFound)
	errPermission      = errors.New("Error response from daemon: open /var/lib/docker/containers/lock/config.v2.json: permission denied")
)

type dockerFault struct {
	name string
	err  error
	// sticky: every call from the N-th on fails (the daemon stays down or
	// the disk stays full), not just the N-th.
	sticky bool
	// secondary: the fault hits the cleanup after another failure, which
	// is the one the error is about.
	secondary bool
}

var dockerFaults = []dockerFault{
	{name: "daemon error", err: errDiskFull},
	{name: "unreachable", err: errDaemonGone},
	{name: "not found", err: errNoSuchContainer},
	{name: "daemon error from then on", err: errDiskFull, sticky: true},
	{name: "unreachable from then on", err: errDaemonGone, sticky: true},
}

// faultyRuntime fails the N-th call of a Runtime: counting all calls of one
// sequence, or only those of one method. A sequence is the run's own calls
// ("") or those of a goroutine running beside it (see beside): each is the
// same in every run, while how they interleave is not. It records every
// call, as "Method arg" ("prune: Method arg" beside the run).
type faultyRuntime struct {
	Runtime
	mu        sync.Mutex
	calls     []string            // every call, in order
	seqs      map[string][]string // the calls of each sequence
	perMethod map[string]int      // calls of each method in sequence seq

	failAt int    // 1-based; 0: never fail
	seq    string // the sequence failAt counts in: "" the run's own calls
	method string // when set, failAt counts calls of this method only
	sticky bool
	err    error
	failed []string // the calls that failed
	down   bool     // a sticky fault fired: every later call (of method) fails, of any sequence
}

func newFaultyRuntime(rt Runtime) *faultyRuntime {
	return &faultyRuntime{Runtime: rt, seqs: map[string][]string{}, perMethod: map[string]int{}}
}

// idMethods take a container ID: only those can meaningfully say the
// container is not found (Remove of a missing container is no error).
var idMethods = []string{"Inspect", "CopyFiles", "Start", "Stop", "Logs", "Exec"}

// canFail tells whether fault err can hit a call of method.
func canFail(err error, method string) bool {
	return !errors.Is(err, ErrContainerNotFound) || slices.Contains(idMethods, method)
}

func (f *faultyRuntime) fault(ctx context.Context, method, arg string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := besideName(ctx)
	call := method + " " + arg
	if seq != "" {
		call = seq + ": " + call
	}
	f.calls = append(f.calls, call)
	f.seqs[seq] = append(f.seqs[seq], call)
	if seq == f.seq {
		f.perMethod[method]++
	}
	if !canFail(f.err, method) || f.method != "" && method != f.method {
		return nil
	}
	if f.down {
		f.failed = append(f.failed, fmt.Sprintf("%s (call %d)", call, len(f.calls)))
		return f.err
	}
	if seq != f.seq {
		return nil
	}
	n := len(f.seqs[seq])
	if f.method != "" {
		n = f.perMethod[method]
	}
	if f.failAt == 0 || n != f.failAt {
		return nil
	}
	f.down = f.sticky
	f.failed = append(f.failed, fmt.Sprintf("%s (call %d)", call, len(f.calls)))
	return f.err
}

// fired fails the test when the fault never hit a call: a subtest that
// injected nothing proves nothing.
func (f *faultyRuntime) fired(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failed) == 0 {
		t.Fatalf("the fault never fired (call %d of sequence %q, method %q): calls %q", f.failAt, f.seq, f.method, f.calls)
	}
}

func (f *faultyRuntime) List(ctx context.Context, sel map[string]string) ([]Container, error) {
	if err := f.fault(ctx, "List", fmt.Sprint(sel)); err != nil {
		return nil, err
	}
	return f.Runtime.List(ctx, sel)
}

func (f *faultyRuntime) Inspect(ctx context.Context, id string) (Container, error) {
	if err := f.fault(ctx, "Inspect", id); err != nil {
		return Container{}, err
	}
	return f.Runtime.Inspect(ctx, id)
}

func (f *faultyRuntime) Image(ctx context.Context, ref string) (Image, error) {
	if err := f.fault(ctx, "Image", ref); err != nil {
		return Image{}, err
	}
	return f.Runtime.Image(ctx, ref)
}

func (f *faultyRuntime) Pull(ctx context.Context, ref string) error {
	if err := f.fault(ctx, "Pull", ref); err != nil {
		return err
	}
	return f.Runtime.Pull(ctx, ref)
}

func (f *faultyRuntime) Create(ctx context.Context, spec CreateSpec) (Container, []string, error) {
	if err := f.fault(ctx, "Create", spec.Image); err != nil {
		return Container{}, nil, err
	}
	return f.Runtime.Create(ctx, spec)
}

func (f *faultyRuntime) CopyFiles(ctx context.Context, id string, files []File) error {
	if err := f.fault(ctx, "CopyFiles", id); err != nil {
		return err
	}
	return f.Runtime.CopyFiles(ctx, id, files)
}

func (f *faultyRuntime) Start(ctx context.Context, id string) error {
	if err := f.fault(ctx, "Start", id); err != nil {
		return err
	}
	return f.Runtime.Start(ctx, id)
}

func (f *faultyRuntime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if err := f.fault(ctx, "Stop", id); err != nil {
		return err
	}
	return f.Runtime.Stop(ctx, id, timeout)
}

func (f *faultyRuntime) Remove(ctx context.Context, id string) error {
	if err := f.fault(ctx, "Remove", id); err != nil {
		return err
	}
	return f.Runtime.Remove(ctx, id)
}

func (f *faultyRuntime) Logs(ctx context.Context, id string, lines int) (string, error) {
	if err := f.fault(ctx, "Logs", id); err != nil {
		return "", err
	}
	return f.Runtime.Logs(ctx, id, lines)
}

func (f *faultyRuntime) Exec(ctx context.Context, id string, cmd []string) (ExecResult, error) {
	if err := f.fault(ctx, "Exec", id); err != nil {
		return ExecResult{}, err
	}
	return f.Runtime.Exec(ctx, id, cmd)
}

// memJournal is an in-memory Journal.
type memJournal struct {
	mu      sync.Mutex
	holders map[string]Holder
	records []Record
}

func newMemJournal() *memJournal { return &memJournal{holders: map[string]Holder{}} }

func (j *memJournal) Lock(ctx context.Context, app, image string, h Holder) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if held, ok := j.holders[app]; ok {
		return &LockedError{App: app, Holder: held}
	}
	j.holders[app] = h
	return nil
}

func (j *memJournal) Unlock(ctx context.Context, app string, held *Holder) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if h, ok := j.holders[app]; ok && (held == nil || h.Same(*held)) {
		delete(j.holders, app)
	}
	return nil
}

func (j *memJournal) LockHolder(ctx context.Context, app string) (*Holder, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if h, ok := j.holders[app]; ok {
		return &h, nil
	}
	return nil, nil
}

func (j *memJournal) AddRecord(ctx context.Context, rec Record, keep int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.records = append([]Record{rec}, j.records...)
	n := 0
	j.records = slices.DeleteFunc(j.records, func(r Record) bool {
		if r.App != rec.App {
			return false
		}
		n++
		return n > keep
	})
	return nil
}

func (j *memJournal) Records(ctx context.Context, app string) ([]Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Record
	for _, r := range j.records {
		if app == "" || r.App == app {
			out = append(out, r)
		}
	}
	return out, nil
}

// faultyJournal fails the N-th call of one method of a Journal (or of any
// method when method is "").
type faultyJournal struct {
	Journal
	mu        sync.Mutex
	calls     []string
	perMethod map[string]int
	method    string
	failAt    int
	err       error
	failed    []string
}

func newFaultyJournal(j Journal) *faultyJournal {
	return &faultyJournal{Journal: j, perMethod: map[string]int{}}
}

func (f *faultyJournal) fault(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
	f.perMethod[method]++
	n := len(f.calls)
	if f.method != "" {
		if method != f.method {
			return nil
		}
		n = f.perMethod[method]
	}
	if f.failAt == 0 || n != f.failAt {
		return nil
	}
	f.failed = append(f.failed, method)
	return f.err
}

func (f *faultyJournal) Lock(ctx context.Context, app, image string, h Holder) error {
	if err := f.fault("Lock"); err != nil {
		return err
	}
	return f.Journal.Lock(ctx, app, image, h)
}

func (f *faultyJournal) Unlock(ctx context.Context, app string, held *Holder) error {
	if err := f.fault("Unlock"); err != nil {
		return err
	}
	return f.Journal.Unlock(ctx, app, held)
}

func (f *faultyJournal) LockHolder(ctx context.Context, app string) (*Holder, error) {
	if err := f.fault("LockHolder"); err != nil {
		return nil, err
	}
	return f.Journal.LockHolder(ctx, app)
}

func (f *faultyJournal) AddRecord(ctx context.Context, rec Record, keep int) error {
	if err := f.fault("AddRecord"); err != nil {
		return err
	}
	return f.Journal.AddRecord(ctx, rec, keep)
}

func (f *faultyJournal) Records(ctx context.Context, app string) ([]Record, error) {
	if err := f.fault("Records"); err != nil {
		return nil, err
	}
	return f.Journal.Records(ctx, app)
}

// scenario is a Docker host before a run, and what the run should leave.
type scenario struct {
	w       *world
	j       *memJournal
	serving *fakeContainer // what serves before the run
	// target finds the container the run brings up ("" if none exists).
	target func() string
	// retained: the target is a retained container that must never be
	// removed (a rollback): on failure it is stopped again.
	retained bool
	// router is the run's router; nil: the fake one, which cannot switch
	// atomically. With a Switcher the rollout asks for --switch atomic.
	router func(w *world) Router
}

// engine is the run's engine over the scenario's world, journal and
// router, with Docker calls going through fr.
func (s *scenario) engine(fr *faultyRuntime) (*Engine, *events) {
	e, ev := engine(s.w)
	e.Runtime, e.Journal = fr, s.j
	if s.router != nil {
		e.Router = s.router(s.w)
	}
	return e, ev
}

// rolloutScenario: v1 serves, v2 is to be rolled out.
func rolloutScenario() *scenario {
	w := newWorld()
	w.addImage("web:v2", nil)
	old := w.addRunning("web-v1", "v1", true)
	w.trackServed = true
	s := &scenario{w: w, j: newMemJournal(), serving: old}
	s.target = func() string {
		w.mu.Lock()
		defer w.mu.Unlock()
		for id := range w.containers {
			if id != old.ID {
				return id
			}
		}
		return ""
	}
	return s
}

// rollbackScenario: v2 serves, v1 is retained (stopped, drained by the
// rollout that replaced it) and is what a rollback goes back to.
func rollbackScenario() *scenario {
	w := newWorld()
	v1 := w.addRunning("web-v1", "v1", true)
	v1.State, v1.Health, v1.marker = "exited", "", MarkerDrain
	v1.Finished = w.clock.Add(10 * time.Minute)
	v2 := w.addRunning("web-v2", "v2", true)
	w.trackServed = true
	j := newMemJournal()
	j.records = []Record{{App: "web", Operation: "rollout", From: "v1", To: "v2", Result: "ok", Started: w.clock}}
	return &scenario{w: w, j: j, serving: v2, target: func() string { return v1.ID }, retained: true}
}

func faultOptions() Options {
	o := testOptions("v2")
	o.RegisterTimeout, o.DeregisterTimeout, o.HealthTimeout = 150*time.Millisecond, 150*time.Millisecond, 150*time.Millisecond
	return o
}

func rollbackOptions() Options {
	o := faultOptions()
	o.Image, o.Version, o.App = "", "", "web"
	return o
}

// run runs a rollout or rollback, turning a panic into a test failure.
func run(t *testing.T, rollback bool, e *Engine) (res *Result, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	if rollback {
		o := rollbackOptions()
		if _, ok := e.Router.(Switcher); ok {
			o.DrainTimeout = time.Second
		}
		_, res, err = e.Rollback(context.Background(), o)
		return res, err
	}
	o := faultOptions()
	if _, ok := e.Router.(Switcher); ok {
		// And the old containers' connections are counted.
		o.Switch, o.DrainTimeout = SwitchAtomic, time.Second
	}
	return e.Rollout(context.Background(), o)
}

// servedURLs is what Traefik routes to for the app now.
func servedURLs(w *world) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	routed := w.routedServiceLocked()
	for _, svc := range w.servicesLocked() {
		if svc.Name == routed {
			for _, srv := range svc.Servers {
				out = append(out, srv.URL)
			}
		}
	}
	return out
}

func urlOf(w *world, id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.containers[id]
	if !ok {
		return ""
	}
	return "http://" + c.Networks[c.network] + ":8080"
}

// checkInvariants asserts what must hold after any run, failed or not.
func checkInvariants(t *testing.T, s *scenario, f dockerFault, fr *faultyRuntime, ev *events, res *Result, err error) {
	t.Helper()
	w := s.w
	ctx := context.Background()
	trace := func() string {
		return fmt.Sprintf("\n  failed calls: %q\n  calls: %q\n  ops: %q\n  served: %v", fr.failed, fr.calls, w.ops, w.served)
	}
	if h, _ := s.j.LockHolder(ctx, "web"); h != nil {
		t.Errorf("the deploy lock is still held by %s%s", h, trace())
	}
	for i, n := range w.served {
		if n == 0 {
			t.Errorf("Traefik had no server for the app after op %d %q%s", i, w.ops[i], trace())
			break
		}
	}
	old := s.serving
	target := s.target()
	if err == nil {
		if res == nil {
			t.Fatalf("no error and no result%s", trace())
		}
		if !slices.Contains(servedURLs(w), urlOf(w, res.New.ID)) {
			t.Errorf("succeeded, but Traefik routes to %v, not the new container %s%s", servedURLs(w), res.New.Name, trace())
		}
		if !errors.Is(f.err, ErrContainerNotFound) && old.State != "exited" {
			t.Errorf("succeeded, but the old container is %s%s", old.State, trace())
		}
		// Without a warning: logs (for a message only), and copying the
		// probe's conns into an old container, when a helper in its
		// network namespace counts instead.
		helperCounted := slices.ContainsFunc(fr.calls, func(c string) bool { return strings.HasPrefix(c, "Exec ") && strings.Contains(c, "-conns-") })
		if len(fr.failed) > 0 && !errors.Is(f.err, ErrContainerNotFound) && len(ev.warnings()) == 0 &&
			!strings.HasPrefix(fr.failed[0], "Logs") && !(strings.HasPrefix(strings.TrimPrefix(fr.failed[0], "conns: "), "CopyFiles") && helperCounted) {
			t.Errorf("a Docker call failed (%q) but the rollout succeeded without a warning%s", fr.failed, trace())
		}
		return
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error is %T, not *deploy.Error: %v%s", err, err, trace())
	}
	if de.Phase == "" || de.State == "" {
		t.Errorf("error without a phase or a state: phase %q state %q:\n%v%s", de.Phase, de.State, err, trace())
	}
	if de.Kind == KindNeedsHuman {
		if de.Hint == "" || !strings.Contains(de.State, "web-v") {
			t.Errorf("needs a human, but the state does not name what is left or there is no hint:\n%v%s", err, trace())
		}
		if len(servedURLs(w)) == 0 {
			t.Errorf("needs a human, and nothing serves%s", trace())
		}
	} else {
		// The old version serves, untouched or put back, and the new
		// container is gone (a retained one is stopped again).
		if old.State != "running" || old.marker != MarkerServe || !slices.Contains(servedURLs(w), urlOf(w, old.ID)) {
			t.Errorf("failed (%v), but the old container is %s, marker %q, Traefik serves %v:\n%v%s", de.Kind, old.State, strings.TrimSpace(old.marker), servedURLs(w), err, trace())
		}
		switch {
		case s.retained && target == "":
			t.Errorf("the retained container of the target version was removed%s", trace())
		case s.retained:
			if c := w.containers[target]; c.State == "running" {
				t.Errorf("failed, but the retained container %s was left running%s", c.Name, trace())
			}
		case target != "":
			t.Errorf("failed (%v), but the new container %s was left behind:\n%v%s", de.Kind, target, err, trace())
		}
		if de.Kind == KindFailed && !strings.Contains(de.State, "serving") && !strings.Contains(de.State, "nothing was changed") {
			t.Errorf("the state does not say the old version serves: %q%s", de.State, trace())
		}
	}
	if old.State == "exited" && len(servedURLs(w)) == 0 {
		t.Errorf("failed after the old version was stopped, and nothing serves%s", trace())
	}
	// The cause is named, with a sensible kind.
	switch {
	case errors.Is(f.err, ErrContainerNotFound) || f.secondary:
	case !strings.Contains(err.Error(), strings.TrimPrefix(f.err.Error(), "unreachable: ")):
		t.Errorf("the error does not name the cause %q:\n%v%s", f.err, err, trace())
	case errors.Is(f.err, ErrUnreachable):
		if de.Kind != KindUnreachable && de.Kind != KindNeedsHuman {
			t.Errorf("Docker unreachable: kind %d, want KindUnreachable (or NeedsHuman):\n%v%s", de.Kind, err, trace())
		}
	default:
		if de.Kind != KindFailed && de.Kind != KindNeedsHuman {
			t.Errorf("Docker answered with an error: kind %d, want KindFailed (or NeedsHuman): Docker was reachable:\n%v%s", de.Kind, err, trace())
		}
	}
}

// countedSeqs are the sequences of calls the fault tests number: the
// run's own, the pruning's, the settle's (beside the stop, after an
// atomic switch, and its removal of the previous route containers), the
// making of the route containers and the setting up
// of the connection counts (beside the new containers' start, before an
// atomic switch). The watcher of the new container is left out: how many
// inspects it makes depends on timing (its faults are
// TestDockerFaultInWatcher's).
var countedSeqs = []string{"", "prune", "settle", "unroute", "routes", "conns"}

// countCalls runs a clean rollout or rollback twice and returns its Docker
// calls, by sequence; the two runs must agree.
func countCalls(t *testing.T, rollback bool, mk func() *scenario) map[string][]string {
	t.Helper()
	var first map[string][]string
	for range 2 {
		s := mk()
		fr := newFaultyRuntime(s.w.runtime())
		e, _ := s.engine(fr)
		if _, err := run(t, rollback, e); err != nil {
			t.Fatalf("clean run: %v\nops %q", err, s.w.ops)
		}
		for i, n := range s.w.served {
			if n == 0 {
				t.Fatalf("clean run: Traefik had no server after op %q (%q)", s.w.ops[i], s.w.ops)
			}
		}
		seqs := map[string][]string{}
		for _, seq := range countedSeqs {
			seqs[seq] = fr.seqs[seq]
		}
		if first != nil && !reflect.DeepEqual(methodsOf(first), methodsOf(seqs)) {
			t.Fatalf("two clean runs made different calls:\n%q\n%q", first, seqs)
		}
		first = seqs
	}
	return first
}

// methodsOf is the methods called in each sequence (a new container's
// name is random).
func methodsOf(seqs map[string][]string) map[string][]string {
	out := map[string][]string{}
	for seq, calls := range seqs {
		for _, c := range calls {
			out[seq] = append(out[seq], strings.Fields(strings.TrimPrefix(c, seqPrefix(seq)))[0])
		}
	}
	return out
}

// seqPrefix names a sequence in a subtest's name.
func seqPrefix(seq string) string {
	if seq == "" {
		return ""
	}
	return seq + ": "
}

func testFaultAtEveryCall(t *testing.T, rollback bool, mk func() *scenario) {
	seqs := countCalls(t, rollback, mk)
	t.Logf("clean run: Docker calls: %q", seqs)
	for _, f := range dockerFaults {
		for _, seq := range countedSeqs {
			for n, call := range seqs[seq] {
				method := strings.Fields(strings.TrimPrefix(call, seqPrefix(seq)))[0]
				if !canFail(f.err, method) {
					continue
				}
				t.Run(fmt.Sprintf("%s/%scall %d %s", f.name, seqPrefix(seq), n+1, method), func(t *testing.T) {
					t.Parallel()
					s := mk()
					fr := newFaultyRuntime(s.w.runtime())
					fr.seq, fr.failAt, fr.err, fr.sticky = seq, n+1, f.err, f.sticky
					e, ev := s.engine(fr)
					res, err := run(t, rollback, e)
					fr.fired(t)
					checkInvariants(t, s, f, fr, ev, res, err)
				})
			}
		}
	}
}

func TestDockerFaultAtEveryCall(t *testing.T) {
	testFaultAtEveryCall(t, false, rolloutScenario)
}

func TestDockerFaultAtEveryCallOfRollback(t *testing.T) {
	testFaultAtEveryCall(t, true, rollbackScenario)
}

// Counting per method: the n-th call of each method fails, for each
// method the run calls.
func TestDockerFaultPerMethod(t *testing.T) {
	for _, rollback := range []bool{false, true} {
		mk := rolloutScenario
		if rollback {
			mk = rollbackScenario
		}
		seqs := countCalls(t, rollback, mk)
		for _, seq := range countedSeqs {
			per := map[string]int{}
			for _, c := range seqs[seq] {
				per[strings.Fields(strings.TrimPrefix(c, seqPrefix(seq)))[0]]++
			}
			for _, m := range sortedKeys(per) {
				for n := 1; n <= per[m]; n++ {
					for _, f := range []dockerFault{dockerFaults[0], dockerFaults[3]} {
						t.Run(fmt.Sprintf("rollback=%v/%s/%s%s #%d", rollback, f.name, seqPrefix(seq), m, n), func(t *testing.T) {
							t.Parallel()
							s := mk()
							fr := newFaultyRuntime(s.w.runtime())
							fr.seq, fr.method, fr.failAt, fr.err, fr.sticky = seq, m, n, f.err, f.sticky
							e, ev := s.engine(fr)
							res, err := run(t, rollback, e)
							fr.fired(t)
							checkInvariants(t, s, f, fr, ev, res, err)
						})
					}
				}
			}
		}
	}
}

// A rollback whose target never becomes healthy, and the retained container
// cannot be stopped again: it must never be removed, and the error must say
// it is left running and how to stop it. The restore stops it without
// inspecting it first: Docker's answer to the stop is the verdict.
func TestRollbackRetainedCannotBeStoppedAgain(t *testing.T) {
	s := rollbackScenario()
	s.w.behave = func(c *fakeContainer) { c.never = true }
	fr := newFaultyRuntime(s.w.runtime())
	fr.method, fr.err, fr.sticky = "Stop", errDiskFull, true
	e, ev := engine(s.w)
	e.Runtime, e.Journal = fr, s.j
	e.Reporter = ReporterFunc(func(e Event) {
		ev.Event(e)
		if e.Status == StatusFail { // the fault hits the cleanup
			fr.mu.Lock()
			fr.failAt = fr.perMethod["Stop"] + 1
			fr.mu.Unlock()
		}
	})
	res, err := run(t, true, e)
	de := assertKind(t, err, KindNeedsHuman)
	if len(fr.failed) == 0 {
		t.Fatalf("no call failed: %q", fr.calls)
	}
	checkInvariants(t, s, dockerFault{name: "in the cleanup", err: errDiskFull, secondary: true}, fr, ev, res, err)
	if s.w.containers["id-web-v1"] == nil {
		t.Fatalf("the retained container was removed: ops %q", s.w.ops)
	}
	if !strings.Contains(de.State, "web-v1") || !strings.Contains(de.Hint, "docker stop web-v1") {
		t.Errorf("state %q hint %q: want the retained container named and how to stop it", de.State, de.Hint)
	}
}

// noChange asserts that a run changed nothing on the Docker host.
func noChange(t *testing.T, s *scenario) {
	t.Helper()
	for _, op := range s.w.ops {
		if op != "traefik list" {
			t.Errorf("changed the Docker host: %q", s.w.ops)
			break
		}
	}
	if s.serving.State != "running" || s.serving.marker != MarkerServe {
		t.Errorf("the serving container is %s, marker %q", s.serving.State, s.serving.marker)
	}
}

func TestJournalFaults(t *testing.T) {
	lockErrs := []struct {
		name string
		err  error
		kind Kind
	}{
		{"disk full", errDiskFull, KindFailed},
		{"permission denied", errPermission, KindFailed},
		{"Docker unreachable", errDaemonGone, KindUnreachable},
	}
	for _, rollback := range []bool{false, true} {
		mk := rolloutScenario
		if rollback {
			mk = rollbackScenario
		}
		for _, le := range lockErrs {
			t.Run(fmt.Sprintf("rollback=%v/lock cannot be taken: %s", rollback, le.name), func(t *testing.T) {
				s := mk()
				fj := newFaultyJournal(s.j)
				fj.method, fj.failAt, fj.err = "Lock", 1, le.err
				e, ev := engine(s.w)
				e.Journal = fj
				_, err := run(t, rollback, e)
				de := assertKind(t, err, le.kind)
				t.Logf("%v", err)
				if de.Phase != PhasePlan || !strings.Contains(de.State, "nothing was changed") || de.Hint == "" {
					t.Errorf("phase %q state %q hint %q", de.Phase, de.State, de.Hint)
				}
				msg := err.Error()
				if !strings.Contains(msg, "deploy lock") || !strings.Contains(msg, strings.TrimPrefix(le.err.Error(), "unreachable: ")) {
					t.Errorf("the error does not say the deploy lock could not be taken and why:\n%s", msg)
				}
				if le.kind == KindFailed && strings.Contains(de.Hint, "DOCKER_HOST") {
					t.Errorf("Docker answered, but the hint is about reaching it: %q", de.Hint)
				}
				noChange(t, s)
				if len(s.j.records) > 1 || (!rollback && len(s.j.records) > 0) {
					t.Errorf("a run that never held the lock wrote history: %+v", s.j.records)
				}
				_ = ev
			})
		}

		t.Run(fmt.Sprintf("rollback=%v/history record cannot be written", rollback), func(t *testing.T) {
			s := mk()
			fj := newFaultyJournal(s.j)
			fj.method, fj.failAt, fj.err = "AddRecord", 1, errDiskFull
			e, ev := engine(s.w)
			e.Journal = fj
			res, err := run(t, rollback, e)
			if err != nil {
				t.Fatalf("the run failed: %v", err)
			}
			if !slices.Contains(servedURLs(s.w), urlOf(s.w, res.New.ID)) || s.serving.State != "exited" {
				t.Errorf("Traefik serves %v; the new container is %s", servedURLs(s.w), res.New.URL)
			}
			if ws := strings.Join(ev.warnings(), "\n"); !strings.Contains(ws, "history record") || !strings.Contains(ws, "no space left on device") {
				t.Errorf("no warning that the history record was not written: %q", ws)
			}
			if h, _ := s.j.LockHolder(context.Background(), "web"); h != nil {
				t.Errorf("lock still held by %s", h)
			}
		})

		t.Run(fmt.Sprintf("rollback=%v/lock cannot be released", rollback), func(t *testing.T) {
			s := mk()
			fj := newFaultyJournal(s.j)
			fj.method, fj.failAt, fj.err = "Unlock", 1, errPermission
			e, ev := engine(s.w)
			e.Journal = fj
			res, err := run(t, rollback, e)
			if err != nil {
				t.Fatalf("the run failed: %v", err)
			}
			if !slices.Contains(servedURLs(s.w), urlOf(s.w, res.New.ID)) {
				t.Errorf("Traefik serves %v, not the new container", servedURLs(s.w))
			}
			ws := strings.Join(ev.warnings(), "\n")
			if !strings.Contains(ws, "could not release the deploy lock") || !strings.Contains(ws, "permission denied") || !strings.Contains(ws, "deployctl unlock --app web") {
				t.Errorf("the warning does not say the lock was not released and how to remove it: %q", ws)
			}
			if recs, _ := s.j.Records(context.Background(), "web"); len(recs) == 0 || recs[0].Result != "ok" || recs[0].To != res.Version {
				t.Errorf("history %+v", recs)
			}
		})

		t.Run(fmt.Sprintf("rollback=%v/failed run, lock cannot be released", rollback), func(t *testing.T) {
			s := mk()
			fr := newFaultyRuntime(s.w.runtime())
			fr.method, fr.failAt, fr.err = "Start", 1, errDiskFull
			fj := newFaultyJournal(s.j)
			fj.method, fj.failAt, fj.err = "Unlock", 1, errPermission
			e, ev := engine(s.w)
			e.Runtime, e.Journal = fr, fj
			_, err := run(t, rollback, e)
			de := assertKind(t, err, KindFailed)
			if !strings.Contains(err.Error(), "no space left on device") || de.State == "" {
				t.Errorf("error does not name the cause or the state: %v", err)
			}
			if ws := strings.Join(ev.warnings(), "\n"); !strings.Contains(ws, "deployctl unlock --app web") {
				t.Errorf("the warning does not say how to remove the lock: %q", ws)
			}
		})

		t.Run(fmt.Sprintf("rollback=%v/stale lock cannot be broken", rollback), func(t *testing.T) {
			s := mk()
			s.j.holders["web"] = Holder{User: "ci", Host: "runner-1", PID: 42, Since: time.Now().Add(-3 * time.Hour), Expires: time.Now().Add(-time.Hour)}
			fj := newFaultyJournal(s.j)
			fj.method, fj.failAt, fj.err = "Unlock", 1, errPermission
			e, _ := engine(s.w)
			e.Journal = fj
			_, err := run(t, rollback, e)
			de := assertKind(t, err, KindFailed)
			t.Logf("%v", err)
			msg := err.Error()
			if !strings.Contains(msg, "permission denied") || !strings.Contains(msg, "deployctl unlock --app web") || !strings.Contains(de.State, "nothing was changed") {
				t.Errorf("the error does not name the cause and how to remove the lock:\n%s", msg)
			}
			noChange(t, s)
		})
	}

	t.Run("rollback: history cannot be read", func(t *testing.T) {
		s := rollbackScenario()
		fj := newFaultyJournal(s.j)
		fj.method, fj.failAt, fj.err = "Records", 1, errPermission
		e, _ := engine(s.w)
		e.Journal = fj
		_, err := run(t, true, e)
		de := assertKind(t, err, KindFailed)
		if de.Phase != PhasePlan || !strings.Contains(de.State, "nothing was changed") || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("error %v (phase %q, state %q)", err, de.Phase, de.State)
		}
		noChange(t, s)
		if h, _ := s.j.LockHolder(context.Background(), "web"); h != nil {
			t.Errorf("lock still held by %s", h)
		}
	})
}

// A signal or --timeout while a Docker call is in flight: the client gives
// up on the call, which then reads like an unreachable engine. The run must
// be reported as what happened (interrupted, or out of time) with a hint
// that fits, never as "is the Docker engine running?".
func TestCancelledDockerCallIsNotBlamedOnDocker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cause error
		kind  Kind
		hint  string // "" : none
	}{
		{"signal", ErrInterrupted, KindInterrupted, ""},
		{"--timeout", context.DeadlineExceeded, KindFailed, "--timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.addImage("web:v2", nil)
			old := w.addRunning("web-v1", "v1", true)
			fr := newFaultyRuntime(w.runtime())
			fr.method, fr.failAt, fr.err = "Create", 1, errDaemonGone
			e, ev := engine(w)
			e.Runtime = fr
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			e.Reporter = ReporterFunc(func(e Event) {
				ev.Event(e)
				if e.Phase == PhaseCreate && e.Status == StatusStart {
					cancel(tc.cause)
				}
			})
			_, err := e.Rollout(ctx, testOptions("v2"))
			de := assertKind(t, err, tc.kind)
			if tc.hint == "" && de.Hint != "" || !strings.Contains(de.Hint, tc.hint) {
				t.Errorf("hint %q, want one about %q", de.Hint, tc.hint)
			}
			if strings.Contains(de.Error(), "Docker engine is running") || strings.Contains(de.Hint, "DOCKER_HOST") {
				t.Errorf("blamed on Docker: %v (hint %q)", de, de.Hint)
			}
			if old.State != "running" || len(w.containers) != 1 {
				t.Errorf("old %s, %d containers", old.State, len(w.containers))
			}
		})
	}
}
