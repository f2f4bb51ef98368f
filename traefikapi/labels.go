package traefikapi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/deploy"
)

// Traefik labels read to work out how Traefik's docker provider reaches a
// container (moved here from the engine: the engine asks the router,
// deploy.Router.Endpoint).
const (
	labelNetwork     = "traefik.docker.network"
	labelV1Port      = "traefik.port"
	labelV1Protocol  = "traefik.protocol"
	labelV1Backend   = "traefik.backend"
	prefixV2Services = "traefik.http.services."
)

// LabelEndpoint is how Traefik's docker provider reaches a container of c's
// configuration: the service's server.port/scheme labels (v2/v3),
// traefik.port/protocol (v1), else the lowest exposed port over http; the
// traefik.docker.network label; the services its labels name. It is
// deploy.Router.Endpoint for every router that reads Traefik's docker
// labels.
func LabelEndpoint(c deploy.Container) (deploy.Endpoint, error) {
	ep := deploy.Endpoint{Scheme: "http", Network: c.Labels[labelNetwork], Services: labelServices(c.Labels)}
	portLabel, schemeLabel := "", ""
	portKey := labelV1Port
	for _, name := range v2ServiceNames(c.Labels) {
		if p := c.Labels[prefixV2Services+name+".loadbalancer.server.port"]; p != "" && portLabel == "" {
			portLabel, portKey = p, prefixV2Services+name+".loadbalancer.server.port"
		}
		if s := c.Labels[prefixV2Services+name+".loadbalancer.server.scheme"]; s != "" && schemeLabel == "" {
			schemeLabel = s
		}
	}
	if portLabel == "" {
		portLabel = c.Labels[labelV1Port]
	}
	if schemeLabel == "" {
		schemeLabel = c.Labels[labelV1Protocol]
	}
	if schemeLabel != "" {
		ep.Scheme = strings.ToLower(schemeLabel)
	}
	if portLabel != "" {
		p, err := strconv.Atoi(portLabel)
		if err != nil || p <= 0 || p > 65535 {
			return ep, fmt.Errorf("label %s=%q is not a port number (1-65535)", portKey, portLabel)
		}
		ep.Port = p
		return ep, nil
	}
	if len(c.Ports) == 0 {
		return ep, fmt.Errorf("container %s exposes no port and has no traefik.http.services.<name>.loadbalancer.server.port label, so Traefik cannot route to it", c.Short())
	}
	ep.Port = c.Ports[0] // ascending: the lowest, as Traefik picks
	return ep, nil
}

// v2ServiceNames lists the service names declared in traefik.http.services.*
// labels, sorted.
func v2ServiceNames(labels map[string]string) []string {
	seen := map[string]bool{}
	for k := range labels {
		if rest, ok := strings.CutPrefix(k, prefixV2Services); ok {
			if name, _, ok := strings.Cut(rest, "."); ok && name != "" {
				seen[name] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// labelServices are the services a container's labels name, as Traefik
// lists them: "<name>@docker" for v2/v3, else "backend-<name>" for v1.
func labelServices(labels map[string]string) []string {
	var out []string
	for _, n := range v2ServiceNames(labels) {
		out = append(out, n+"@docker")
	}
	if b := labels[labelV1Backend]; len(out) == 0 && b != "" {
		out = append(out, "backend-"+normalizeV1(b))
	}
	return out
}

// normalizeV1 is Traefik v1's name normalisation: runs of characters other
// than letters and digits become a single '-'.
func normalizeV1(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}
