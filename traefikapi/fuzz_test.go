package traefikapi

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

var updateCorpus = flag.Bool("update-fuzz-corpus", false, "rewrite testdata/fuzz/FuzzDecodeServices from the JSON fixtures")

const corpusDir = "testdata/fuzz/FuzzDecodeServices"

// FuzzDecodeServices feeds any bytes to every decoder: none may panic, and
// whatever they accept must be usable. Its seed corpus (corpusDir, checked
// by TestFuzzCorpusMatchesFixtures) runs with plain `go test`.
func FuzzDecodeServices(f *testing.F) {
	// The recorded real answers are added here rather than copied into
	// corpusDir, so re-recording them needs no corpus update.
	recorded, _ := filepath.Glob("testdata/recorded/*_service*.json")
	for _, path := range recorded {
		body, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
		f.Add(body[:len(body)/2])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		list, err := decodeServicesV2(body)
		checkDecoded(t, list, err)
		one, _, err := decodeServiceV2(body)
		checkDecoded(t, []Service{one}, err)
		list, err = decodeBackendsV1(body)
		checkDecoded(t, list, err)
		one, err = decodeBackendV1("backend-web", body)
		checkDecoded(t, []Service{one}, err)

		s := sanitize(string(body), 200)
		if len(s) > 203 || !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			t.Errorf("sanitize gave %q", s)
		}
		_ = normalizeURL(string(body))
	})
}

func checkDecoded(t *testing.T, services []Service, err error) {
	t.Helper()
	if err != nil {
		if msg := err.Error(); len(msg) > 300 || !utf8.ValidString(msg) {
			t.Errorf("error too long or not UTF-8: %q", msg)
		}
		return
	}
	for _, s := range services {
		if s.Name == "" {
			t.Errorf("service without a name: %+v", s)
		}
		for _, srv := range s.Servers {
			if got, ok := s.Server(srv.URL); !ok || got.URL == "" {
				t.Errorf("service %q: server %q not found by its own URL", s.Name, srv.URL)
			}
		}
	}
}

// corpusSeeds are the fixtures, whole and cut short, plus a few odd shapes.
func corpusSeeds(t *testing.T) map[string][]byte {
	t.Helper()
	seeds := map[string][]byte{
		"empty":        {},
		"null":         []byte("null"),
		"html":         []byte("<!DOCTYPE html><html><body>404 page not found</body></html>"),
		"not_found":    []byte(`{"message":"service not found: web@docker"}` + "\n"),
		"v1_null_srv":  []byte(`{"backend-web":null,"backend-x":{"servers":null},"backend-y":{"servers":{"s":{"url":""}}}}`),
		"v2_one":       []byte(`{"loadBalancer":{"servers":[{"url":"http://10.0.0.2:80"},{"url":"HTTP://10.0.0.2"}]},"serverStatus":{"http://10.0.0.2:80":"DOWN"},"name":"web@docker"}`),
		"v2_bad_types": []byte(`[{"name":1,"loadBalancer":{"servers":[{"url":[]}]},"serverStatus":[]}]`),
	}
	fixtures, _ := filepath.Glob("testdata/*.json")
	for _, path := range fixtures {
		body := readFixture(t, filepath.Base(path))
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		seeds[name] = body
		seeds[name+"_truncated"] = body[:len(body)/2]
	}
	return seeds
}

func corpusFile(body []byte) []byte {
	return []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(body)) + ")\n")
}

// TestFuzzCorpusMatchesFixtures keeps the fuzz seed corpus in step with the
// fixtures; -update-fuzz-corpus rewrites it.
func TestFuzzCorpusMatchesFixtures(t *testing.T) {
	seeds := corpusSeeds(t)
	if *updateCorpus { // other files there are crashers the fuzzer found: keep them
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range seeds {
		path := filepath.Join(corpusDir, name)
		if *updateCorpus {
			if err := os.WriteFile(path, corpusFile(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, corpusFile(body)) {
			t.Errorf("%s is missing or stale: run go test ./traefikapi -run TestFuzzCorpusMatchesFixtures -update-fuzz-corpus", path)
		}
	}
}
