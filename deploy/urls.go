package deploy

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Traefik labels the engine reads to work out a container's server URL the
// way Traefik's docker provider does.
const (
	labelTraefikNetwork = "traefik.docker.network"
	labelV1Port         = "traefik.port"
	labelV1Protocol     = "traefik.protocol"
	labelV1Backend      = "traefik.backend"
	prefixV2Services    = "traefik.http.services."
)

// endpoint is where Traefik reaches a container: scheme and port, on one
// of its networks.
type endpoint struct {
	Scheme string
	Port   int
}

// traefikEndpoint works out the scheme and port Traefik uses for c: the
// service's server.port/scheme labels (v2/v3), traefik.port/protocol (v1),
// else the lowest exposed port over http, as Traefik's docker provider does.
func traefikEndpoint(c Container) (endpoint, error) {
	ep := endpoint{Scheme: "http"}
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

// serviceFromLabels guesses the Traefik service name a container's labels
// put it in, for a first deploy when there is no running container to look
// up in Traefik: "<name>@docker" for v2/v3, "backend-<name>" for v1.
func serviceFromLabels(labels map[string]string) string {
	if names := v2ServiceNames(labels); len(names) == 1 {
		return names[0] + "@docker"
	}
	if b := labels[labelV1Backend]; b != "" {
		return "backend-" + normalizeV1(b)
	}
	return ""
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

// candidateURLs returns the server URL of c on each network Traefik may use
// for it: the traefik.docker.network label, else network (what the user told
// us Traefik uses), else every network the container is on. Keys are network
// names.
func candidateURLs(c Container, network string) (map[string]string, error) {
	ep, err := traefikEndpoint(c)
	if err != nil {
		return nil, err
	}
	if n := c.Labels[labelTraefikNetwork]; n != "" {
		network = n
	}
	urls := map[string]string{}
	for name, ip := range c.Networks {
		if ip == "" || (network != "" && name != network) {
			continue
		}
		urls[name] = ep.Scheme + "://" + net.JoinHostPort(ip, strconv.Itoa(ep.Port))
	}
	if len(urls) == 0 {
		nets := sortedKeys(c.Networks)
		if network != "" {
			return nil, &notOnNetworkError{container: c.Short(), network: network, on: nets}
		}
		return nil, fmt.Errorf("container %s has no IP address on any network (networks: %s)", c.Short(), strings.Join(nets, ", "))
	}
	return urls, nil
}

// checkNetwork fails when c is not attached to the network Traefik reaches
// it on (the traefik.docker.network label, else network if set). It needs
// no IP addresses, so it works before the container starts.
func checkNetwork(c Container, network string) error {
	if n := c.Labels[labelTraefikNetwork]; n != "" {
		network = n
	}
	if _, ok := c.Networks[network]; network == "" || ok {
		return nil
	}
	return &notOnNetworkError{container: c.Short(), network: network, on: sortedKeys(c.Networks)}
}

// notOnNetworkError: the container is not attached to the network Traefik
// reaches it on.
type notOnNetworkError struct {
	container, network string
	on                 []string
}

func (e *notOnNetworkError) Error() string {
	return fmt.Sprintf("container %s is not on network %q, the one Traefik uses for it (it is on: %s)", e.container, e.network, strings.Join(e.on, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sameURL compares server URLs the way Traefik would route them: scheme and
// host case-insensitively, a trailing slash ignored.
func sameURL(a, b string) bool {
	return normalizeURL(a) == normalizeURL(b)
}

func normalizeURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return strings.ToLower(strings.TrimSuffix(s, "/"))
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimSuffix(u.Path, "/")
}
