package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSwarm is a Swarm manager: services whose tasks run at once (unless
// their image is missing on a node), and a router (Traefik's swarm
// provider) that lists the running tasks of every service not labelled
// traefik.enable=false, in the service its labels name, as of its last
// poll (every pollEvery observations).
type fakeSwarm struct {
	*fakeRuntime
	mu       sync.Mutex
	services map[string]*SwarmService
	seq      int
	ops      []string
	missing  map[string]bool // images no node has
	sick     map[string]bool // images whose tasks never turn healthy
	// keepListing: the router never drops these services' tasks.
	keepListing map[string]bool
	// routed records, for each router observation, how many tasks the
	// app's router service listed.
	routed []int
}

func newFakeSwarm() *fakeSwarm {
	return &fakeSwarm{fakeRuntime: newWorld().runtime(), services: map[string]*SwarmService{}, missing: map[string]bool{}, sick: map[string]bool{}, keepListing: map[string]bool{}}
}

func (f *fakeSwarm) add(name, image string, replicas int, labels map[string]string) *SwarmService {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	s := &SwarmService{ID: fmt.Sprintf("svc%d", f.seq), Name: name, Image: image, Replicas: replicas, Labels: maps.Clone(labels), Created: time.Unix(int64(f.seq), 0)}
	f.services[s.ID] = s
	return s
}

func (f *fakeSwarm) op(format string, args ...any) {
	f.ops = append(f.ops, fmt.Sprintf(format, args...))
}

func (f *fakeSwarm) SwarmRole(ctx context.Context) (string, error) { return "manager", nil }

func (f *fakeSwarm) AppServices(ctx context.Context, app string) ([]SwarmService, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []SwarmService
	for i := 1; i <= f.seq; i++ {
		if s, ok := f.services[fmt.Sprintf("svc%d", i)]; ok && (s.Name == app || s.Labels[LabelApp] == app) {
			c := *s
			c.Labels = maps.Clone(s.Labels)
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeSwarm) CloneService(ctx context.Context, from SwarmService, name, image string, replicas int, labels map[string]string) (SwarmService, error) {
	l := maps.Clone(f.services[from.ID].Labels)
	for k, v := range labels {
		if v == "" {
			delete(l, k)
		} else {
			l[k] = v
		}
	}
	s := f.add(name, image, replicas, l)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op("create %s %s x%d", name, image, replicas)
	return *s, nil
}

func (f *fakeSwarm) SetServiceLabels(ctx context.Context, id string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.services[id]
	for k, v := range labels {
		if v == "" {
			delete(s.Labels, k)
		} else {
			s.Labels[k] = v
		}
	}
	f.op("labels %s traefik.enable=%s", s.Name, s.Labels["traefik.enable"])
	return nil
}

func (f *fakeSwarm) ScaleService(ctx context.Context, id string, replicas int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services[id].Replicas = replicas
	f.op("scale %s %d", f.services[id].Name, replicas)
	return nil
}

func (f *fakeSwarm) RemoveService(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op("remove %s", f.services[id].Name)
	delete(f.services, id)
	return nil
}

func (f *fakeSwarm) tasksOf(s *SwarmService) []Task {
	var out []Task
	for i := 1; i <= s.Replicas; i++ {
		t := Task{ID: fmt.Sprintf("%s.%d", s.ID, i), Slot: i, Node: fmt.Sprintf("node%d", 1+i%2), State: "running", DesiredState: "running",
			Addrs: map[string]string{"web": fmt.Sprintf("10.0.%s.%d", strings.TrimPrefix(s.ID, "svc"), i)}}
		if f.missing[s.Image] {
			t.State, t.DesiredState, t.Err = "rejected", "shutdown", "No such image: "+s.Image
		}
		if f.sick[s.Image] {
			t.State, t.DesiredState, t.Message = "complete", "shutdown", "finished"
		}
		out = append(out, t)
	}
	return out
}

func (f *fakeSwarm) ServiceTasks(ctx context.Context, id string) ([]Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[id]
	if !ok {
		return nil, errors.New("no such service")
	}
	// Swarm keeps a service's ended tasks for a while: one from before.
	past := Task{ID: s.ID + ".past", Slot: 1, Node: "node1", State: "shutdown", DesiredState: "shutdown", Message: "shutdown"}
	return append(f.tasksOf(s), past), nil
}

// fakeSwarmRouter is Traefik's swarm provider over a fakeSwarm.
type fakeSwarmRouter struct {
	*fakeRouter
	f *fakeSwarm
}

func (r fakeSwarmRouter) ServiceEndpoint(ctx context.Context, labels map[string]string) (Endpoint, error) {
	ep := Endpoint{Scheme: "http"}
	for k, v := range labels {
		if rest, ok := strings.CutPrefix(k, "traefik.http.services."); ok && strings.HasSuffix(rest, ".loadbalancer.server.port") {
			ep.Services = append(ep.Services, strings.TrimSuffix(rest, ".loadbalancer.server.port")+"@swarm")
			fmt.Sscan(v, &ep.Port)
		}
	}
	return ep, nil
}

func (r fakeSwarmRouter) Service(ctx context.Context, name string) (Service, error) {
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	base := strings.TrimSuffix(name, "@swarm")
	svc := Service{Name: name}
	for i := 1; i <= f.seq; i++ {
		s, ok := f.services[fmt.Sprintf("svc%d", i)]
		if !ok || s.Labels["traefik.http.services."+base+".loadbalancer.server.port"] == "" {
			continue
		}
		if s.Labels["traefik.enable"] == "false" && !f.keepListing[s.Name] {
			continue
		}
		for _, t := range f.tasksOf(s) {
			if t.State == "running" {
				svc.Servers = append(svc.Servers, Server{URL: "http://" + t.Addrs["web"] + ":8080", Status: "UP"})
			}
		}
	}
	f.routed = append(f.routed, len(svc.Servers))
	if len(svc.Servers) == 0 {
		return Service{}, ErrServiceNotFound
	}
	return svc, nil
}

func swarmEngine(t *testing.T) (*Engine, *fakeSwarm, *events) {
	t.Helper()
	old := minSwarmRouterWait
	minSwarmRouterWait = 0
	t.Cleanup(func() { minSwarmRouterWait = old })
	f := newFakeSwarm()
	ev := &events{}
	e := &Engine{Runtime: f, Router: fakeSwarmRouter{fakeRouter: f.w.router(), f: f}, Reporter: ev, CleanupTimeout: 5 * time.Second}
	return e, f, ev
}

var swarmWebLabels = map[string]string{
	"traefik.enable":                                     "true",
	"traefik.http.routers.web.rule":                      "Host(`web.test`)",
	"traefik.http.services.web.loadbalancer.server.port": "8080",
}

func TestSwarmRolloutRoutesTheNewServiceBeforeTheOldLeaves(t *testing.T) {
	e, f, ev := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	res, err := e.Rollout(context.Background(), testOptions("v2"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"create web-v2 web:v2 x3", "labels web traefik.enable=false", "scale web 0"}
	if strings.Join(f.ops, "; ") != strings.Join(want, "; ") {
		t.Errorf("ops: %q\nwant %q", f.ops, want)
	}
	for i, n := range f.routed {
		if n == 0 {
			t.Errorf("observation %d of the router listed no task: a moment without servers", i)
		}
	}
	if res.Swarm == nil || res.Swarm.Service != "web-v2" || res.Swarm.Tasks != 3 || res.Swarm.Old != "web" {
		t.Errorf("result: %+v", res.Swarm)
	}
	svcs, _ := f.AppServices(context.Background(), "web")
	for _, s := range svcs {
		switch s.Name {
		case "web":
			if s.Replicas != 0 || s.Labels["traefik.enable"] != "false" || s.Labels[LabelRoutedWas] != "true" {
				t.Errorf("old service after the rollout: %+v", s)
			}
		case "web-v2":
			if s.Replicas != 3 || s.Labels["traefik.enable"] != "true" || s.Labels[LabelVersion] != "v2" || s.Labels[LabelApp] != "web" {
				t.Errorf("new service: %+v", s)
			}
		}
	}
	said := false
	for _, x := range ev.all {
		said = said || strings.Contains(x.Message, "Swarm rollout")
	}
	if !said {
		t.Error("no event says it is a Swarm rollout")
	}

	// The next rollout goes from web-v2 to web-v3 and keeps both older
	// services (Keep 3).
	if _, err := e.Rollout(context.Background(), testOptions("v3")); err != nil {
		t.Fatal(err)
	}
	svcs, _ = f.AppServices(context.Background(), "web")
	got := map[string]int{}
	for _, s := range svcs {
		got[s.Name] = s.Replicas
	}
	if len(got) != 3 || got["web"] != 0 || got["web-v2"] != 0 || got["web-v3"] != 3 {
		t.Errorf("services after v3: %v", got)
	}
}

func TestSwarmRolloutWithTasksRejectedRemovesTheNewService(t *testing.T) {
	e, f, _ := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	f.missing["web:v2"] = true
	_, err := e.Rollout(context.Background(), testOptions("v2"))
	var de *Error
	if !errors.As(err, &de) || de.Kind != KindFailed || !strings.Contains(err.Error(), "No such image: web:v2") || !strings.Contains(err.Error(), "node") {
		t.Fatalf("error %v (%#v), want a failure naming the image and the node", err, de)
	}
	if !strings.Contains(de.State, "web still serves, unchanged") || !strings.Contains(de.State, "web-v2 was removed") {
		t.Errorf("state: %q", de.State)
	}
	want := []string{"create web-v2 web:v2 x3", "remove web-v2"}
	if strings.Join(f.ops, "; ") != strings.Join(want, "; ") {
		t.Errorf("ops: %q\nwant %q", f.ops, want)
	}
}

func TestSwarmRolloutWhoseTasksNeverTurnHealthyFailsAtOnce(t *testing.T) {
	e, f, _ := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	f.sick["web:v2"] = true
	o := testOptions("v2")
	o.HealthTimeout = time.Hour
	start := time.Now()
	_, err := e.Rollout(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "ended (complete: finished)") || !strings.Contains(err.Error(), "did not turn healthy") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: a task that ended should fail the rollout at once, not at the health timeout", d)
	}
	want := []string{"create web-v2 web:v2 x3", "remove web-v2"}
	if strings.Join(f.ops, "; ") != strings.Join(want, "; ") {
		t.Errorf("ops: %q\nwant %q", f.ops, want)
	}
}

func TestSwarmRolloutFailingAfterTheOldLeftPutsItBackFirst(t *testing.T) {
	e, f, _ := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	f.keepListing["web"] = true // Traefik never drops the old tasks
	_, err := e.Rollout(context.Background(), testOptions("v2"))
	var de *Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "still lists") {
		t.Fatalf("error %v, want the router still listing the old tasks", err)
	}
	want := []string{"create web-v2 web:v2 x3", "labels web traefik.enable=false", "labels web traefik.enable=true", "remove web-v2"}
	if strings.Join(f.ops, "; ") != strings.Join(want, "; ") {
		t.Errorf("ops: %q\nwant %q", f.ops, want)
	}
	if !strings.Contains(de.State, "web serves again") {
		t.Errorf("state: %q", de.State)
	}
	svcs, _ := f.AppServices(context.Background(), "web")
	if len(svcs) != 1 || svcs[0].Replicas != 3 || svcs[0].Labels[LabelRouted] != "" {
		t.Errorf("after the failure: %+v", svcs)
	}
}

func TestSwarmRolloutRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(f *fakeSwarm)
		want  string
	}{
		{"already serving", func(f *fakeSwarm) { f.add("web", "web:v2", 3, swarmWebLabels) }, "already serving"},
		{"global mode", func(f *fakeSwarm) { f.add("web", "web:v1", -1, swarmWebLabels) }, "global mode"},
		{"two serving", func(f *fakeSwarm) {
			f.add("web", "web:v1", 3, swarmWebLabels)
			l := maps.Clone(swarmWebLabels)
			l[LabelApp] = "web"
			f.add("web-v0", "web:v0", 2, l)
		}, "several services of web serve: web, web-v0"},
		{"no router service", func(f *fakeSwarm) { f.add("web", "web:v1", 3, map[string]string{"traefik.enable": "true"}) }, "names no router service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f, _ := swarmEngine(t)
			tc.setup(f)
			_, err := e.Rollout(context.Background(), testOptions("v2"))
			var de *Error
			if !errors.As(err, &de) || de.Kind != KindUsage || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a usage error with %q", err, tc.want)
			}
			if len(f.ops) != 0 {
				t.Errorf("a refused rollout changed things: %q", f.ops)
			}
		})
	}
}

func TestSwarmRollbackRevivesTheServiceTheServingOneReplaced(t *testing.T) {
	e, f, _ := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	for _, v := range []string{"v2", "v3"} {
		if _, err := e.Rollout(context.Background(), testOptions(v)); err != nil {
			t.Fatal(err)
		}
	}
	f.ops = nil
	o := testOptions("")
	o.Image, o.App = "", "web"
	p, res, err := e.Rollback(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.From != "v3" || p.To != "v2" || p.Reuse != "web-v2" || !strings.Contains(p.Reason, "web-v3 replaced") {
		t.Errorf("plan: %+v", p)
	}
	want := []string{"labels web-v2 traefik.enable=true", "scale web-v2 3", "labels web-v3 traefik.enable=false", "scale web-v3 0"}
	if strings.Join(f.ops, "; ") != strings.Join(want, "; ") {
		t.Errorf("ops: %q\nwant %q", f.ops, want)
	}
	if res.Swarm == nil || res.Swarm.Service != "web-v2" || res.Version != "v2" {
		t.Errorf("result: %+v %+v", res, res.Swarm)
	}
	for i, n := range f.routed {
		if n == 0 {
			t.Errorf("observation %d of the router listed no task", i)
		}
	}

	// --to the user's first service.
	f.ops = nil
	o.Version = "v1"
	if p, _, err = e.Rollback(context.Background(), o); err != nil || p.Reuse != "web" {
		t.Fatalf("rollback --to v1: %+v, %v", p, err)
	}
	o.Version = "v9"
	if _, _, err = e.Rollback(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no retained service of web runs version v9") {
		t.Fatalf("rollback --to v9: %v", err)
	}
}

func TestSwarmRollbackFailingPutsTheRetainedServiceBack(t *testing.T) {
	e, f, _ := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	if _, err := e.Rollout(context.Background(), testOptions("v2")); err != nil {
		t.Fatal(err)
	}
	f.missing["web:v1"] = true // gone from the nodes since
	f.ops = nil
	o := testOptions("")
	o.Image, o.App = "", "web"
	_, _, err := e.Rollback(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "No such image: web:v1") {
		t.Fatalf("error %v", err)
	}
	want := []string{"labels web traefik.enable=true", "scale web 3", "labels web traefik.enable=false", "scale web 0"}
	if strings.Join(f.ops, "; ") != strings.Join(want, "; ") {
		t.Errorf("ops: %q\nwant %q", f.ops, want)
	}
	svcs, _ := f.AppServices(context.Background(), "web")
	for _, s := range svcs {
		if s.Name == "web-v2" && (s.Replicas != 3 || s.Labels["traefik.enable"] != "true") {
			t.Errorf("the serving service was touched: %+v", s)
		}
	}
}

func TestSwarmStatusListsTheServices(t *testing.T) {
	e, f, _ := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	if _, err := e.Rollout(context.Background(), testOptions("v2")); err != nil {
		t.Fatal(err)
	}
	sts, err := e.Status(context.Background(), "web")
	if err != nil || len(sts) != 1 {
		t.Fatalf("status: %+v, %v", sts, err)
	}
	st := sts[0]
	if st.Running != 3 || st.Up != 3 || len(st.Swarm) != 2 || len(st.Problems) != 0 || !slices.Equal(st.Services, []string{"web@swarm"}) {
		t.Fatalf("status: %+v", st)
	}
	if s := st.Swarm[0]; s.Name != "web-v2" || s.Version != "v2" || s.Replicas != 3 || s.Running != 3 || s.Up != 3 || !s.Routed {
		t.Errorf("newest: %+v", s)
	}
	if s := st.Swarm[1]; s.Name != "web" || s.Version != "v1" || s.Replicas != 0 || s.Running != 0 || s.Routed {
		t.Errorf("retained: %+v", s)
	}
}

func TestSwarmCheck(t *testing.T) {
	ctx := context.Background()
	e, f, _ := swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	if fs, err := e.Check(ctx, Options{App: "web"}); err != nil || len(fs) != 0 {
		t.Fatalf("a routed service: %+v, %v; want no finding", fs, err)
	}
	if len(f.ops) != 0 {
		t.Errorf("check changed things: %q", f.ops)
	}

	off := maps.Clone(swarmWebLabels)
	off["traefik.enable"] = "false" // by the user: Traefik ignores it
	e, f, _ = swarmEngine(t)
	f.add("web", "web:v1", 3, off)
	if fs, err := e.Check(ctx, Options{App: "web"}); err != nil || len(fs) != 1 || fs[0].Code != FindingSwarmNotRouted {
		t.Fatalf("an unrouted service: %+v, %v; want %s", fs, err, FindingSwarmNotRouted)
	}

	e, f, _ = swarmEngine(t)
	f.add("web", "web:v1", 3, swarmWebLabels)
	l := maps.Clone(swarmWebLabels)
	l[LabelApp] = "web"
	f.add("web-v2", "web:v2", 3, l)
	if fs, err := e.Check(ctx, Options{App: "web"}); err != nil || len(fs) != 1 || fs[0].Code != FindingSwarmSeveralServing {
		t.Fatalf("two serving services: %+v, %v; want %s", fs, err, FindingSwarmSeveralServing)
	}
}
