package traefikapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// LabelEndpoint reads Traefik's docker labels as Traefik's docker
// provider does: v2/v3 server port and scheme, v1 port and protocol, else
// the lowest exposed port over http; the network label; the services the
// labels name.
func TestLabelEndpoint(t *testing.T) {
	ports := []int{80, 8080}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		ports  []int
		want   deploy.Endpoint
		err    string
	}{
		{name: "no labels: the lowest exposed port", ports: ports, want: deploy.Endpoint{Scheme: "http", Port: 80}},
		{name: "v2 port, scheme and network", ports: ports,
			labels: map[string]string{labelNetwork: "a", "traefik.http.services.s.loadbalancer.server.port": "9000", "traefik.http.services.s.loadbalancer.server.scheme": "HTTPS"},
			want:   deploy.Endpoint{Scheme: "https", Port: 9000, Network: "a", Services: []string{"s@docker"}}},
		{name: "v1 port and protocol", ports: ports,
			labels: map[string]string{labelV1Port: "81", labelV1Protocol: "h2c", labelV1Backend: "my_app.v1"},
			want:   deploy.Endpoint{Scheme: "h2c", Port: 81, Services: []string{"backend-my-app-v1"}}},
		{name: "two v2 services: the first one's port",
			labels: map[string]string{"traefik.http.services.b.loadbalancer.server.port": "82", "traefik.http.services.a.loadbalancer.server.port": "81"},
			want:   deploy.Endpoint{Scheme: "http", Port: 81, Services: []string{"a@docker", "b@docker"}}},
		{name: "not a port", labels: map[string]string{"traefik.http.services.s.loadbalancer.server.port": "web", labelNetwork: "n"},
			want: deploy.Endpoint{Scheme: "http", Network: "n", Services: []string{"s@docker"}}, err: "is not a port number"},
		{name: "no port at all", labels: map[string]string{labelNetwork: "n"},
			want: deploy.Endpoint{Scheme: "http", Network: "n"}, err: "exposes no port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LabelEndpoint(deploy.Container{Name: "x", Labels: tc.labels, Ports: tc.ports})
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if got.Scheme != tc.want.Scheme || got.Port != tc.want.Port || got.Network != tc.want.Network || !slices.Equal(got.Services, tc.want.Services) {
				t.Errorf("LabelEndpoint = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// copyRecorder is a deploy.Runtime that records CopyFiles.
type copyRecorder struct {
	deploy.Runtime
	ids   []string
	files [][]deploy.File
	err   error
}

func (r *copyRecorder) CopyFiles(_ context.Context, id string, files []deploy.File) error {
	r.ids, r.files = append(r.ids, id), append(r.files, files)
	return r.err
}

// ReadFile implements deploy.FileReader: the last file copied to path.
func (r *copyRecorder) ReadFile(_ context.Context, id, path string) ([]byte, error) {
	for i := len(r.files) - 1; i >= 0; i-- {
		for _, f := range r.files[i] {
			if r.ids[i] == id && f.Path == path {
				return f.Data, nil
			}
		}
	}
	return nil, deploy.ErrContainerNotFound
}

// The docker provider drains and restores through the probe's marker,
// one CopyFiles call each, and keeps a missing container the engine's
// ErrContainerNotFound.
func TestDockerProviderDrain(t *testing.T) {
	rt := &copyRecorder{}
	p := DockerProvider{Runtime: rt}
	c := deploy.Container{ID: "c1"}
	if err := p.Drain(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if drained, err := p.Drained(context.Background(), c); !drained || err != nil {
		t.Errorf("after Drain: drained %v, %v", drained, err)
	}
	if err := p.Restore(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if drained, err := p.Drained(context.Background(), c); drained || err != nil {
		t.Errorf("after Restore: drained %v, %v", drained, err)
	}
	if len(rt.files) != 2 || rt.ids[0] != "c1" || len(rt.files[0]) != 1 || rt.files[0][0].Path != deploy.MarkerPath ||
		string(rt.files[0][0].Data) != deploy.MarkerDrain || string(rt.files[1][0].Data) != deploy.MarkerServe {
		t.Errorf("copies %q %+v", rt.ids, rt.files)
	}
	rt.err = deploy.ErrContainerNotFound
	if err := p.Drain(context.Background(), c); !errors.Is(err, deploy.ErrContainerNotFound) {
		t.Errorf("missing container: %v", err)
	}
	if p.Propagation() != DefaultThrottle || (DockerProvider{Throttle: time.Millisecond}).Propagation() != time.Millisecond {
		t.Errorf("propagation %s", p.Propagation())
	}
}
