package traefikapi

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewValidatesURL(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"localhost:8080", "no scheme"},
		{"deploy:hunter2secret@localhost:8080", "no scheme"},
		{"ftp://localhost:8080", "scheme must be http or https"},
		{"http://", "no host"},
		{"http://:8080", "no host"},
		{"http://deploy:hunter2secret@host with space/", "not a valid URL"},
		{"http://localhost:8080/?x=1", "query"},
		{"http://localhost:8080/#frag", "fragment"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := New(Config{URL: tc.url})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "http://localhost:8080") {
				t.Errorf("error %q: want it to say %q and show a good example", msg, tc.want)
			}
			if strings.Contains(msg, "hunter2secret") {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
}

func TestNewKeepsBaseAndLiftsUserinfo(t *testing.T) {
	c, err := New(Config{URL: "HTTPS://deploy:pw%40x@Traefik.example.com:8443/traefik/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.base != "https://Traefik.example.com:8443/traefik" || c.username != "deploy" || c.password != "pw@x" {
		t.Errorf("base %q user %q pass %q", c.base, c.username, c.password)
	}
	if c.retry.Logger != nil {
		t.Error("go-retryablehttp has a logger: it would print to stderr")
	}
	c, _ = New(Config{URL: "http://a:b@h", Username: "u", Password: "p"})
	if c.username != "u" || c.password != "p" || strings.Contains(c.base, "a:b") {
		t.Errorf("explicit credentials lost: %q %q %q", c.username, c.password, c.base)
	}
}

func TestInfo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fake  func(t *testing.T) *fakeTraefik
		want  Info
		paths []string
	}{
		{"v1.7", newFakeV1, Info{1, "v1.7.34", "cheddar"}, []string{"/api/version"}},
		{"v2.11", func(t *testing.T) *fakeTraefik { return newFakeV2(t, "v2_services.json", "v2.11.0") },
			Info{2, "v2.11.0", "cheddar"}, []string{"/api/version"}},
		{"v3.0", func(t *testing.T) *fakeTraefik { return newFakeV2(t, "v3_services.json", "3.0.0") },
			Info{3, "3.0.0", "cheddar"}, []string{"/api/version"}},
		{"v3 dev build", func(t *testing.T) *fakeTraefik { return newFakeV2(t, "v3_services.json", "dev") },
			Info{2, "dev", "cheddar"}, []string{"/api/version", "/api/http/services?per_page=1"}},
		{"v1 without /api/version", func(t *testing.T) *fakeTraefik { f := newFakeV1(t); f.version = ""; return f },
			Info{Major: 1}, []string{"/api/version", "/api/http/services?per_page=1", "/api/providers"}},
		{"v1 dev build", func(t *testing.T) *fakeTraefik { f := newFakeV1(t); f.version = "dev"; return f },
			Info{1, "dev", "cheddar"}, []string{"/api/version", "/api/http/services?per_page=1", "/api/providers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := tc.fake(t)
			_, c := f.start(t, Config{})
			for range 2 { // the second call is served from the cache
				got, err := c.Info(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("Info() = %+v, want %+v", got, tc.want)
				}
			}
			if got := f.paths(); !reflect.DeepEqual(got, tc.paths) {
				t.Errorf("requests %q, want %q", got, tc.paths)
			}
		})
	}

	t.Run("not traefik", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		c, _ := New(Config{URL: srv.URL})
		_, err := c.Info(context.Background())
		if !errors.Is(err, ErrUnexpectedAnswer) || !strings.Contains(err.Error(), "--traefik-url") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestServices(t *testing.T) {
	for _, tc := range []struct {
		name string
		fake *fakeTraefik
		want []Service
	}{
		{"v1 real answer", newFakeV1(t), []Service{
			{"backend-backend1", "docker", []Server{{"http://172.18.0.3:80", ""}}},
			{"backend-reverse-proxy-traefik-demo", "docker", []Server{{"http://172.18.0.4:80", ""}}},
			{"backend-whoami-again-traefik-demo-backendsite1", "docker", []Server{{"http://172.18.0.2:80", ""}}},
		}},
		{"v2 skips internal and weighted, keeps DOWN and unused", newFakeV2(t, "v2_services.json", "v2.11.0"), []Service{
			{"unused@docker", "docker", []Server{{"http://172.18.0.7:8080", ""}}},
			{"web@docker", "docker", []Server{{"http://172.18.0.3:80", "UP"}, {"http://172.18.0.4:80", "DOWN"}}},
			{"whoami@docker", "docker", []Server{{"http://172.18.0.5:80", "UP"}}},
		}},
		{"v3 skips failover", newFakeV2(t, "v3_services.json", "v3.0.0"), []Service{
			{"app-blue@docker", "docker", []Server{{"http://10.42.0.3:80", "UP"}}},
			{"myapp@docker", "docker", []Server{{"http://10.42.0.4:3000", "UP"}, {"http://10.42.0.5:3000", "UP"}}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c := tc.fake.start(t, Config{})
			got, err := c.Services(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Services() =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestServicesPagination(t *testing.T) {
	f := newFakeV2(t, "v2_services.json", "v2.11.0") // 6 services
	_, c := f.start(t, Config{PageSize: 2})
	got, err := c.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "unused@docker" || got[2].Name != "whoami@docker" {
		t.Errorf("Services() = %+v", got)
	}
	want := []string{"/api/version",
		"/api/http/services?per_page=2&page=1",
		"/api/http/services?per_page=2&page=2",
		"/api/http/services?per_page=2&page=3"}
	if got := f.paths(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests %q\nwant %q", got, want)
	}
}

// TestPaginationKeepsEverything lists every v2/v3 fixture, the recorded real
// answers included, one service per page and in one page: same result.
func TestPaginationKeepsEverything(t *testing.T) {
	fixtures := []string{"v2_services.json", "v3_services.json"}
	for _, v := range recordedVersions {
		if _, err := os.Stat(filepath.Join("testdata", "recorded", v.prefix+"_services.json")); err == nil {
			fixtures = append(fixtures, "recorded/"+v.prefix+"_services.json")
		}
	}
	for _, fixture := range fixtures {
		t.Run(fixture, func(t *testing.T) {
			f := newFakeV2(t, fixture, "3.0.0")
			_, paged := f.start(t, Config{PageSize: 1})
			_, whole := f.start(t, Config{})
			got, err := paged.Services(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want, err := whole.Services(context.Background())
			if err != nil || len(want) == 0 {
				t.Fatal(want, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("one per page: %+v\nall at once: %+v", got, want)
			}
			if pages := len(f.paths()) - 2 - 1; pages != len(f.services) { // minus 2 version, 1 whole list
				t.Errorf("%d pages for %d services: %q", pages, len(f.services), f.paths())
			}
		})
	}
}

func TestServicesPaginationListShrinks(t *testing.T) {
	f := newFakeV2(t, "v2_services.json", "v2.11.0")
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// After the first page, Traefik drops four services: page 2 is past the end.
		if r.URL.Query().Get("page") == "1" && served.Add(1) == 1 {
			w.Header().Set("X-Next-Page", "2")
			f.ServeHTTP(w, r)
			f.services = f.services[:2]
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, _ := New(Config{URL: srv.URL, PageSize: 2})
	got, err := c.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 { // only api@internal and noop@internal are left
		t.Errorf("Services() = %+v", got)
	}
	if n := len(f.paths()); n != 4 {
		t.Errorf("requests %q: want version, page 1, page 2 (400), page 1", f.paths())
	}
}

func TestService(t *testing.T) {
	v1, v2, v3 := newFakeV1(t), newFakeV2(t, "v2_services.json", "v2.11.0"), newFakeV2(t, "v3_services.json", "v3.0.0")
	for _, tc := range []struct {
		name, service string
		fake          *fakeTraefik
		want          Service
		wantPath      string
		wantErr       error
	}{
		{"v2 qualified", "web@docker", v2,
			Service{"web@docker", "docker", []Server{{"http://172.18.0.3:80", "UP"}, {"http://172.18.0.4:80", "DOWN"}}},
			"/api/http/services/web@docker", nil},
		{"v2 unqualified means @docker", "whoami", v2,
			Service{"whoami@docker", "docker", []Server{{"http://172.18.0.5:80", "UP"}}},
			"/api/http/services/whoami@docker", nil},
		{"v2 unused has no status", "unused@docker", v2,
			Service{"unused@docker", "docker", []Server{{"http://172.18.0.7:8080", ""}}},
			"/api/http/services/unused@docker", nil},
		{"v2 unknown", "nope", v2, Service{}, "/api/http/services/nope@docker", ErrServiceNotFound},
		{"v2 name is path-escaped", "a/b?c@docker", v2, Service{}, "/api/http/services/a%2Fb%3Fc@docker", ErrServiceNotFound},
		{"v2 weighted has no servers", "weighted@file", v2, Service{}, "/api/http/services/weighted@file", ErrUnexpectedAnswer},
		{"v3", "myapp@docker", v3,
			Service{"myapp@docker", "docker", []Server{{"http://10.42.0.4:3000", "UP"}, {"http://10.42.0.5:3000", "UP"}}},
			"/api/http/services/myapp@docker", nil},
		{"v1", "backend-backend1", v1,
			Service{"backend-backend1", "docker", []Server{{"http://172.18.0.3:80", ""}}},
			"/api/providers/docker/backends/backend-backend1", nil},
		{"v1 without prefix", "backend1", v1,
			Service{"backend-backend1", "docker", []Server{{"http://172.18.0.3:80", ""}}},
			"/api/providers/docker/backends/backend-backend1", nil},
		{"v1 unknown", "backend-gone", v1, Service{}, "/api/providers/docker/backends/backend-gone", ErrServiceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := tc.fake.start(t, Config{})
			got, err := c.Service(context.Background(), tc.service)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Service() = %+v, want %+v", got, tc.want)
			}
			reqs := tc.fake.requests()
			if last := reqs[len(reqs)-1].URL.EscapedPath(); last != tc.wantPath {
				t.Errorf("asked %s, want %s", last, tc.wantPath)
			}
		})
	}
}

func TestServiceNotFoundAnswerIsTraefiks(t *testing.T) {
	// The fake's 404 must look like Traefik's for the test above to mean anything.
	f := newFakeV2(t, "v2_services.json", "v2.11.0")
	srv, _ := f.start(t, Config{})
	resp, err := http.Get(srv.URL + "/api/http/services/x@docker")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := make([]byte, 100)
	n, _ := resp.Body.Read(body)
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		string(body[:n]) != `{"message":"service not found: x@docker"}`+"\n" {
		t.Errorf("%d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body[:n])
	}
}

func TestFindByServerURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		fake *fakeTraefik
		url  string
		want []string
	}{
		{"v2 down server still listed", newFakeV2(t, "v2_services.json", "v2.11.0"), "HTTP://172.18.0.4/", []string{"web@docker"}},
		{"v2 absent", newFakeV2(t, "v2_services.json", "v2.11.0"), "http://172.18.0.9:80", nil},
		{"v1", newFakeV1(t), "http://172.18.0.2:80", []string{"backend-whoami-again-traefik-demo-backendsite1"}},
		{"v1 other port", newFakeV1(t), "http://172.18.0.2:8080", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := tc.fake.start(t, Config{})
			got, err := c.FindByServerURL(context.Background(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range got {
				names = append(names, s.Name)
			}
			if !reflect.DeepEqual(names, tc.want) {
				t.Errorf("FindByServerURL(%q) = %q, want %q", tc.url, names, tc.want)
			}
		})
	}
}

func TestServerMatchAndRegistered(t *testing.T) {
	s := Service{Servers: []Server{
		{"http://172.18.0.3:80", "UP"},
		{"http://[fd00::3]:8080/", "DOWN"},
		{"https://App.Internal", ""},
	}}
	for _, tc := range []struct {
		url        string
		found      bool
		registered bool
	}{
		{"http://172.18.0.3:80", true, true},
		{"http://172.18.0.3", true, true},
		{"http://172.18.0.3:80/", true, true},
		{" HTTP://172.18.0.3:80 ", true, true},
		{"https://172.18.0.3:80", false, false},
		{"http://172.18.0.3:8080", false, false},
		{"http://172.18.0.30:80", false, false},
		{"http://[FD00::3]:8080", true, false},
		{"https://app.internal:443/", true, true},
		{"", false, false},
	} {
		srv, found := s.Server(tc.url)
		if found != tc.found || srv.Registered() != tc.registered {
			t.Errorf("Server(%q) = %+v, %v; registered %v; want %v, %v", tc.url, srv, found, srv.Registered(), tc.found, tc.registered)
		}
	}
}

// statusServer answers each request with the next status in codes (the last
// one repeats) and counts requests.
func statusServer(t *testing.T, body string, codes ...int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		code := codes[min(i, len(codes)-1)]
		if r.URL.Path == "/api/version" && code == 200 {
			body := `{"Version":"v3.0.0","Codename":"beaufort","startDate":"2024-05-01T10:00:00Z"}`
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
			return
		}
		if code == 200 {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Next-Page", "1")
			_, _ = w.Write([]byte(body))
			return
		}
		apiError(w, http.StatusText(code), code)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestStatusHandling(t *testing.T) {
	web := `[{"loadBalancer":{"servers":[{"url":"http://10.0.0.2:80"}]},"name":"web@docker","provider":"docker"}]`
	for _, tc := range []struct {
		name     string
		codes    []int
		retryMax int
		wantErr  error
		wantHits int32
		wantText []string
	}{
		{"500 then 200 is retried", []int{500, 200}, 0, nil, 3, nil}, // version (500, 200), services
		{"502 503 504 then 200", []int{502, 503, 504, 200}, 0, nil, 5, nil},
		{"400 is not retried", []int{400}, 0, ErrUnexpectedAnswer, 1, []string{"400", "text/plain", "Bad Request"}},
		{"404 is not retried", []int{404}, 0, ErrUnexpectedAnswer, 3, []string{"serves neither"}}, // version, then probes
		{"401", []int{401}, 0, ErrUnauthorized, 1, []string{"401", "credentials", "none were given"}},
		{"403", []int{403}, 0, ErrUnauthorized, 1, []string{"403", "credentials"}},
		{"500 until the end", []int{500}, 2, ErrUnexpectedAnswer, 3, []string{"500"}},
		{"503 until the end", []int{503}, 2, ErrUnreachable, 3, []string{"503", "after 3 attempts", "--traefik-url"}},
		{"501 is not retried", []int{501}, 0, ErrUnexpectedAnswer, 1, nil},
		{"no retries", []int{500, 200}, -1, ErrUnexpectedAnswer, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, hits := statusServer(t, web, tc.codes...)
			c, _ := New(Config{URL: srv.URL, RetryMax: tc.retryMax})
			got, err := c.Services(context.Background())
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && (len(got) != 1 || got[0].Name != "web@docker") {
				t.Errorf("Services() = %+v", got)
			}
			if hits.Load() != tc.wantHits {
				t.Errorf("%d requests, want %d", hits.Load(), tc.wantHits)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if err != nil && !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("error %q does not name the URL", err)
			}
		})
	}
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	u := closedPortURL(t)
	c, err := New(Config{URL: strings.Replace(u, "://", "://deploy:hunter2secret@", 1) + "/traefik"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Services(context.Background())
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	// 4 retries: 100+200+400+800ms of backoff.
	if elapsed < 1400*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("took %v, want about 1.5s", elapsed)
	}
	msg := err.Error()
	for _, s := range []string{u + "/traefik/api/version", "connection refused", "after 5 attempts", "--traefik-url", "API is enabled"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not say %q", msg, s)
		}
	}
	if strings.Contains(msg, "hunter2secret") || strings.Contains(msg, "deploy") {
		t.Errorf("error %q shows the credentials", msg)
	}
}

func TestTimeoutIsUnreachable(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c, _ := New(Config{URL: srv.URL, RequestTimeout: 50 * time.Millisecond, RetryMax: 1})
	start := time.Now()
	_, err := c.Info(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v: %v", d, err)
	}
}

func TestContextCancelDuringBackoff(t *testing.T) {
	t.Parallel()
	// Tries at 0, 100ms, 300ms and 700ms, then a backoff of 800ms: the
	// cancel comes 50ms after the fourth answer, inside that backoff,
	// however slowly a busy machine serves the tries (a cancel at a fixed
	// time raced the fourth try under -race on a loaded machine).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hits atomic.Int32
	var cancelled atomic.Int64 // UnixNano of the cancel
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 4 {
			time.AfterFunc(50*time.Millisecond, func() {
				cancelled.Store(time.Now().UnixNano())
				cancel()
			})
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	c, _ := New(Config{URL: srv.URL})
	_, err := c.Services(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if at := cancelled.Load(); at == 0 {
		t.Errorf("returned before the cancel, after %d requests", hits.Load())
	} else if d := time.Since(time.Unix(0, at)); d > 400*time.Millisecond {
		t.Errorf("returned %v after the cancel, want right after it", d)
	}
	if n := hits.Load(); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

func TestContextCancelDuringRequest(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	c, _ := New(Config{URL: srv.URL, RequestTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Info(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v, want only context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

func TestBadBodies(t *testing.T) {
	version := `{"Version":"v2.11.0","Codename":"mimolette","startDate":"2024-05-01T10:00:00Z"}`
	for _, tc := range []struct {
		name, path, contentType, body string
		call                          func(*Client) error
		wantText                      []string
	}{
		{"garbage", "/api/http/services", "application/json", "\x00\x01garbage\xff\xfe\x1b[31m", services,
			[]string{"no JSON", "garbage", "application/json"}},
		{"truncated", "/api/http/services", "application/json", `[{"loadBalancer":{"servers":[{"url":"http://10.0.0.2:80"}`, services,
			[]string{"truncated", `[{\"loadBalancer\"`}},
		{"html", "/api/http/services", "text/html; charset=utf-8", "<!DOCTYPE html><html><head><title>Traefik</title></head><body>" + strings.Repeat("x", 1000), services,
			[]string{"HTML", "text/html", "<!DOCTYPE html>", "..."}},
		{"empty", "/api/http/services", "", "", services, []string{"empty body", "content type none"}},
		{"object instead of array", "/api/http/services", "application/json", `{"services":[]}`, services,
			[]string{"not an array"}},
		{"null list", "/api/http/services", "application/json", `null`, services, []string{"not an array"}},
		{"servers as object", "/api/http/services", "application/json", `[{"name":"a@docker","loadBalancer":{"servers":{"x":{"url":"http://a"}}}}]`, services,
			[]string{"another schema"}},
		{"no names", "/api/http/services", "application/json", `[{"loadBalancer":{"servers":[]}}]`, services,
			[]string{"without a name"}},
		{"trailing garbage", "/api/http/services", "application/json", `[] []`, services, []string{"invalid"}},
		{"service is array", "/api/http/services/web@docker", "application/json", `[]`, service,
			[]string{"not an object"}},
		{"version is html", "/api/version", "text/html", "<html>login</html>", services, []string{"no version JSON", "text/html"}},
		// An API that answers {} everywhere must not pass for a Traefik v1
		// without backends.
		{"version without a version", "/api/version", "application/json", `{}`, services, []string{"without a Traefik version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case tc.path:
					if tc.contentType != "" {
						w.Header().Set("Content-Type", tc.contentType)
					} else {
						w.Header()["Content-Type"] = nil
					}
					_, _ = w.Write([]byte(tc.body))
				case "/api/version":
					_, _ = w.Write([]byte(version))
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			c, _ := New(Config{URL: srv.URL})
			err := tc.call(c)
			if !errors.Is(err, ErrUnexpectedAnswer) {
				t.Fatalf("err = %v, want ErrUnexpectedAnswer", err)
			}
			msg := err.Error()
			for _, s := range append(tc.wantText, srv.URL+tc.path) {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not say %q", msg, s)
				}
			}
			if strings.ContainsAny(msg, "\x00\x1b\n") || len(msg) > 700 {
				t.Errorf("error not sanitized or too long (%d): %q", len(msg), msg)
			}
		})
	}
}

func services(c *Client) error { _, err := c.Services(context.Background()); return err }
func service(c *Client) error  { _, err := c.Service(context.Background(), "web@docker"); return err }

func TestHugeBody(t *testing.T) { // not parallel: it hogs the CPU that timing tests need
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/version" {
			_, _ = w.Write([]byte(`{"Version":"v3.0.0"}`))
			return
		}
		chunk := []byte("[" + strings.Repeat(`{"name":"a@docker"},`, 1<<14))
		for r.Context().Err() == nil && written.Load() < 1<<30 { // endless, up to 1 GiB
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	// Reading 32 MiB takes seconds under -race on a busy host (CI runs it at
	// the lowest priority beside the end-to-end tests): the limit under test
	// is the size, not the per-attempt timeout.
	c, _ := New(Config{URL: srv.URL, RequestTimeout: 2 * time.Minute})
	_, err := c.Services(context.Background())
	if !errors.Is(err, ErrUnexpectedAnswer) || !strings.Contains(err.Error(), "more than 32 MiB") {
		t.Errorf("err = %v", err)
	}
	if n := written.Load(); n > 256<<20 {
		t.Errorf("server wrote %d MiB before the client gave up", n>>20)
	}
}

func TestBasePath(t *testing.T) {
	for _, v := range []*fakeTraefik{newFakeV1(t), newFakeV2(t, "v3_services.json", "v3.3.0")} {
		v.basePath = "/traefik"
		srv, _ := v.start(t, Config{})
		c, err := New(Config{URL: srv.URL + "/traefik/"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Services(context.Background())
		if err != nil || len(got) == 0 {
			t.Fatalf("Services() = %v, %v", got, err)
		}
		if _, err := c.Service(context.Background(), got[0].Name); err != nil {
			t.Error(err)
		}
		for _, p := range v.paths() {
			if !strings.HasPrefix(p, "/traefik/api/") {
				t.Errorf("request to %s", p)
			}
		}
	}
}

func TestAuthAndHeaders(t *testing.T) {
	f := newFakeV2(t, "v2_services.json", "v2.11.0")
	guard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "deploy" || pass != "s3cret:pass" || r.Header.Get("X-Api-Token") != "tok-123" ||
			r.Host != "traefik.internal" || !strings.Contains(r.Header.Get("Accept"), "application/json") {
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		f.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(guard)
	defer srv.Close()
	headers := http.Header{"X-Api-Token": {"tok-123"}, "Host": {"traefik.internal"}}

	c, _ := New(Config{URL: srv.URL, Username: "deploy", Password: "s3cret:pass", Headers: headers})
	if _, err := c.Service(context.Background(), "web"); err != nil {
		t.Errorf("with credentials: %v", err)
	}
	c, _ = New(Config{URL: strings.Replace(srv.URL, "://", "://deploy:s3cret%3Apass@", 1), Headers: headers})
	if _, err := c.Services(context.Background()); err != nil {
		t.Errorf("with credentials in the URL: %v", err)
	}
	c, _ = New(Config{URL: srv.URL, Username: "deploy", Password: "wrong-password", Headers: headers})
	_, err := c.Services(context.Background())
	if !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "wrong-password") || strings.Contains(err.Error(), "none were given") {
		t.Errorf("err = %v", err)
	}
}

func writeCAFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLS(t *testing.T) {
	f := newFakeV2(t, "v3_services.json", "v3.0.0")
	srv := httptest.NewUnstartedServer(f)
	var handshakeErrors atomic.Int32
	srv.Config.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "TLS handshake error") {
			handshakeErrors.Add(1)
		}
		return len(p), nil
	}), "", 0)
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()

	t.Run("unknown CA", func(t *testing.T) {
		c, _ := New(Config{URL: srv.URL})
		start := time.Now()
		_, err := c.Services(ctx)
		if !errors.Is(err, ErrTLS) || !errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v", err)
		}
		for _, s := range []string{"--traefik-ca", "--traefik-insecure", srv.URL} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
		// The server logs the failed handshake when the client hangs up:
		// on a loaded machine (CI's -race run) later than 50 ms. Wait for
		// the first, then long enough for a retry's to show too.
		for deadline := time.Now().Add(5 * time.Second); handshakeErrors.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		if n := handshakeErrors.Load(); n != 1 {
			t.Errorf("%d handshakes failed in %v: certificate errors must not be retried", n, time.Since(start))
		}
	})
	t.Run("CAFile", func(t *testing.T) {
		c, err := New(Config{URL: srv.URL, CAFile: writeCAFile(t, srv)})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Services(ctx); err != nil || len(got) != 2 {
			t.Errorf("Services() = %v, %v", got, err)
		}
	})
	t.Run("Insecure", func(t *testing.T) {
		c, _ := New(Config{URL: srv.URL, Insecure: true})
		if got, err := c.Services(ctx); err != nil || len(got) != 2 {
			t.Errorf("Services() = %v, %v", got, err)
		}
	})
	t.Run("bad CAFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ca.pem")
		_ = os.WriteFile(path, []byte("not a certificate"), 0o600)
		if _, err := New(Config{URL: srv.URL, CAFile: path}); err == nil || !strings.Contains(err.Error(), "--traefik-ca") {
			t.Errorf("err = %v", err)
		}
		if _, err := New(Config{URL: srv.URL, CAFile: path + ".missing"}); err == nil || !strings.Contains(err.Error(), "--traefik-ca") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("https to a plain http server", func(t *testing.T) {
		plain := httptest.NewServer(f)
		defer plain.Close()
		c, _ := New(Config{URL: strings.Replace(plain.URL, "http://", "https://", 1)})
		_, err := c.Services(ctx)
		if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "http://") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestNoSecretsInErrors drives every error path with credentials set, against
// servers that echo what they received, and checks no error shows them.
func TestNoSecretsInErrors(t *testing.T) {
	const user, pass, token = "deploy-user-7f3", "pass-9a1c-secret", "token-4c2b8e"
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	secrets := []string{user, pass, token, basic}
	echo := func(code int, contentType string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/api/version" && code != 401 && code != 500 {
				_, _ = w.Write([]byte(`{"Version":"v3.0.0"}`))
				return
			}
			w.Header().Set("Content-Type", contentType+"; "+r.Header.Get("X-Token"))
			w.WriteHeader(code)
			_, _ = w.Write([]byte("<html>" + r.Header.Get("Authorization") + " " + r.Header.Get("X-Token") + " " + user + " " + pass + "</html>"))
		}
	}
	var errs []error
	for _, h := range []http.HandlerFunc{echo(200, "text/html"), echo(401, "text/plain"), echo(404, "text/html"), echo(500, "text/html"), echo(400, "text/html")} {
		srv := httptest.NewServer(h)
		for _, userinfo := range []bool{false, true} {
			cfg := Config{URL: srv.URL, Username: user, Password: pass, Headers: http.Header{"X-Token": {token}}, RetryMax: -1}
			if userinfo {
				cfg = Config{URL: strings.Replace(srv.URL, "://", "://"+user+":"+pass+"@", 1), Headers: cfg.Headers, RetryMax: -1}
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Services(context.Background())
			errs = append(errs, err)
			_, err = c.Service(context.Background(), "web")
			errs = append(errs, err)
		}
		srv.Close()
	}
	tlsSrv := httptest.NewUnstartedServer(echo(200, "text/html"))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	for _, u := range []string{tlsSrv.URL, closedPortURL(t)} {
		c, _ := New(Config{URL: strings.Replace(u, "://", "://"+user+":"+pass+"@", 1), Headers: http.Header{"X-Token": {token}}, RetryMax: -1})
		_, err := c.Info(context.Background())
		errs = append(errs, err)
	}
	for _, bad := range []string{"ftp://" + user + ":" + pass + "@h", user + ":" + pass + "@h:1", "http://" + user + ":" + pass + "@h h"} {
		_, err := New(Config{URL: bad})
		errs = append(errs, err)
	}
	for _, err := range errs {
		if err == nil {
			t.Error("an error case gave no error")
			continue
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error shows %q: %v", s, err)
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestServerStatusKeyedByParsedURL(t *testing.T) {
	body := `{"loadBalancer":{"servers":[{"url":"HTTP://10.0.0.2"},{"url":"http://10.0.0.3:80"}]},` +
		`"serverStatus":{"http://10.0.0.2":"DOWN","http://10.0.0.3:80":"UP"},"name":"web@docker"}`
	s, lb, err := decodeServiceV2([]byte(body))
	if err != nil || !lb {
		t.Fatal(err)
	}
	want := []Server{{"HTTP://10.0.0.2", "DOWN"}, {"http://10.0.0.3:80", "UP"}}
	if !reflect.DeepEqual(s.Servers, want) || s.Provider != "docker" {
		t.Errorf("got %+v", s)
	}
}
