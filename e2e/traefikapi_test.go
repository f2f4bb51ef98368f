package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/internal/testenv"
	"github.com/deployctl/deployctl/traefikapi"
)

// TestTraefikAPIClient runs the traefikapi client against a real Traefik
// process (v3.6.15; v3.0.0 under TestCoreOnTraefikV3_0_0) watching a real Docker network: version detection,
// listing, lookup by name and by server URL, unknown services, and a server
// going away. It lives here, with the end-to-end tests, rather than in
// traefikapi/: it needs Docker and a Traefik build (many minutes on a fresh
// machine), and `go test ./traefikapi/` is unit tests only.
// TestTraefikAPIClientTraefikV2 (traefikv2_test.go) is the same against
// v2.11.0.
func TestTraefikAPIClient(t *testing.T) {
	testTraefikAPIClient(t, traefikFor(t))
}

func testTraefikAPIClient(t *testing.T, version string) {
	cli := testenv.Docker(t)
	network := testenv.Network(t, cli)
	tr := testenv.StartTraefik(t, version, network, testenv.WithLogLevel("INFO"))
	img := testenv.AppImage(t, cli, testenv.AppImageOptions{Tag: "v1", Version: "v1"})
	id := testenv.StartContainer(t, cli, testenv.ContainerOptions{Image: img, Network: network, Labels: testenv.TraefikLabels("live", 8080)})
	url := "http://" + testenv.ContainerIP(t, cli, id, network) + ":8080"

	c, err := traefikapi.New(traefikapi.Config{URL: tr.APIURL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.Major != int(version[1]-'0') || "v"+info.Version != version {
		t.Fatalf("Info: %+v %v", info, err)
	}

	var svc traefikapi.Service
	deadline := time.Now().Add(20 * time.Second)
	for {
		svc, err = c.Service(ctx, "live@docker")
		if err == nil {
			if s, ok := svc.Server(url); ok && s.Registered() {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service live@docker never listed %s: %+v %v", url, svc, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if unq, err := c.Service(ctx, "live"); err != nil || unq.Name != "live@docker" {
		t.Errorf("unqualified name: %+v %v", unq, err)
	}
	found, err := c.FindByServerURL(ctx, url)
	if err != nil || len(found) != 1 || found[0].Name != "live@docker" {
		t.Errorf("FindByServerURL: %+v %v", found, err)
	}
	all, err := c.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if len(s.Servers) == 0 {
			t.Errorf("Services lists %s without servers", s.Name)
		}
	}
	if _, err := c.Service(ctx, "nope@docker"); !errors.Is(err, traefikapi.ErrServiceNotFound) {
		t.Errorf("unknown service: %v", err)
	}

	// Stop the container: the service disappears from Traefik.
	if _, err := cli.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err = c.Service(ctx, "live@docker")
		if errors.Is(err, traefikapi.ErrServiceNotFound) {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("service still there after stop: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
