package traefikapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Real answers of Traefik v2.11.0, v3.0.0 and v3.6.15, recorded by
// internal/testenv (see testdata/recorded/*_setup.txt): name.json is the
// body, name.headers.txt holds "GET <uri>", "HTTP <code> <text>" and the
// answer's headers. v3.6.15 answers like v3.0.0 but for a
// loadBalancer.strategy ("wrr") and serverStatus after type.
var recordedVersions = []struct{ prefix, version, codename string }{
	{"v2.11.0", "2.11.0", "mimolette"},
	{"v3.0.0", "3.0.0", "beaufort"},
	{"v3.6.15", "3.6.15", "ramequin"},
}

type recording struct {
	name   string
	uri    string // canonical, see canonicalURI
	status int
	header http.Header
	body   []byte
}

func loadRecordings(t *testing.T, prefix string) map[string]recording {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "recorded", prefix+"_*.headers.txt"))
	if len(files) == 0 {
		t.Fatalf("no recorded answers for Traefik %s in testdata/recorded (DEPLOYCTL_RECORD=1 go test ./internal/testenv -run TestRecordTraefikAPI records them)", prefix)
	}
	recs := map[string]recording{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".headers.txt")
		head, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		body, err := os.ReadFile(strings.TrimSuffix(f, ".headers.txt") + ".json")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(head))
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		method, uri, _ := strings.Cut(lines[0], " ")
		fields := strings.Fields(lines[1])
		if method != http.MethodGet || len(fields) < 2 {
			t.Fatalf("%s: unexpected header file", f)
		}
		status, _ := strconv.Atoi(fields[1])
		rec := recording{name: name, uri: canonicalURI(t, uri), status: status, header: http.Header{}, body: body}
		for _, l := range lines[2:] {
			if k, v, ok := strings.Cut(l, ": "); ok {
				rec.header.Add(k, v)
			}
		}
		recs[rec.uri] = rec
	}
	return recs
}

// canonicalURI drops query parameters that equal Traefik's defaults
// (per_page=100, page=1), so "?per_page=100&page=1" replays "/api/http/services".
func canonicalURI(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("per_page") == "100" {
		q.Del("per_page")
	}
	if q.Get("page") == "1" {
		q.Del("page")
	}
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

// replay serves the recordings as they were answered; anything else fails the test.
func replay(t *testing.T, recs map[string]recording) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, ok := recs[canonicalURI(t, r.URL.RequestURI())]
		if !ok {
			t.Errorf("no recorded answer for %s", r.URL.RequestURI())
			http.NotFound(w, r)
			return
		}
		for k, vs := range rec.header {
			if k != "Date" && k != "Content-Length" {
				w.Header()[k] = vs
			}
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRecordedAnswers(t *testing.T) {
	for _, v := range recordedVersions {
		t.Run(v.prefix, func(t *testing.T) {
			srv := replay(t, loadRecordings(t, v.prefix))
			c, err := New(Config{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()

			info, err := c.Info(ctx)
			if want := (Info{majorVersion(v.version), v.version, v.codename}); err != nil || info != want {
				t.Errorf("Info() = %+v, %v; want %+v", info, err, want)
			}

			// The setup: web@docker has one server UP, one DOWN (Traefik's
			// health check), and leaves out the container Docker finds unhealthy.
			all, err := c.Services(ctx)
			if err != nil || len(all) != 1 || all[0].Name != "web@docker" || all[0].Provider != "docker" {
				t.Fatalf("Services() = %+v, %v; want only web@docker", all, err)
			}
			web, err := c.Service(ctx, "web")
			if err != nil || !reflect.DeepEqual(web, all[0]) {
				t.Errorf("Service(web) = %+v, %v; want %+v", web, err, all[0])
			}
			var up, down int
			for _, s := range web.Servers {
				if s.Registered() {
					up++
				} else if s.Status == "DOWN" {
					down++
				}
			}
			if len(web.Servers) != 2 || up != 1 || down != 1 {
				t.Errorf("servers %+v: want one UP, one DOWN", web.Servers)
			}
			found, err := c.FindByServerURL(ctx, web.Servers[0].URL+"/")
			if err != nil || len(found) != 1 {
				t.Errorf("FindByServerURL = %+v, %v", found, err)
			}

			_, err = c.Service(ctx, "nope")
			if !errors.Is(err, ErrServiceNotFound) {
				t.Errorf("Service(nope) err = %v", err)
			}
		})
	}
}

// TestFakeMatchesRecorded checks that fakeTraefik, which the other tests use
// for pagination, 404s and 400s, answers like the real Traefik did.
func TestFakeMatchesRecorded(t *testing.T) {
	for _, v := range recordedVersions {
		t.Run(v.prefix, func(t *testing.T) {
			recs := loadRecordings(t, v.prefix)
			f := newFakeV2(t, "recorded/"+v.prefix+"_services.json", v.version)
			srv, _ := f.start(t, Config{})
			checked := 0
			for _, rec := range recs {
				if !strings.HasPrefix(rec.uri, "/api/http/services") && rec.uri != "/api/version" {
					continue
				}
				checked++
				resp, err := http.Get(srv.URL + rec.uri)
				if err != nil {
					t.Fatal(err)
				}
				var body bytes.Buffer
				_, _ = body.ReadFrom(resp.Body)
				resp.Body.Close()
				for _, k := range []string{"Content-Type", "X-Next-Page", "X-Content-Type-Options"} {
					if got, want := resp.Header.Get(k), rec.header.Get(k); got != want {
						t.Errorf("%s: %s %q, Traefik said %q", rec.name, k, got, want)
					}
				}
				if resp.StatusCode != rec.status {
					t.Errorf("%s: status %d, Traefik said %d", rec.name, resp.StatusCode, rec.status)
				}
				if rec.uri != "/api/version" && !jsonEqual(body.Bytes(), rec.body) {
					t.Errorf("%s: body\n%s\nTraefik said\n%s", rec.name, body.Bytes(), rec.body)
				}
			}
			if checked < 5 {
				t.Errorf("only %d recordings checked", checked)
			}
		})
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
