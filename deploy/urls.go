package deploy

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// A container's server URLs: the router says the scheme, the port and
// maybe the network (Router.Endpoint, from the container's configuration);
// Docker says the container's address on each network. How the router
// reads the configuration (Traefik's labels) is the adapter's, in
// traefikapi.

// endpointOf is a router's Endpoint method (Router.Endpoint).
type endpointOf func(Container) (Endpoint, error)

// candidateURLs returns the server URL of c on each network the router may
// use for it: the network its configuration names (Endpoint.Network), else
// network (what the user told us the router uses), else every network the
// container is on. Keys are network names.
func candidateURLs(endpoint endpointOf, c Container, network string) (map[string]string, error) {
	ep, err := endpoint(c)
	if err != nil {
		return nil, err
	}
	if ep.Network != "" {
		network = ep.Network
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

// checkNetwork fails when c is not attached to the network the router
// reaches it on (its configuration's, else network if set). It needs no
// IP addresses, so it works before the container starts.
func checkNetwork(endpoint endpointOf, c Container, network string) error {
	if ep, _ := endpoint(c); ep.Network != "" {
		network = ep.Network
	}
	if _, ok := c.Networks[network]; network == "" || ok {
		return nil
	}
	return &notOnNetworkError{container: c.Short(), network: network, on: sortedKeys(c.Networks)}
}

// serverURLs are c's possible server URLs on every network it is on.
func serverURLs(endpoint endpointOf, c Container) []string {
	ep, err := endpoint(c)
	if err != nil {
		return nil
	}
	var urls []string
	for _, n := range sortedKeys(c.Networks) {
		if ip := c.Networks[n]; ip != "" {
			urls = append(urls, ep.Scheme+"://"+net.JoinHostPort(ip, strconv.Itoa(ep.Port)))
		}
	}
	return urls
}

// notOnNetworkError: the container is not attached to the network the
// router reaches it on.
type notOnNetworkError struct {
	container, network string
	on                 []string
}

func (e *notOnNetworkError) Error() string {
	return fmt.Sprintf("container %s is not on network %q, the one the router uses for it (it is on: %s)", e.container, e.network, strings.Join(e.on, ", "))
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
