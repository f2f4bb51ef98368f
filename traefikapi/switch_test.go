package traefikapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/deploy"
)

// stubAPI is Traefik's API as DockerProvider reads it for a switch: its
// routers and services, set by the test.
type stubAPI struct {
	routers  []RouterInfo
	services map[string]deploy.Service
	err      error
}

func (s *stubAPI) Services(ctx context.Context) ([]deploy.Service, error) { return nil, s.err }
func (s *stubAPI) Service(ctx context.Context, name string) (deploy.Service, error) {
	if s.err != nil {
		return deploy.Service{}, s.err
	}
	svc, ok := s.services[name]
	if !ok {
		return deploy.Service{}, deploy.ErrServiceNotFound
	}
	return svc, nil
}
func (s *stubAPI) HTTPRouters(ctx context.Context) ([]RouterInfo, error) { return s.routers, s.err }

// observeOnly is an API that cannot list routers.
type observeOnly struct{ deploy.Observer }

func TestDockerProviderPlanSwitch(t *testing.T) {
	tmpl := deploy.Container{Name: "shop-v1-abc", Labels: composeLabels()}
	ep := deploy.Endpoint{Scheme: "http", Port: 8080}
	api := &stubAPI{routers: []RouterInfo{
		{Name: "web@docker", Rule: "Host(`example.com`)", EntryPoints: []string{"web"}},
		{Name: "api@internal", Priority: 9223372036854775806},
		// Longer rule on the same host: wins before and after the switch.
		{Name: "api@docker", Rule: "Host(`example.com`) && PathPrefix(`/api`)", EntryPoints: []string{"web"}},
	}}
	p := DockerProvider{API: api}
	plan, err := p.PlanSwitch(context.Background(), tmpl, nil, ep, "v2")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(plan.Services, ",") != "web-v2@docker" {
		t.Errorf("services %v", plan.Services)
	}
	if strings.Join(plan.Lifted.Routers, ",") != "web-tls-v2@docker,web-v2@docker" && strings.Join(plan.Lifted.Routers, ",") != "web-v2@docker,web-tls-v2@docker" {
		t.Errorf("lifted routers %v", plan.Lifted.Routers)
	}
	if strings.Join(plan.User.Routers, ",") != "web@docker,web-tls@docker" {
		t.Errorf("user routers %v", plan.User.Routers)
	}
	for _, k := range []string{"traefik.http.routers.web.rule", "traefik.http.services.web.loadbalancer.server.port"} {
		found := false
		for _, r := range plan.RemoveLabels {
			found = found || r == k
		}
		if !found {
			t.Errorf("RemoveLabels %v lacks %s", plan.RemoveLabels, k)
		}
	}
	if plan.Labels["traefik.http.services.web-v2.loadbalancer.server.port"] != "8080" || plan.Labels[LabelRoutingBase] == "" {
		t.Errorf("new containers' labels %v", plan.Labels)
	}
	if _, ok := plan.Labels["traefik.enable"]; ok {
		t.Errorf("the plan sets labels the new containers copy anyway: %v", plan.Labels)
	}

	// Another router on the entrypoint at the lifted priority: a tie.
	api.routers = append(api.routers, RouterInfo{Name: "other@file", Rule: "PathPrefix(`/x`)", Priority: 20, EntryPoints: []string{"web"}})
	if _, err := p.PlanSwitch(context.Background(), tmpl, nil, ep, "v2"); !errors.Is(err, deploy.ErrNotAtomic) || !strings.Contains(err.Error(), "other@file (priority 20)") {
		t.Errorf("tie: %v, want ErrNotAtomic naming other@file", err)
	}
	// ... unless on another entrypoint.
	api.routers[len(api.routers)-1].EntryPoints = []string{"admin"}
	if _, err := p.PlanSwitch(context.Background(), tmpl, nil, ep, "v2"); err != nil {
		t.Errorf("a router at that priority on another entrypoint: %v", err)
	}
	// The app's own lifted router of another version, still listed (its
	// route container removed by an interrupted run): left, which the
	// engine waits out.
	lifted := RouterInfo{Name: "web-k3@docker", Rule: "Host(`example.com`)", Priority: 20, EntryPoints: []string{"web"}, Service: "web-k3@docker"}
	api.routers = append(api.routers, lifted)
	leftPlan, err := p.PlanSwitch(context.Background(), tmpl, nil, ep, "v2")
	var left *deploy.LiftedLeftError
	if !errors.As(err, &left) || strings.Join(left.Routers, ",") != "web-k3@docker" || !errors.Is(err, deploy.ErrNotAtomic) || !strings.Contains(err.Error(), "web-k3@docker (priority 20)") {
		t.Errorf("a lifted router left: %v (%#v), want a LiftedLeftError naming web-k3@docker", err, left)
	}
	// ... with the plan, whole (a switch back uses its user-level routes).
	if strings.Join(leftPlan.User.Routers, ",") != "web@docker,web-tls@docker" || leftPlan.User.Labels["traefik.http.routers.web.service"] != "web-v2" {
		t.Errorf("the plan with a lifted router left: user routes %v %v, want router web@docker to web-v2", leftPlan.User.Routers, leftPlan.User.Labels)
	}
	// Beside a router of someone else at that priority: not only left.
	api.routers = append(api.routers, RouterInfo{Name: "other2@file", Rule: "PathPrefix(`/y`)", Priority: 20, EntryPoints: []string{"web"}})
	if _, err = p.PlanSwitch(context.Background(), tmpl, nil, ep, "v2"); errors.As(err, &left) || !strings.Contains(err.Error(), "other2@file (priority 20); web-k3@docker (priority 20)") {
		t.Errorf("a lifted router left and another: %v, want a plain tie naming both", err)
	}
	api.routers = api.routers[:len(api.routers)-2]
	// A router of that name routing elsewhere, or with another rule, is
	// not the app's.
	for _, r := range []RouterInfo{
		{Name: "web-k3@docker", Rule: "Host(`example.com`)", Priority: 20, Service: "other-k3@docker"},
		{Name: "web-k3@docker", Rule: "Host(`example.org`)", Priority: 20, Service: "web-k3@docker"},
		{Name: "web-k3@file", Rule: "Host(`example.com`)", Priority: 20, Service: "web-k3@file"},
	} {
		api.routers = append(api.routers, r)
		if _, err = p.PlanSwitch(context.Background(), tmpl, nil, ep, "v2"); errors.As(err, &left) || !errors.Is(err, deploy.ErrNotAtomic) {
			t.Errorf("%+v: %v, want a plain tie", r, err)
		}
		api.routers = api.routers[:len(api.routers)-1]
	}

	if _, err := (DockerProvider{API: observeOnly{api}}).PlanSwitch(context.Background(), tmpl, nil, ep, "v2"); !errors.Is(err, deploy.ErrNotAtomic) {
		t.Errorf("an API that cannot list routers: %v", err)
	}
	v1 := &stubAPI{err: ErrNoRouters}
	if _, err := (DockerProvider{API: v1}).PlanSwitch(context.Background(), tmpl, nil, ep, "v2"); !errors.Is(err, deploy.ErrNotAtomic) || !strings.Contains(err.Error(), "v1") {
		t.Errorf("Traefik v1: %v", err)
	}
	noRouters := deploy.Container{Name: "x", Labels: map[string]string{"traefik.enable": "true"}}
	if _, err := p.PlanSwitch(context.Background(), noRouters, nil, ep, "v2"); !errors.Is(err, deploy.ErrNotAtomic) {
		t.Errorf("labels without routers: %v", err)
	}
	down := &stubAPI{err: errors.New("connection refused")}
	if _, err := (DockerProvider{API: down}).PlanSwitch(context.Background(), tmpl, nil, ep, "v2"); err == nil || errors.Is(err, deploy.ErrNotAtomic) {
		t.Errorf("API down: %v, want the API's error, not a fallback", err)
	}
}

func TestDockerProviderRoutes(t *testing.T) {
	api := &stubAPI{
		routers: []RouterInfo{{Name: "web-v2@docker", Service: "web-v2", Status: "enabled", Provider: "docker"}},
		services: map[string]deploy.Service{"web-v2@docker": {Name: "web-v2@docker", Servers: []deploy.Server{
			{URL: "http://10.0.0.2:8080", Status: "UP"}, {URL: "http://10.0.0.3:8080", Status: "UP"}}}},
	}
	p := DockerProvider{API: api}
	ctx := context.Background()
	check := func(what string, routers, urls []string, want bool) {
		t.Helper()
		got, err := p.Routes(ctx, routers, urls)
		if err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", what, got, err, want)
		}
	}
	both := []string{"http://10.0.0.2:8080", "http://10.0.0.3:8080"}
	check("enabled, both UP", []string{"web-v2@docker"}, both, true)
	check("a server not listed", []string{"web-v2@docker"}, append(both, "http://10.0.0.4:8080"), false)
	check("a router not listed", []string{"web-v2@docker", "web-tls-v2@docker"}, both, false)
	check("gone: still listed", []string{"web-v2@docker"}, nil, false)
	check("gone", []string{"web-v3@docker"}, nil, true)
	api.routers[0].Status = "disabled"
	check("disabled", []string{"web-v2@docker"}, both, false)
	api.routers[0].Status = "enabled"
	api.services["web-v2@docker"].Servers[1].Status = "DOWN"
	check("a server DOWN", []string{"web-v2@docker"}, both, false)
	delete(api.services, "web-v2@docker")
	check("service gone", []string{"web-v2@docker"}, both, false)
	api.err = errors.New("connection refused")
	if _, err := p.Routes(ctx, []string{"web-v2@docker"}, both); err == nil {
		t.Error("API down: no error")
	}
}

func TestRouterInfoQualifiedService(t *testing.T) {
	for _, tc := range []struct {
		r    RouterInfo
		want string
	}{
		{RouterInfo{Name: "web@docker", Service: "web-v2"}, "web-v2@docker"},
		{RouterInfo{Name: "web@docker", Service: "web-v2", Provider: "docker"}, "web-v2@docker"},
		{RouterInfo{Name: "web@docker", Service: "api@file"}, "api@file"},
	} {
		if got := tc.r.QualifiedService(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// A rollout that gives the routing again with --label (a CI step that
// always passes the same labels), or changes it: the given labels win,
// also over a container an atomic rollout made, whose own are a split's.
func TestPlanSwitchWithGivenLabels(t *testing.T) {
	ep := deploy.Endpoint{Scheme: "http", Port: 8080}
	p := DockerProvider{API: &stubAPI{routers: []RouterInfo{}}}
	given := map[string]string{
		"traefik.http.routers.web.rule":                      "Host(`new.example.com`)",
		"traefik.http.services.web.loadbalancer.server.port": "8080",
	}
	// The container of an earlier atomic rollout: versioned service, no
	// router, the user's labels in the routing base.
	first, err := p.PlanSwitch(context.Background(), deploy.Container{Name: "web-v1-abc", Labels: map[string]string{
		"traefik.enable":                "true",
		"traefik.http.routers.web.rule": "Host(`old.example.com`)", "traefik.http.services.web.loadbalancer.server.port": "8080",
	}}, nil, ep, "v1")
	if err != nil {
		t.Fatal(err)
	}
	v1 := map[string]string{"traefik.enable": "true"}
	for k, v := range first.Labels {
		v1[k] = v
	}
	for _, tmpl := range []map[string]string{
		{"traefik.enable": "true", "traefik.http.routers.web.rule": "Host(`old.example.com`)", "traefik.http.services.web.loadbalancer.server.port": "8080"},
		v1,
	} {
		plan, err := p.PlanSwitch(context.Background(), deploy.Container{Name: "web-v1-abc", Labels: tmpl}, given, ep, "v2")
		if err != nil {
			t.Fatal(err)
		}
		for _, route := range []deploy.Route{plan.Lifted, plan.User} {
			rules := 0
			for k, v := range route.Labels {
				if strings.HasSuffix(k, ".rule") {
					rules++
					if v != "Host(`new.example.com`)" {
						t.Errorf("template %v: route label %s=%s, want the given rule", tmpl, k, v)
					}
				}
			}
			if rules != 1 {
				t.Errorf("template %v: route labels %v, want one router", tmpl, route.Labels)
			}
		}
		for k := range given {
			if !slices.Contains(plan.RemoveLabels, k) {
				t.Errorf("template %v: RemoveLabels %v lacks the given %s: the new containers would carry the user's router", tmpl, plan.RemoveLabels, k)
			}
		}
		if !strings.Contains(plan.Labels[LabelRoutingBase], "new.example.com") {
			t.Errorf("template %v: routing base %s, want the given rule recorded", tmpl, plan.Labels[LabelRoutingBase])
		}
	}
}
