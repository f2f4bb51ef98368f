package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestTraefikTooOldForDocker(t *testing.T) {
	docker29 := DockerVersion{Version: "29.0.0", MinAPIVersion: "1.44"}
	cases := []struct {
		docker  DockerVersion
		traefik string
		want    bool
	}{
		// Traefik's releases either side of the fix, as /api/version says them.
		{docker29, "3.6.0", true},
		{docker29, "3.6.1", false},
		{docker29, "v3.6.1", false},
		{docker29, "3.6.15", false},
		{docker29, "3.7.0", false},
		{docker29, "3.0.0", true},
		{docker29, "3.5.9", true},
		{docker29, "2.11.30", true},
		{docker29, "2.11.31", false},
		{docker29, "v2.11.0", true},
		{docker29, "2.10.7", true},
		{docker29, "2.12.0", false},
		{docker29, "4.0.0", false},
		// v1 was never fixed.
		{docker29, "v1.7.34", true},
		{docker29, "1.7", true},
		// A release candidate of the fixed version comes before it.
		{docker29, "3.6.1-rc1", true},
		{docker29, "3.6.2-rc1", false},
		{docker29, "2.11.31-rc.2", true},
		// Unknown versions are not reported: check says nothing it cannot back.
		{docker29, "dev", false},
		{docker29, "", false},
		{docker29, "3", false},
		{docker29, "three.six.one", false},
		// Docker before 29 accepts API 1.24.
		{DockerVersion{Version: "28.5.1", MinAPIVersion: "1.24"}, "3.0.0", false},
		{DockerVersion{Version: "20.10.24+dfsg1", MinAPIVersion: "1.12"}, "2.11.0", false},
		// Docker 29 whose daemon minimum was lowered back to 1.24.
		{DockerVersion{Version: "29.1.3", MinAPIVersion: "1.24"}, "3.0.0", false},
		// Later Docker releases, pre-releases and builds; no minimum reported.
		{DockerVersion{Version: "29.0.0-rc.1", MinAPIVersion: "1.44"}, "3.6.0", true},
		{DockerVersion{Version: "30.0.0+dfsg1", MinAPIVersion: "1.44"}, "2.11.30", true},
		{DockerVersion{Version: "29.0.0"}, "3.0.0", true},
		{DockerVersion{Version: "dev"}, "3.0.0", false},
		{DockerVersion{}, "3.0.0", false},
	}
	for _, tc := range cases {
		if got := traefikTooOldForDocker(tc.docker, tc.traefik); got != tc.want {
			t.Errorf("Docker %s (min API %q), Traefik %q: %v, want %v", tc.docker.Version, tc.docker.MinAPIVersion, tc.traefik, got, tc.want)
		}
	}
}

// versioned adds the optional version interfaces to the fake world.
type versionedRuntime struct {
	Runtime
	v   DockerVersion
	err error
}

func (r versionedRuntime) DockerVersion(context.Context) (DockerVersion, error) { return r.v, r.err }

type versionedRouter struct {
	Router
	v string
}

func (r versionedRouter) TraefikVersion(context.Context) (string, error) { return r.v, nil }

func TestCheckWarnsTraefikTooOldForDocker(t *testing.T) {
	cases := []struct {
		docker   DockerVersion
		err      error
		traefik  string
		wantFind bool
		fix      string
	}{
		{DockerVersion{Version: "29.0.0", MinAPIVersion: "1.44"}, nil, "3.0.0", true, "upgrade Traefik to v3.6.1 or newer"},
		{DockerVersion{Version: "29.0.0", MinAPIVersion: "1.44"}, nil, "2.11.0", true, "upgrade Traefik to v2.11.31 (or v3.6.1) or newer"},
		{DockerVersion{Version: "29.0.0", MinAPIVersion: "1.44"}, nil, "3.6.15", false, ""},
		{DockerVersion{Version: "20.10.24", MinAPIVersion: "1.12"}, nil, "3.0.0", false, ""},
		// Docker cannot say: no finding, the rest of check goes on.
		{DockerVersion{}, errors.New("boom"), "3.0.0", false, ""},
	}
	for _, tc := range cases {
		w := newWorld()
		w.addImage("web:v1", nil)
		c := w.addRunning("web-v1", "v1", true)
		c.Labels[LabelImage] = "web"
		e, _ := engine(w)
		e.Runtime = versionedRuntime{e.Runtime, tc.docker, tc.err}
		e.Router = versionedRouter{e.Router, tc.traefik}
		findings, err := e.Check(context.Background(), Options{App: "web", Probes: testOptions("v1").Probes})
		if err != nil {
			t.Fatal(err)
		}
		var got *Finding
		for i := range findings {
			if findings[i].Code == FindingTraefikTooOldForDocker {
				got = &findings[i]
			}
		}
		if (got != nil) != tc.wantFind {
			t.Errorf("Docker %s, Traefik %s: findings %+v, want %s: %v", tc.docker.Version, tc.traefik, findings, FindingTraefikTooOldForDocker, tc.wantFind)
			continue
		}
		if got == nil {
			continue
		}
		for _, want := range []string{"Traefik " + tc.traefik, "Docker " + tc.docker.Version, "traefik#12253", "API 1.24", "minimum is 1.44"} {
			if !strings.Contains(got.Problem, want) {
				t.Errorf("problem %q lacks %q", got.Problem, want)
			}
		}
		if !strings.Contains(got.Fix, tc.fix) {
			t.Errorf("fix %q lacks %q", got.Fix, tc.fix)
		}
		if findings[0].Code != FindingTraefikTooOldForDocker {
			t.Errorf("the version finding is not first: %+v", findings)
		}
	}
}
