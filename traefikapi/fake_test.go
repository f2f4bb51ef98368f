package traefikapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeTraefik answers like Traefik's API handlers do (pkg/api in v2/v3,
// api/handler.go in v1.7): same routes, pagination, status codes and bodies.
type fakeTraefik struct {
	major    int    // 1, or 2/3 for the /api/http routes
	version  string // /api/version "Version"; "" answers 404
	basePath string
	services []json.RawMessage // v2/v3 service objects, in Traefik's order
	backends []byte            // v1 /api/providers/docker/backends answer

	mu   sync.Mutex
	reqs []*http.Request
}

func newFakeV1(t *testing.T) *fakeTraefik {
	t.Helper()
	return &fakeTraefik{major: 1, version: "v1.7.34", backends: readFixture(t, "v1_backends.json")}
}

func newFakeV2(t *testing.T, fixture, version string) *fakeTraefik {
	t.Helper()
	var list []json.RawMessage
	if err := json.Unmarshal(readFixture(t, fixture), &list); err != nil {
		t.Fatalf("fixture %s: %v", fixture, err)
	}
	return &fakeTraefik{major: majorVersion(version), version: version, services: list}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start serves f on a loopback httptest server and returns a client for it.
func (f *fakeTraefik) start(t *testing.T, cfg Config) (*httptest.Server, *Client) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg.URL = srv.URL + f.basePath
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func (f *fakeTraefik) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...)
}

func (f *fakeTraefik) paths() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r.URL.RequestURI())
	}
	return out
}

func (f *fakeTraefik) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()

	path, ok := strings.CutPrefix(r.URL.EscapedPath(), f.basePath)
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if path == "/api/version" && f.version != "" {
		v := map[string]any{"Version": f.version, "Codename": "cheddar"}
		if f.major > 1 {
			v["startDate"] = "2024-05-01T10:00:00Z"
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_ = json.NewEncoder(w).Encode(v)
		return
	}
	if f.major == 1 {
		f.serveV1(w, r, path)
		return
	}
	f.serveV2(w, r, path)
}

func (f *fakeTraefik) serveV1(w http.ResponseWriter, r *http.Request, path string) {
	writeJSON := func(v any) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_ = json.NewEncoder(w).Encode(v)
	}
	var backends map[string]json.RawMessage
	if err := json.Unmarshal(f.backends, &backends); err != nil {
		panic(err)
	}
	switch {
	case path == "/api/providers":
		writeJSON(map[string]any{"docker": map[string]any{"backends": backends}})
	case path == "/api/providers/docker/backends":
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = w.Write(f.backends)
	case strings.HasPrefix(path, "/api/providers/docker/backends/"):
		name, _ := url.PathUnescape(strings.TrimPrefix(path, "/api/providers/docker/backends/"))
		if b, ok := backends[name]; ok {
			writeJSON(b)
			return
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

// apiError is how Traefik v2/v3 writes errors: JSON in a text/plain answer.
func apiError(w http.ResponseWriter, msg string, code int) {
	b, _ := json.Marshal(map[string]string{"message": msg})
	http.Error(w, string(b), code)
}

func (f *fakeTraefik) serveV2(w http.ResponseWriter, r *http.Request, path string) {
	switch {
	case path == "/api/http/services":
		perPage, err1 := intParam(r, "per_page", 100)
		page, err2 := intParam(r, "page", 1)
		if err1 != nil || err2 != nil {
			apiError(w, "invalid request", http.StatusBadRequest)
			return
		}
		list := f.services
		if search := strings.ToLower(r.URL.Query().Get("search")); search != "" {
			list = nil
			for _, raw := range f.services {
				var s struct{ Name string }
				_ = json.Unmarshal(raw, &s)
				if strings.Contains(strings.ToLower(s.Name), search) {
					list = append(list, raw)
				}
			}
		}
		start := (page - 1) * perPage
		if start != 0 && start >= len(list) {
			apiError(w, fmt.Sprintf("invalid request: page: %d, per_page: %d", page, perPage), http.StatusBadRequest)
			return
		}
		end := min(start+perPage, len(list))
		next := 1
		if page*perPage < len(list) {
			next = page + 1
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Next-Page", strconv.Itoa(next))
		_ = json.NewEncoder(w).Encode(append([]json.RawMessage{}, list[start:end]...))
	case strings.HasPrefix(path, "/api/http/services/"):
		name, _ := url.PathUnescape(strings.TrimPrefix(path, "/api/http/services/"))
		w.Header().Add("Content-Type", "application/json")
		for _, raw := range f.services {
			var s struct{ Name string }
			_ = json.Unmarshal(raw, &s)
			if s.Name == name {
				_, _ = w.Write(append(raw, '\n'))
				return
			}
		}
		apiError(w, "service not found: "+name, http.StatusNotFound)
	default:
		http.NotFound(w, r)
	}
}

func intParam(r *http.Request, key string, def int) (int, error) {
	raw := r.URL.Query().Get(key)
	if raw == "" {
		return def, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("invalid %s", key)
	}
	return v, nil
}
