package deploy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// DockerVersion is what the Docker engine says of itself (GET /version).
type DockerVersion struct {
	Version       string // "29.0.0", "20.10.24+dfsg1"
	MinAPIVersion string // "1.44"; "" when the engine does not say
}

// DockerVersioner is implemented by a Runtime that can tell which Docker
// engine it talks to. Only check uses it; a Runtime without it is fine.
type DockerVersioner interface {
	DockerVersion(ctx context.Context) (DockerVersion, error)
}

// TraefikVersioner is implemented by a Router that can tell Traefik's
// version (/api/version: "3.6.15", "v1.7.34", "dev").
type TraefikVersioner interface {
	TraefikVersion(ctx context.Context) (string, error)
}

// traefikOldDockerAPI is the Docker API version the docker provider of
// Traefik before v3.6.1 / v2.11.31 asks for (traefik#12253: "client
// version 1.24 is too old. Minimum supported API version is 1.44").
// Docker 29 refuses it unless its daemon's DOCKER_MIN_API_VERSION lowers
// the minimum; Traefik v3.6.1 and v2.11.31 negotiate instead.
const traefikOldDockerAPI = "1.24"

// traefikTooOldForDocker reports whether Traefik (its /api/version) cannot
// list containers on the Docker engine d: Docker 29 or newer whose minimum
// API version is above the one Traefik before v3.6.1 / v2.11.31 asks for.
// Unknown versions ("dev", "") are not reported: check says nothing it
// cannot back.
func traefikTooOldForDocker(d DockerVersion, traefik string) bool {
	dv, ok := parseRelease(d.Version)
	if !ok || dv.num[0] < 29 {
		return false
	}
	if d.MinAPIVersion != "" {
		minAPI, ok := parseRelease(d.MinAPIVersion)
		old, _ := parseRelease(traefikOldDockerAPI)
		if !ok || !old.less(minAPI) {
			return false // the daemon's minimum was lowered: old Traefik works
		}
	}
	tv, ok := parseRelease(traefik)
	if !ok {
		return false
	}
	switch tv.num[0] {
	case 1:
		return true // Traefik v1 was never fixed
	case 2:
		return tv.less(release{num: [3]int{2, 11, 31}})
	case 3:
		return tv.less(release{num: [3]int{3, 6, 1}})
	}
	return false // v4 and later came after the fix
}

// release is a version "v3.6.1", "3.6.1-rc1", "2.11", "29.0.0+dfsg1".
type release struct {
	num [3]int
	pre bool // a pre-release (-rc1, -beta) comes before its release
}

func parseRelease(s string) (release, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	s, _, _ = strings.Cut(s, "+") // build metadata: not part of the order
	s, pre, isPre := strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return release{}, false
	}
	var r release
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return release{}, false
		}
		r.num[i] = n
	}
	r.pre = isPre && pre != ""
	return r, true
}

func (r release) less(o release) bool {
	for i := range r.num {
		if r.num[i] != o.num[i] {
			return r.num[i] < o.num[i]
		}
	}
	return r.pre && !o.pre
}

// versionFindings asks Docker and Traefik for their versions (when the
// Runtime and Router can tell) and reports a Traefik whose docker provider
// cannot talk to this Docker engine: it then lists no container at all,
// and every rollout fails at the register phase.
func (e *Engine) versionFindings(ctx context.Context) []Finding {
	dv, ok1 := e.Runtime.(DockerVersioner)
	tv, ok2 := e.Router.(TraefikVersioner)
	if !ok1 || !ok2 {
		return nil
	}
	d, err := dv.DockerVersion(ctx)
	if err != nil {
		return nil
	}
	t, err := tv.TraefikVersion(ctx)
	if err != nil || !traefikTooOldForDocker(d, t) {
		return nil
	}
	minAPI := d.MinAPIVersion
	if minAPI == "" {
		minAPI = "1.44"
	}
	fixed := "v3.6.1"
	if r, _ := parseRelease(t); r.num[0] == 2 {
		fixed = "v2.11.31 (or v3.6.1)"
	}
	return []Finding{{
		Code: FindingTraefikTooOldForDocker,
		Problem: fmt.Sprintf("Traefik %s cannot talk to Docker %s: its docker provider asks for Docker API %s and this engine's minimum is %s (traefik#12253), so Traefik lists no container and every rollout fails waiting for Traefik",
			t, d.Version, traefikOldDockerAPI, minAPI),
		Fix: fmt.Sprintf("upgrade Traefik to %s or newer (its docker provider negotiates the API version)", fixed),
	}}
}
