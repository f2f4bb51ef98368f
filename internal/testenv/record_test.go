package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

// TestRecordTraefikAPI records real answers of every pinned Traefik version
// into traefikapi/testdata/recorded (see the README there). It only runs
// with DEPLOYCTL_RECORD=1:
//
//	DEPLOYCTL_RECORD=1 go test ./internal/testenv -run TestRecordTraefikAPI -v
//
// The web service has three app containers with identical Traefik labels,
// including a Traefik health check on /health every second:
//
//	up:        Docker HEALTHCHECK, healthy          -> listed, serverStatus UP
//	down:      no Docker HEALTHCHECK, NEVER_HEALTHY -> listed, serverStatus DOWN
//	unhealthy: Docker HEALTHCHECK, NEVER_HEALTHY    -> Docker says unhealthy, absent
func TestRecordTraefikAPI(t *testing.T) {
	if os.Getenv("DEPLOYCTL_RECORD") != "1" {
		t.Skip("a recorder of fixtures, not a test; set DEPLOYCTL_RECORD=1 to run it")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "traefikapi", "testdata", "recorded")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cli := Docker(t)
	for _, v := range TraefikVersions {
		t.Run(v, func(t *testing.T) {
			net := Network(t, cli)
			tr := StartTraefik(t, v, net)

			labels := TraefikLabels("web", 8080)
			labels["traefik.http.services.web.loadbalancer.healthcheck.path"] = "/health"
			labels["traefik.http.services.web.loadbalancer.healthcheck.interval"] = "1s"
			labels["traefik.http.services.web.loadbalancer.healthcheck.timeout"] = "1s"
			dockerHC := &Healthcheck{Interval: 500 * time.Millisecond, Timeout: time.Second, Retries: 2}
			upImg := AppImage(t, cli, AppImageOptions{Tag: "up", Version: "up", Healthcheck: dockerHC})
			downImg := AppImage(t, cli, AppImageOptions{Tag: "down", Version: "down", Env: map[string]string{"NEVER_HEALTHY": "1"}})
			unhImg := AppImage(t, cli, AppImageOptions{Tag: "unhealthy", Version: "unhealthy", Healthcheck: dockerHC, Env: map[string]string{"NEVER_HEALTHY": "1"}})

			up := StartContainer(t, cli, ContainerOptions{Image: upImg, Network: net, Labels: labels, Name: uniqueName("web-up-")})
			down := StartContainer(t, cli, ContainerOptions{Image: downImg, Network: net, Labels: labels, Name: uniqueName("web-down-")})
			unh := StartContainer(t, cli, ContainerOptions{Image: unhImg, Network: net, Labels: labels, Name: uniqueName("web-unhealthy-")})
			WaitHealth(t, cli, up, container.Healthy, 30*time.Second)
			WaitHealth(t, cli, unh, container.Unhealthy, 30*time.Second)
			upURL := "http://" + ContainerIP(t, cli, up, net) + ":8080"
			downURL := "http://" + ContainerIP(t, cli, down, net) + ":8080"
			unhURL := "http://" + ContainerIP(t, cli, unh, net) + ":8080"
			tr.WaitService(t, "web@docker", 60*time.Second, func(s *Service) bool {
				return s != nil && len(s.ServerURLs()) == 2 && s.ServerStatus[upURL] == "UP" && s.ServerStatus[downURL] == "DOWN"
			})
			// The unhealthy container must still be absent after a while.
			time.Sleep(2 * time.Second)
			s, err := tr.HTTPService("web@docker")
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range s.ServerURLs() {
				if u == unhURL {
					t.Fatalf("unhealthy container %s is listed: %v", unhURL, s.ServerURLs())
				}
			}

			var nServices int
			{
				_, body, err := tr.API("/api/http/services")
				if err != nil {
					t.Fatal(err)
				}
				var l []json.RawMessage
				if err := json.Unmarshal([]byte(body), &l); err != nil {
					t.Fatal(err)
				}
				nServices = len(l)
			}
			requests := []struct{ name, path string }{
				{"version", "/api/version"},
				{"overview", "/api/overview"},
				{"rawdata", "/api/rawdata"},
				{"services", "/api/http/services"},
				{"service_web", "/api/http/services/web@docker"},
				{"service_nope", "/api/http/services/nope@docker"},
				{"routers", "/api/http/routers"},
				{"router_web", "/api/http/routers/web@docker"},
				{"services_page1", "/api/http/services?per_page=1&page=1"},
				{"services_page_last", "/api/http/services?per_page=1&page=" + strconv.Itoa(nServices)},
				{"services_page_beyond", "/api/http/services?per_page=1&page=" + strconv.Itoa(nServices+1)},
				{"routers_page1", "/api/http/routers?per_page=1&page=1"},
				{"services_search", "/api/http/services?search=web"},
			}
			for _, r := range requests {
				status, body, hdr, err := GetWithHeaders(tr.APIURL+r.path, "")
				if err != nil {
					t.Fatal(err)
				}
				base := filepath.Join(out, v+"_"+r.name)
				if err := os.WriteFile(base+".json", []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(base+".headers.txt", []byte(formatHeaders(r.path, status, hdr)), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %d %s X-Next-Page=%q", r.path, status, hdr.Get("Content-Type"), hdr.Get("X-Next-Page"))
			}
			setup := fmt.Sprintf(`Recorded by internal/testenv TestRecordTraefikAPI (DEPLOYCTL_RECORD=1) at %s
Traefik %s, started as: %s %s
Docker network: %s (the provider's network)

Service web@docker, three containers with the same labels:
%s
up         %s  Docker HEALTHCHECK healthy                 -> listed, serverStatus UP
down       %s  no Docker HEALTHCHECK, /health always 503  -> listed, serverStatus DOWN (Traefik health check)
unhealthy  %s  Docker HEALTHCHECK unhealthy               -> not listed (Docker provider skips it)
`, time.Now().UTC().Format(time.RFC3339), v, filepath.Base(tr.Binary), strings.Join(tr.Args, " "), net,
				formatLabels(labels), upURL, downURL, unhURL)
			if err := os.WriteFile(filepath.Join(out, v+"_setup.txt"), []byte(setup), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func formatLabels(m map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(&b, "  %s=%s\n", k, m[k])
	}
	return b.String()
}

// formatHeaders renders a response head: "GET <path>", "HTTP <status>",
// then the headers sorted by name.
func formatHeaders(path string, status int, h http.Header) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s\nHTTP %d %s\n", path, status, http.StatusText(status))
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return b.String()
}
