package deploy

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Table tests of the plan's pure decisions (decide.go): facts and options
// in, decisions and warning codes out, no world.

// container is a running container of app web as deployctl makes it
// (probe: with its drain probe) or not, at IP 10.0.0.<n> on network proxy.
func container(name string, n int, probe bool) Container {
	labels := webLabels()
	labels[LabelApp] = "web"
	labels[LabelVersion] = "v1"
	if probe {
		labels[LabelDrain] = "probe"
	}
	return Container{ID: "id-" + name, Name: name, Labels: labels, State: "running", Health: "healthy",
		Created:  time.Date(2026, 1, 1, 0, n, 0, 0, time.UTC),
		Networks: map[string]string{"proxy": "10.0.0." + string(rune('0'+n))}, Ports: []int{8080}}
}

func codesOf(ws []Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Code)
	}
	return out
}

func TestDrainModes(t *testing.T) {
	probe, legacy := container("web-v1", 1, true), container("legacy", 2, false)
	readOnly := container("web-ro", 3, true)
	readOnly.ReadOnlyRootfs = true
	for _, tc := range []struct {
		name  string
		olds  []Container
		drain DrainMode
		watch bool
		// noDrain: the router has no Drainer capability.
		noDrain bool
		want    []DrainMode
		codes   []string
		err     bool // a usage error
	}{
		{name: "probe drains by health", olds: []Container{probe}, want: []DrainMode{DrainHealth}},
		{name: "no probe: signal, warned", olds: []Container{probe, legacy}, want: []DrainMode{DrainHealth, DrainSignal}, codes: []string{WarnNoProbeOnCurrent}},
		{name: "read-only root: signal, warned", olds: []Container{readOnly}, want: []DrainMode{DrainSignal}, codes: []string{WarnNoProbeOnCurrent}},
		{name: "--drain=signal: signal, not warned", olds: []Container{probe, legacy}, drain: DrainSignal, want: []DrainMode{DrainSignal, DrainSignal}},
		{name: "--drain=health refuses no probe", olds: []Container{probe, legacy}, drain: DrainHealth, err: true},
		{name: "--drain=health with probes", olds: []Container{probe}, drain: DrainHealth, want: []DrainMode{DrainHealth}},
		{name: "--watch refuses no probe", olds: []Container{legacy}, watch: true, err: true},
		{name: "--watch refuses --drain=signal", olds: []Container{probe}, drain: DrainSignal, watch: true, err: true},
		{name: "--watch with probes", olds: []Container{probe}, watch: true, want: []DrainMode{DrainHealth}},
		{name: "first deploy", want: []DrainMode{}},
		{name: "a router that cannot drain: signal, even with the probe", olds: []Container{probe, legacy}, noDrain: true, want: []DrainMode{DrainSignal, DrainSignal}},
		{name: "a router that cannot drain refuses --drain=health", olds: []Container{probe}, noDrain: true, drain: DrainHealth, err: true},
		{name: "a router that cannot drain refuses --watch", olds: []Container{probe}, noDrain: true, watch: true, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Drain: tc.drain}
			if tc.watch {
				o.Watch = time.Minute
			}
			modes, ws, err := drainModes(tc.olds, o, !tc.noDrain)
			if tc.err {
				if err == nil {
					t.Fatalf("accepted: %v", modes)
				}
				assertKind(t, err, KindUsage)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(modes, tc.want) || !slices.Equal(codesOf(ws), tc.codes) {
				t.Errorf("modes %v warnings %v, want %v %v", modes, codesOf(ws), tc.want, tc.codes)
			}
		})
	}
}

func TestDecideProbe(t *testing.T) {
	amd64 := Image{OS: "linux", Arch: "amd64"}
	readOnly := container("web-ro", 1, true)
	readOnly.ReadOnlyRootfs = true
	for _, tc := range []struct {
		name     string
		drain    DrainMode
		template *Container
		img      Image
		dryRun   bool
		probes   ProbeSource
		want     bool
		code     string // of the warning
		err      error  // errors.Is; nil: no error
		usage    bool   // a usage error without a sentinel
	}{
		{name: "probe for the platform", img: amd64, probes: fakeProbes{}, want: true},
		{name: "--drain=signal: none", drain: DrainSignal, img: amd64, probes: fakeProbes{}},
		{name: "read-only template: none, warned", template: &readOnly, img: amd64, probes: fakeProbes{}, code: WarnNoProbe},
		{name: "read-only template, --drain=health", drain: DrainHealth, template: &readOnly, img: amd64, probes: fakeProbes{}, usage: true},
		{name: "platform without a probe", img: Image{OS: "linux", Arch: "s390x"}, probes: fakeProbes{}, err: ErrNoProbe},
		{name: "no probes at all", img: amd64, err: ErrNoProbe},
		{name: "dry run, image to pull", dryRun: true, probes: fakeProbes{}, want: true},
		{name: "dry run, image on the host", dryRun: true, img: Image{OS: "linux", Arch: "s390x"}, probes: fakeProbes{}, err: ErrNoProbe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Image: "web", Version: "v2", Drain: tc.drain, Probes: tc.probes}
			got, bin, w, err := decideProbe(o, tc.template, tc.img, tc.dryRun)
			switch {
			case tc.usage:
				assertKind(t, err, KindUsage)
				return
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			code := ""
			if w != nil {
				code = w.Code
			}
			if got != tc.want || code != tc.code {
				t.Errorf("probe %v warning %q, want %v %q", got, code, tc.want, tc.code)
			}
			if got && !tc.dryRun && len(bin) == 0 {
				t.Errorf("probe chosen without its bytes")
			}
		})
	}
}

func TestRoute(t *testing.T) {
	v1, v2 := container("web-v1", 1, true), container("web-v2", 2, true)
	elsewhere := container("web-x", 3, true)
	elsewhere.Networks = map[string]string{"backend": "10.9.0.3"}
	svc := func(name string, urls ...string) Service {
		s := Service{Name: name}
		for _, u := range urls {
			s.Servers = append(s.Servers, Server{URL: u, Status: "UP"})
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		olds     []Container
		services []Service
		o        Options
		urls     []string // of each old
		want     []string // services
		network  string
		codes    []string
	}{
		{name: "first deploy: nothing known", services: []Service{svc("web@docker", "http://10.0.0.1:8080")}},
		{name: "--service and --network on a first deploy", o: Options{Service: "web@file", Network: "proxy"}, want: []string{"web@file"}, network: "proxy"},
		{name: "found", olds: []Container{v1, v2}, services: []Service{svc("web@docker", "http://10.0.0.1:8080", "http://10.0.0.2:8080"), svc("api@docker", "http://10.0.0.7:8080")},
			urls: []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, want: []string{"web@docker"}, network: "proxy"},
		{name: "one not listed", olds: []Container{v1, v2}, services: []Service{svc("web@docker", "http://10.0.0.2:8080")},
			urls: []string{"", "http://10.0.0.2:8080"}, want: []string{"web@docker"}, network: "proxy", codes: []string{WarnNotListed}},
		{name: "--service elsewhere: not listed", olds: []Container{v1}, services: []Service{svc("web@docker", "http://10.0.0.1:8080")}, o: Options{Service: "other@file"},
			urls: []string{""}, want: []string{"other@file"}, codes: []string{WarnNotListed}},
		{name: "not on --network", olds: []Container{elsewhere}, services: []Service{svc("web@docker", "http://10.9.0.3:8080")}, o: Options{Network: "proxy"},
			urls: []string{""}, network: "proxy", codes: []string{WarnNoServerURL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &decision{}
			for _, c := range tc.olds {
				d.olds = append(d.olds, &oldContainer{Container: c})
			}
			d.route(tc.services, (&fakeRouter{}).Endpoint, tc.o)
			var urls []string
			for _, old := range d.olds {
				urls = append(urls, old.url)
			}
			if !slices.Equal(urls, tc.urls) || !slices.Equal(d.services, tc.want) || d.network != tc.network || !slices.Equal(codesOf(d.warnings), tc.codes) {
				t.Errorf("urls %q services %q network %q warnings %v;\nwant %q %q %q %v", urls, d.services, d.network, codesOf(d.warnings), tc.urls, tc.want, tc.network, tc.codes)
			}
		})
	}
}

// decide as a whole: the template, the warnings in the order the user
// reads them, and the one step of the single-container rollout.
func TestDecide(t *testing.T) {
	left, served := container("web-v1", 1, true), container("web-v2", 2, true)
	left.Health = "unhealthy" // drained by an interrupted run: Traefik does not list it
	legacy := container("legacy", 3, false)
	legacy.Networks = map[string]string{"proxy": "10.0.0.4"}
	routed := []Service{{Name: "web@docker", Servers: []Server{{URL: "http://10.0.0.2:8080"}, {URL: "http://10.0.0.4:8080"}}}}
	// --replicas 1: the default would keep the two servers Traefik routes
	// to (TestDecideBudget).
	o := Options{Image: "web", Version: "v3", Probes: fakeProbes{}, Replicas: 1}
	d, err := decide(facts{image: Image{OS: "linux", Arch: "amd64"}, current: []Container{left, served, legacy}, services: routed, endpoint: (&fakeRouter{}).Endpoint}, o, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{WarnNotListed, WarnLeftOutOfRotation, WarnNoProbeOnCurrent}; !slices.Equal(codesOf(d.warnings), want) {
		t.Errorf("warnings %v, want %v", codesOf(d.warnings), want)
	}
	// The newest container Traefik serves is the template, not the newest.
	if d.template.ID != legacy.ID {
		t.Errorf("template %s, want %s", d.template.Name, legacy.Name)
	}
	if !d.probe || len(d.probeBin) == 0 {
		t.Errorf("no probe for linux/amd64")
	}
	if want := []Step{{Start: 1, Drain: []int{0, 1, 2}}}; !reflect.DeepEqual(d.steps, want) {
		t.Errorf("steps %+v, want %+v", d.steps, want)
	}
	if want := []DrainMode{DrainHealth, DrainHealth, DrainSignal}; !reflect.DeepEqual([]DrainMode{d.olds[0].drain, d.olds[1].drain, d.olds[2].drain}, want) {
		t.Errorf("drains %v %v %v, want %v", d.olds[0].drain, d.olds[1].drain, d.olds[2].drain, want)
	}

	// Out of Traefik and newer than what serves: the new container of a
	// run killed before Traefik routed to it, removed rather than kept.
	// Healthy too: an atomic rollout's new container is in a service of
	// its version no router uses until the switch (the SIGKILL soak).
	for _, health := range []string{"starting", "healthy"} {
		halfMade := container("web-v4", 5, true)
		halfMade.Health = health
		d, err = decide(facts{image: Image{OS: "linux", Arch: "amd64"}, current: []Container{served, halfMade}, services: routed, endpoint: (&fakeRouter{}).Endpoint}, o, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{WarnNotListed, WarnHalfMade}; !slices.Equal(codesOf(d.warnings), want) || d.olds[0].halfMade || !d.olds[1].halfMade {
			t.Errorf("half-made, %s: warnings %v, want %v; half-made %v %v, want false true", health, codesOf(d.warnings), want, d.olds[0].halfMade, d.olds[1].halfMade)
		}
	}

	// A refusal keeps the warnings decided before it.
	o.Drain = DrainHealth
	d, err = decide(facts{image: Image{OS: "linux", Arch: "amd64"}, current: []Container{left, served, legacy}, services: routed, endpoint: (&fakeRouter{}).Endpoint}, o, false)
	assertKind(t, err, KindUsage)
	if want := []string{WarnNotListed, WarnLeftOutOfRotation}; !slices.Equal(codesOf(d.warnings), want) {
		t.Errorf("warnings before the refusal %v, want %v", codesOf(d.warnings), want)
	}

	// A first deploy is one step that only starts.
	d, err = decide(facts{image: Image{OS: "linux", Arch: "amd64"}, endpoint: (&fakeRouter{}).Endpoint}, Options{Image: "web", Version: "v1", Probes: fakeProbes{}}, false)
	if err != nil || !reflect.DeepEqual(d.steps, []Step{{Start: 1}}) || d.template != nil {
		t.Errorf("first deploy: steps %+v template %v err %v", d.steps, d.template, err)
	}
}

func TestPruneList(t *testing.T) {
	at := func(m int) time.Time { return time.Date(2026, 1, 1, 0, m, 0, 0, time.UTC) }
	stopped := func(name string, created, finished int) Container {
		return Container{ID: "id-" + name, Name: name, State: "exited", Created: at(created), Finished: at(finished)}
	}
	running := func(name string) Container {
		return Container{ID: "id-" + name, Name: name, State: "running", Created: at(50)}
	}
	a, b, c := stopped("a", 1, 10), stopped("b", 2, 30), stopped("c", 3, 20) // last served: b, then c, then a
	old, adopted, fresh := running("old"), running("adopted"), running("new")
	v := func(name, version string, finished int) Container {
		c := stopped(name, 1, finished)
		c.Labels = map[string]string{LabelVersion: version}
		return c
	}
	oldV3 := running("old-v3")
	oldV3.Labels = map[string]string{LabelVersion: "v3"}
	for _, tc := range []struct {
		name   string
		listed []Container
		olds   []Container
		newID  string
		// newVersion is the version deployed; "" (unlabelled containers)
		// in the cases above the versioned ones.
		newVersion string
		keep       int
		want       []string
	}{
		{name: "by when they stopped", listed: []Container{a, b, c}, keep: 1, want: []string{"c", "a"}},
		{name: "old ones count as kept", listed: []Container{a, b, c, old}, olds: []Container{old}, keep: 2, want: []string{"c", "a"}},
		{name: "adopted old one without the label does not count", listed: []Container{a, b, c, old}, olds: []Container{old, adopted}, keep: 2, want: []string{"c", "a"}},
		{name: "the new container is never pruned", listed: []Container{a, fresh}, newID: fresh.ID, keep: 0, want: []string{"a"}},
		{name: "old ones stopping already, keep 0", listed: []Container{a, stopped("old", 40, 60)}, olds: []Container{old}, keep: 0, want: []string{"a"}},
		{name: "more kept than there are", listed: []Container{a, b}, olds: []Container{old}, keep: 5},
		{name: "nothing", keep: 3},
		// --keep counts versions: replicas of one version go together.
		{name: "versions, not containers", listed: []Container{v("a1", "v1", 10), v("a2", "v1", 11), v("b1", "v2", 30), v("b2", "v2", 31), v("c1", "v3", 20)}, keep: 2, want: []string{"a2", "a1"}},
		{name: "the olds' version takes one slot, its stopped replicas stay with it", listed: []Container{v("a1", "v1", 10), v("b1", "v2", 30), v("c1", "v3", 40), oldV3}, olds: []Container{oldV3}, keep: 2, want: []string{"a1"}},
		{name: "stopped containers of the version deployed are no way back", listed: []Container{v("a1", "v1", 10), v("d1", "v4", 5), fresh}, newID: fresh.ID, newVersion: "v4", keep: 3, want: []string{"d1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range pruneList(tc.listed, tc.olds, nil, tc.newID, tc.newVersion, tc.keep) {
				got = append(got, c.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("prune %q, want %q", got, tc.want)
			}
		})
	}
}

// Every warning the plan can give is a finding of check with a fix of
// its own, not the catch-all plan-warning.
func TestCheckHasAFixForEveryPlanWarning(t *testing.T) {
	for _, code := range []string{WarnNotListed, WarnNoServerURL, WarnLeftOutOfRotation, WarnNoProbeOnCurrent, WarnNoProbe} {
		f := findingOf(Warning{Code: code, Message: "m"})
		if f.Code != code || f.Fix == "" || f.Problem != "m" {
			t.Errorf("finding of %s: %+v", code, f)
		}
	}
	if f := findingOf(Warning{Code: "something-new", Message: "m"}); f.Code != FindingPlanWarning {
		t.Errorf("unknown code: %+v", f)
	}
}

// The budget of the steps: --replicas defaults to the servers Traefik
// routes to now (1 on a first deploy); one replica keeps the
// single-container plan; a rollback's is a rollout's.
func TestDecideBudget(t *testing.T) {
	routed := func(url string) *oldContainer { return &oldContainer{url: url} }
	half := &oldContainer{halfMade: true}
	surge1 := Amount{N: 1}
	// sized: a container made by a run that meant the app to have n
	// replicas, created at minute m.
	sized := func(url string, n, m int) *oldContainer {
		return &oldContainer{url: url, Container: Container{Labels: map[string]string{LabelReplicas: strconv.Itoa(n)},
			Created: time.Date(2026, 1, 1, 0, m, 0, 0, time.UTC)}}
	}
	for _, tc := range []struct {
		name string
		olds []*oldContainer
		o    Options
		want Budget
		err  string
	}{
		{name: "first deploy", want: Budget{Replicas: 1, MaxSurge: 1}},
		{name: "one serving", olds: []*oldContainer{routed("a")}, want: Budget{Replicas: 1, MaxSurge: 1}},
		{name: "three serving: 25% surge rounds up", olds: []*oldContainer{routed("a"), routed("b"), routed("c")}, want: Budget{Replicas: 3, MaxSurge: 1}},
		{name: "a left-over out of Traefik does not count", olds: []*oldContainer{routed("a"), {}, routed("c")}, want: Budget{Replicas: 2, MaxSurge: 1}},
		{name: "none listed: all but half-made", olds: []*oldContainer{{}, {}, half}, want: Budget{Replicas: 2, MaxSurge: 1}},
		// The size recorded by the newest container's run, at most what runs.
		{name: "recorded 3, three serving", olds: []*oldContainer{sized("a", 3, 1), sized("b", 3, 2), sized("c", 3, 3)}, want: Budget{Replicas: 3, MaxSurge: 1}},
		// A killed 1-replica rollout left its drained old container, still
		// listed by Traefik for a moment, beside its new one: one replica,
		// not two (found by e2e/soak after replicas landed).
		{name: "killed rollout: old still listed beside the new one", olds: []*oldContainer{sized("old", 1, 1), sized("new", 1, 2)}, want: Budget{Replicas: 1, MaxSurge: 2}},
		// Scaled 3 -> 1: the one left was made for 3.
		{name: "after a scale-down", olds: []*oldContainer{sized("a", 3, 3)}, want: Budget{Replicas: 1, MaxSurge: 1}},
		// A killed 3-replica rollout in its second step: 2 new, 1 old.
		{name: "killed 3-replica rollout", olds: []*oldContainer{sized("old", 3, 1), sized("n1", 3, 5), sized("n2", 3, 5)}, want: Budget{Replicas: 3, MaxSurge: 1}},
		{name: "--replicas 1 over two: one step, surge of both", olds: []*oldContainer{routed("a"), routed("b")}, o: Options{Replicas: 1}, want: Budget{Replicas: 1, MaxSurge: 2}},
		{name: "--replicas 4 --max-surge 100%", o: Options{Replicas: 4, MaxSurge: &Amount{N: 100, Percent: true}}, want: Budget{Replicas: 4, MaxSurge: 4}},
		{name: "--max-unavailable 50%", o: Options{Replicas: 4, MaxSurge: &surge1, MaxUnavailable: &Amount{N: 50, Percent: true}}, want: Budget{Replicas: 4, MaxSurge: 1, MaxUnavailable: 2}},
		{name: "rollback of three: the budget of a rollout of three", olds: []*oldContainer{routed("a"), routed("b"), routed("c")}, o: Options{Reuse: "x"}, want: Budget{Replicas: 3, MaxSurge: 1}},
		{name: "rollback of one: the single-container plan", olds: []*oldContainer{routed("a")}, o: Options{Reuse: "x"}, want: Budget{Replicas: 1, MaxSurge: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := decideBudget(tc.olds, tc.o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil || b != tc.want {
				t.Errorf("budget %+v, %v; want %+v", b, err, tc.want)
			}
		})
	}
}
