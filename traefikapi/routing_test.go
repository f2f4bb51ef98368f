package traefikapi

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

// A compose-made app: two routers (http and https entrypoints) to one
// service, a middleware, compose's own labels.
func composeLabels() map[string]string {
	return map[string]string{
		"traefik.enable":                                     "true",
		"traefik.docker.network":                             "proxy",
		"traefik.http.routers.web.rule":                      "Host(`example.com`)",
		"traefik.http.routers.web.entrypoints":               "web",
		"traefik.http.routers.web.middlewares":               "auth",
		"traefik.http.routers.web-tls.rule":                  "Host(`example.com`)",
		"traefik.http.routers.web-tls.entrypoints":           "websecure",
		"traefik.http.routers.web-tls.tls.certresolver":      "le",
		"traefik.http.routers.web-tls.priority":              "50",
		"traefik.http.routers.web-tls.service":               "web",
		"traefik.http.services.web.loadbalancer.server.port": "8080",
		"traefik.http.middlewares.auth.basicauth.users":      "u:$apr1$x",
		"com.docker.compose.project":                         "shop",
		"com.docker.compose.service":                         "web",
		"org.example.team":                                   "payments",
	}
}

func TestSplitRouting(t *testing.T) {
	r, err := SplitRouting(composeLabels(), 8080, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Routers) != 2 || r.Routers[0].Name != "web" || r.Routers[1].Name != "web-tls" {
		t.Fatalf("routers = %+v", r.Routers)
	}
	if got := r.Routers[0]; got.Service != "web" || got.Priority != 0 || got.Effective != len("Host(`example.com`)") {
		t.Errorf("router web = %+v: want service web, no priority label, effective priority the rule's length", got)
	}
	if got := r.Routers[1]; got.Priority != 50 || got.Effective != 50 {
		t.Errorf("router web-tls = %+v: want priority 50", got)
	}

	app := r.AppLabels("v2.1")
	for k, want := range map[string]string{
		"traefik.http.services.web-v2-1.loadbalancer.server.port": "8080",
		"traefik.http.middlewares.auth.basicauth.users":           "u:$apr1$x",
		"traefik.enable":             "true",
		"traefik.docker.network":     "proxy",
		"com.docker.compose.service": "web",
		"org.example.team":           "payments",
	} {
		if app[k] != want {
			t.Errorf("app label %s = %q, want %q", k, app[k], want)
		}
	}
	for k := range app {
		if strings.HasPrefix(k, "traefik.http.routers.") || k == "traefik.http.services.web.loadbalancer.server.port" {
			t.Errorf("app containers carry %s: they must carry no router and only the versioned service", k)
		}
	}

	lifted := r.RouteLabels("v2.1", LevelLifted, "shop-route")
	for k, want := range map[string]string{
		"traefik.http.routers.web-v2-1.rule":                        "Host(`example.com`)",
		"traefik.http.routers.web-v2-1.entrypoints":                 "web",
		"traefik.http.routers.web-v2-1.middlewares":                 "auth",
		"traefik.http.routers.web-v2-1.service":                     "web-v2-1",
		"traefik.http.routers.web-v2-1.priority":                    "20", // len("Host(`example.com`)") + 1
		"traefik.http.routers.web-tls-v2-1.tls.certresolver":        "le",
		"traefik.http.routers.web-tls-v2-1.priority":                "51",
		"traefik.http.routers.web-tls-v2-1.service":                 "web-v2-1",
		"traefik.http.services.shop-route.loadbalancer.server.port": "1",
		"traefik.enable":         "true",
		"traefik.docker.network": "proxy",
	} {
		if lifted[k] != want {
			t.Errorf("lifted route label %s = %q, want %q", k, lifted[k], want)
		}
	}
	for k := range lifted {
		for _, p := range []string{"com.docker.compose.", "traefik.http.middlewares.", "traefik.http.routers.web."} {
			if strings.HasPrefix(k, p) {
				t.Errorf("lifted route container carries %s", k)
			}
		}
	}

	user := r.RouteLabels("v2.1", LevelUser, "shop-route")
	if user["traefik.http.routers.web.service"] != "web-v2-1" || user["traefik.http.routers.web.rule"] != "Host(`example.com`)" {
		t.Errorf("route at the user's level: %v", user)
	}
	if _, ok := user["traefik.http.routers.web.priority"]; ok {
		t.Errorf("a router without a priority label got one at the user's level: %q", user["traefik.http.routers.web.priority"])
	}
	if user["traefik.http.routers.web-tls.priority"] != "50" {
		t.Errorf("web-tls priority at the user's level = %q, want the user's 50", user["traefik.http.routers.web-tls.priority"])
	}

	// The next rollout splits the app containers' labels: the same user
	// routing, whatever the previous split renamed.
	again, err := SplitRouting(app, 8080, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(again.RouteLabels("v3", LevelLifted, "shop-route"), r.RouteLabels("v3", LevelLifted, "shop-route")) {
		t.Errorf("splitting a split app container's labels gives other routes:\n%v\n%v", again.RouteLabels("v3", LevelLifted, "shop-route"), r.RouteLabels("v3", LevelLifted, "shop-route"))
	}
	if got := again.AppLabels("v3")["traefik.http.services.web-v3.loadbalancer.server.port"]; got != "8080" {
		t.Errorf("v3 app service port = %q", got)
	}
	if _, ok := again.AppLabels("v3")["traefik.http.services.web-v2-1.loadbalancer.server.port"]; ok {
		t.Error("v3 app containers still carry v2.1's service")
	}
}

func TestSplitRoutingImpliedService(t *testing.T) {
	r, err := SplitRouting(map[string]string{"traefik.http.routers.api.rule": "PathPrefix(`/`)"}, 3000, "myapp")
	if err != nil {
		t.Fatal(err)
	}
	if r.Routers[0].Service != "myapp" {
		t.Errorf("service = %q, want the default name", r.Routers[0].Service)
	}
	if got := r.AppLabels("v1")["traefik.http.services.myapp-v1.loadbalancer.server.port"]; got != "3000" {
		t.Errorf("implied service port = %q, want the app's port 3000", got)
	}
}

func TestSplitRoutingRefusals(t *testing.T) {
	for _, tc := range []struct {
		name      string
		labels    map[string]string
		notAtomic bool // a fallback to gradual, else a usage error
		want      string
	}{
		{"default rule", map[string]string{"traefik.enable": "true"}, true, "default rule"},
		{"tcp", map[string]string{"traefik.http.routers.a.rule": "Host(`a`)", "traefik.tcp.routers.db.rule": "HostSNI(`*`)"}, true, "TCP or UDP"},
		{"v1", map[string]string{"traefik.frontend.rule": "Host:a", "traefik.backend": "a"}, true, "v1"},
		{"service elsewhere", map[string]string{"traefik.http.routers.a.rule": "Host(`a`)", "traefik.http.routers.a.service": "api@file"}, true, "api@file"},
		{"no rule", map[string]string{"traefik.http.routers.a.entrypoints": "web"}, true, "no rule"},
		{"two services", map[string]string{"traefik.http.routers.a.rule": "Host(`a`)", "traefik.http.services.x.loadbalancer.server.port": "1", "traefik.http.services.y.loadbalancer.server.port": "2"}, false, "traefik.http.routers.a.service"},
		{"priority", map[string]string{"traefik.http.routers.a.rule": "Host(`a`)", "traefik.http.routers.a.priority": "high"}, false, "whole number"},
		{"bad base", map[string]string{LabelRoutingBase: "{"}, false, "JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SplitRouting(tc.labels, 80, "app")
			if err == nil {
				t.Fatal("no error")
			}
			var na *NotAtomicError
			if errors.As(err, &na) != tc.notAtomic || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (not atomic: %v), want it to name %q (not atomic: %v)", err, errors.As(err, &na), tc.want, tc.notAtomic)
			}
		})
	}
}

// The tie check itself is DockerProvider.PlanSwitch's
// (TestDockerProviderPlanSwitch).
func TestPriorityAndNames(t *testing.T) {
	if ObservedPriority(0, "Host(`a.test`)") != 14 || ObservedPriority(7, "Host(`a.test`)") != 7 {
		t.Error("ObservedPriority")
	}
	if NameVersion("release/2026.12.01+build.7") != "release-2026-12-01-build-7" || len(NameVersion(strings.Repeat("a", 60))) != 40 {
		t.Errorf("NameVersion: %q", NameVersion("release/2026.12.01+build.7"))
	}
}
