package traefikapi

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/deployctl/deployctl/deploy"
)

// The adapter gives the engine Traefik's services with statuses upper case
// (Server.Registered reads "DOWN"), for v1's backends too.
func TestRouterServices(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fake    *fakeTraefik
		service string
		want    deploy.Service
	}{
		{"v2", newFakeV2(t, "v2_services.json", "v2.11.0"), "web@docker",
			deploy.Service{Name: "web@docker", Servers: []deploy.Server{{URL: "http://172.18.0.3:80", Status: "UP"}, {URL: "http://172.18.0.4:80", Status: "DOWN"}}}},
		{"v2 without status", newFakeV2(t, "v2_services.json", "v2.11.0"), "unused@docker",
			deploy.Service{Name: "unused@docker", Servers: []deploy.Server{{URL: "http://172.18.0.7:8080", Status: ""}}}},
		{"v1", newFakeV1(t), "backend-backend1",
			deploy.Service{Name: "backend-backend1", Servers: []deploy.Server{{URL: "http://172.18.0.3:80", Status: ""}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := tc.fake.start(t, Config{})
			r := c.Router()
			got, err := r.Service(context.Background(), tc.service)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Service(%q) = %+v, want %+v", tc.service, got, tc.want)
			}
			all, err := r.Services(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, s := range all {
				if s.Name == tc.want.Name {
					found = reflect.DeepEqual(s, tc.want)
				}
			}
			if !found {
				t.Errorf("Services() = %+v: lacks %+v", all, tc.want)
			}
			v, err := r.TraefikVersion(context.Background())
			if err != nil || v != tc.fake.version {
				t.Errorf("TraefikVersion() = %q, %v; want %q", v, err, tc.fake.version)
			}
		})
	}
}

// Each of the client's errors also matches the engine's sentinel of its
// kind: the engine waits for a missing service, gives up at once (exit 4)
// on an unreachable Traefik, and says what to do about credentials and
// certificates. Text is not repeated ("unreachable: traefik API
// unreachable").
func TestRouterErrorKinds(t *testing.T) {
	tlsSrv := httptest.NewUnstartedServer(newFakeV2(t, "v3_services.json", "v3.0.0"))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	denied, _ := statusServer(t, "", http.StatusUnauthorized)
	cases := []struct {
		name      string
		url       string
		fake      *fakeTraefik
		service   string
		wantKinds []error
		notKinds  []error
	}{
		{name: "missing service", fake: newFakeV2(t, "v3_services.json", "v3.0.0"), service: "nope@docker",
			wantKinds: []error{ErrServiceNotFound, deploy.ErrServiceNotFound}, notKinds: []error{deploy.ErrUnreachable}},
		{name: "refused", url: closedPortURL(t), service: "web@docker",
			wantKinds: []error{ErrUnreachable, deploy.ErrUnreachable}, notKinds: []error{deploy.ErrServiceNotFound, deploy.ErrTraefikTLS}},
		{name: "untrusted certificate", url: tlsSrv.URL, service: "web@docker",
			wantKinds: []error{ErrTLS, deploy.ErrUnreachable, deploy.ErrTraefikTLS}},
		{name: "credentials refused", url: denied.URL, service: "web@docker",
			wantKinds: []error{ErrUnauthorized, deploy.ErrTraefikCredentials}, notKinds: []error{deploy.ErrUnreachable}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *Client
			if tc.fake != nil {
				_, c = tc.fake.start(t, Config{})
			} else {
				var err error
				if c, err = New(Config{URL: tc.url, RetryMax: -1}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := c.Router().Service(context.Background(), tc.service)
			if err == nil {
				t.Fatal("no error")
			}
			for _, k := range tc.wantKinds {
				if !errors.Is(err, k) {
					t.Errorf("%v: does not match %v", err, k)
				}
			}
			for _, k := range tc.notKinds {
				if errors.Is(err, k) {
					t.Errorf("%v: matches %v", err, k)
				}
			}
			_, raw := c.Service(context.Background(), tc.service)
			if err.Error() != raw.Error() {
				t.Errorf("the adapter changed the text:\n%s\nwant\n%s", err, raw)
			}
		})
	}
}
