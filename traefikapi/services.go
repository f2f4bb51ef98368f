package traefikapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Server is one server (container) of a service, as Traefik sees it.
type Server struct {
	URL string
	// Status is "UP" or "DOWN" (Traefik v2/v3), or "" when Traefik gives
	// none: always on v1, and on v2/v3 for a service no router uses.
	Status string
}

// Registered reports whether Traefik lists the server and does not hold it
// DOWN. A DOWN server stays listed, but gets no traffic.
func (s Server) Registered() bool {
	return s.URL != "" && !strings.EqualFold(s.Status, "DOWN")
}

// Service is one HTTP service (v1: backend) with its servers.
type Service struct {
	Name     string // as Traefik names it: "web@docker" (v2/v3), "backend-web" (v1)
	Provider string // "docker", "file", ...
	Servers  []Server
}

// Server finds the server with the given URL, compared by scheme, host
// (case-insensitive) and port (80/443 when absent), ignoring a trailing slash.
func (s Service) Server(serverURL string) (Server, bool) {
	want := normalizeURL(serverURL)
	for _, srv := range s.Servers {
		if normalizeURL(srv.URL) == want {
			return srv, true
		}
	}
	return Server{}, false
}

// Info is what Traefik says about itself.
type Info struct {
	// Major is the API generation: 1 (/api/providers) or 2 and up
	// (/api/http/...). v2 and v3 serve the same API; a build without a
	// release version ("dev") that serves it reports 2.
	Major    int
	Version  string // e.g. "3.0.0", "2.11.0", "v1.7.34", "dev"; "" when Traefik does not say
	Codename string
}

// Info asks Traefik for its version (/api/version, which v1.7 serves too)
// and, if that gives no release number, tells v1 from v2/v3 by the routes
// it answers. The first success is cached.
func (c *Client) Info(ctx context.Context) (Info, error) {
	c.mu.Lock()
	cached := c.info
	c.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	info, err := c.detect(ctx)
	if err != nil {
		return Info{}, err
	}
	c.mu.Lock()
	c.info = &info
	c.mu.Unlock()
	return info, nil
}

func (c *Client) detect(ctx context.Context) (Info, error) {
	var info Info
	a, err := c.get(ctx, "/api/version")
	if err != nil {
		return Info{}, err
	}
	switch a.status {
	case http.StatusOK:
		var v struct{ Version, Codename string }
		if err := json.Unmarshal(a.body, &v); err != nil {
			return Info{}, a.unexpected(c, "no version JSON ("+jsonProblem(err)+")")
		}
		info = Info{Major: majorVersion(v.Version), Version: v.Version, Codename: v.Codename}
		if info.Major > 0 {
			return info, nil
		}
		if v.Version == "" {
			// Every Traefik that serves /api/version (v1.7 on) names its
			// version there (a dev build says "dev": probed below).
			return Info{}, a.unexpected(c, "JSON without a Traefik version (another API, or an unexpected schema)")
		}
	case http.StatusNotFound:
		// Traefik before v1.7 may lack /api/version: probe below.
	default:
		return Info{}, a.unexpected(c, "an error")
	}

	for _, p := range []struct {
		major int
		path  string
		open  byte
	}{
		{2, "/api/http/services?per_page=1", '['},
		{1, "/api/providers", '{'},
	} {
		a, err := c.get(ctx, p.path)
		if err != nil {
			return Info{}, err
		}
		if a.status == http.StatusOK && json.Valid(a.body) && bytes.HasPrefix(bytes.TrimSpace(a.body), []byte{p.open}) {
			info.Major = p.major
			return info, nil
		}
	}
	return Info{}, fmt.Errorf("%w: %s serves neither Traefik's v2/v3 API (/api/http/services) nor its v1 API (/api/providers); is --traefik-url Traefik's API entrypoint, with its base path?",
		ErrUnexpectedAnswer, c.base)
}

// majorVersion reads 2 from "v2.11.0" or "2.11"; 0 if there is no number.
func majorVersion(v string) int {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexByte(v, '.'); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// Services lists every HTTP service that load-balances over servers:
// internal services (api@internal, ...) and weighted/mirroring/failover
// services are left out. v1 lists the docker provider's backends.
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Major == 1 {
		return c.backendsV1(ctx)
	}
	return c.servicesV2(ctx)
}

// Service returns one service by the name Traefik gives it. On v2/v3 a name
// without "@provider" means name@docker; on v1 a name without "backend-"
// means backend-name. Unknown names give ErrServiceNotFound; so does a
// service whose last server left, as Traefik then drops the service itself.
func (c *Client) Service(ctx context.Context, name string) (Service, error) {
	if strings.TrimSpace(name) == "" {
		return Service{}, fmt.Errorf("%w: empty service name", ErrServiceNotFound)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return Service{}, err
	}
	if info.Major == 1 {
		if !strings.HasPrefix(name, "backend-") {
			name = "backend-" + name
		}
		return c.backendV1(ctx, name)
	}
	if !strings.Contains(name, "@") {
		name += "@docker"
	}
	return c.serviceV2(ctx, name)
}

// Servers returns the servers of the named service (see Service).
func (c *Client) Servers(ctx context.Context, service string) ([]Server, error) {
	s, err := c.Service(ctx, service)
	return s.Servers, err
}

// FindByServerURL returns the services that have a server with that URL
// (compared as in Service.Server). None is not an error.
func (c *Client) FindByServerURL(ctx context.Context, serverURL string) ([]Service, error) {
	if strings.TrimSpace(serverURL) == "" {
		return nil, errors.New("traefikapi: empty server URL")
	}
	all, err := c.Services(ctx)
	if err != nil {
		return nil, err
	}
	var found []Service
	for _, s := range all {
		if _, ok := s.Server(serverURL); ok {
			found = append(found, s)
		}
	}
	return found, nil
}

const maxPages = 10000

func (c *Client) servicesV2(ctx context.Context) ([]Service, error) {
	var (
		all      []Service
		seen     = map[string]bool{}
		restarts int
	)
	for page := 1; ; {
		a, err := c.get(ctx, fmt.Sprintf("/api/http/services?per_page=%d&page=%d", c.pageSize, page))
		if err != nil {
			return nil, err
		}
		if a.status == http.StatusBadRequest && page > 1 && restarts < 3 {
			// Traefik answers 400 for a page past the end: services went
			// away between two pages. Start over.
			restarts++
			page, all, seen = 1, nil, map[string]bool{}
			continue
		}
		if a.status != http.StatusOK {
			return nil, a.unexpected(c, "an error")
		}
		services, err := decodeServicesV2(a.body)
		if err != nil {
			return nil, a.unexpected(c, err.Error())
		}
		for _, s := range services {
			if !seen[s.Name] { // a service may shift pages if one appeared meanwhile
				seen[s.Name] = true
				all = append(all, s)
			}
		}
		// X-Next-Page is "1" on the last page (and absent before pagination existed).
		next, err := strconv.Atoi(a.header.Get("X-Next-Page"))
		if err != nil || next <= page {
			return all, nil
		}
		if next > maxPages {
			return nil, a.unexpected(c, fmt.Sprintf("X-Next-Page %d, more than %d pages", next, maxPages))
		}
		page = next
	}
}

func (c *Client) serviceV2(ctx context.Context, name string) (Service, error) {
	a, err := c.get(ctx, "/api/http/services/"+url.PathEscape(name))
	if err != nil {
		return Service{}, err
	}
	switch a.status {
	case http.StatusOK:
	case http.StatusNotFound:
		return Service{}, fmt.Errorf("%w: Traefik has no HTTP service %q (%s lists them; names look like web@docker)",
			ErrServiceNotFound, name, c.base+"/api/http/services")
	default:
		return Service{}, a.unexpected(c, "an error")
	}
	s, lb, err := decodeServiceV2(a.body)
	if err != nil {
		return Service{}, a.unexpected(c, err.Error())
	}
	if !lb {
		// Not ErrServiceNotFound: callers take that to mean "its servers are gone".
		return Service{}, fmt.Errorf("%w: Traefik's service %q has no load balancer with servers (an internal, weighted, mirroring or failover service?); name the service the containers are in",
			ErrUnexpectedAnswer, name)
	}
	return s, nil
}

func (c *Client) backendsV1(ctx context.Context) ([]Service, error) {
	a, err := c.get(ctx, "/api/providers/docker/backends")
	if err != nil {
		return nil, err
	}
	switch a.status {
	case http.StatusOK:
	case http.StatusNotFound:
		// v1 answers 404 until the docker provider sent a first configuration.
		return nil, nil
	default:
		return nil, a.unexpected(c, "an error")
	}
	services, err := decodeBackendsV1(a.body)
	if err != nil {
		return nil, a.unexpected(c, err.Error())
	}
	return services, nil
}

func (c *Client) backendV1(ctx context.Context, name string) (Service, error) {
	a, err := c.get(ctx, "/api/providers/docker/backends/"+url.PathEscape(name))
	if err != nil {
		return Service{}, err
	}
	switch a.status {
	case http.StatusOK:
	case http.StatusNotFound:
		return Service{}, fmt.Errorf("%w: Traefik has no docker backend %q (%s lists them)",
			ErrServiceNotFound, name, c.base+"/api/providers/docker/backends")
	default:
		return Service{}, a.unexpected(c, "an error")
	}
	s, err := decodeBackendV1(name, a.body)
	if err != nil {
		return Service{}, a.unexpected(c, err.Error())
	}
	return s, nil
}

// v2/v3 JSON, trimmed to what we read.
type serviceV2 struct {
	Name         string `json:"name"`
	Provider     string `json:"provider"`
	LoadBalancer *struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	} `json:"loadBalancer"`
	ServerStatus map[string]string `json:"serverStatus"`
}

// decodeServicesV2 decodes a /api/http/services page, keeping the services
// that have a load balancer.
func decodeServicesV2(body []byte) ([]Service, error) {
	if err := expectJSON(body, '['); err != nil {
		return nil, err
	}
	var raw []serviceV2
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New(jsonProblem(err))
	}
	var out []Service
	for _, r := range raw {
		if r.Name == "" {
			return nil, errors.New("a service without a name (another schema?)")
		}
		if r.LoadBalancer != nil {
			out = append(out, r.service())
		}
	}
	return out, nil
}

// decodeServiceV2 decodes /api/http/services/{name}; lb says whether the
// service has a load balancer.
func decodeServiceV2(body []byte) (s Service, lb bool, err error) {
	if err := expectJSON(body, '{'); err != nil {
		return Service{}, false, err
	}
	var r serviceV2
	if err := json.Unmarshal(body, &r); err != nil {
		return Service{}, false, errors.New(jsonProblem(err))
	}
	if r.Name == "" {
		return Service{}, false, errors.New("a service without a name (another schema?)")
	}
	return r.service(), r.LoadBalancer != nil, nil
}

func (r serviceV2) service() Service {
	s := Service{Name: r.Name, Provider: r.Provider}
	if s.Provider == "" {
		if _, p, ok := strings.Cut(r.Name, "@"); ok {
			s.Provider = p
		}
	}
	if r.LoadBalancer == nil {
		return s
	}
	for _, srv := range r.LoadBalancer.Servers {
		if srv.URL != "" {
			s.Servers = append(s.Servers, Server{URL: srv.URL, Status: r.status(srv.URL)})
		}
	}
	return s
}

// status looks up serverStatus, which Traefik keys by the parsed and
// re-printed URL, not always byte for byte the configured one.
func (r serviceV2) status(serverURL string) string {
	if st, ok := r.ServerStatus[serverURL]; ok {
		return st
	}
	want := normalizeURL(serverURL)
	for u, st := range r.ServerStatus {
		if normalizeURL(u) == want {
			return st
		}
	}
	return ""
}

// v1 JSON, trimmed to what we read.
type backendV1 struct {
	Servers map[string]struct {
		URL string `json:"url"`
	} `json:"servers"`
}

// decodeBackendsV1 decodes /api/providers/docker/backends: an object keyed
// by backend name. Services and servers come out sorted.
func decodeBackendsV1(body []byte) ([]Service, error) {
	if err := expectJSON(body, '{'); err != nil {
		return nil, err
	}
	var raw map[string]*backendV1
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New(jsonProblem(err))
	}
	out := make([]Service, 0, len(raw))
	for name, b := range raw {
		if name == "" {
			return nil, errors.New("a backend without a name (another schema?)")
		}
		out = append(out, b.service(name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// decodeBackendV1 decodes /api/providers/docker/backends/{name}.
func decodeBackendV1(name string, body []byte) (Service, error) {
	if err := expectJSON(body, '{'); err != nil {
		return Service{}, err
	}
	var b *backendV1
	if err := json.Unmarshal(body, &b); err != nil {
		return Service{}, errors.New(jsonProblem(err))
	}
	return b.service(name), nil
}

func (b *backendV1) service(name string) Service {
	s := Service{Name: name, Provider: "docker"}
	if b == nil {
		return s
	}
	for _, srv := range b.Servers {
		if srv.URL != "" {
			s.Servers = append(s.Servers, Server{URL: srv.URL}) // v1 has no server status
		}
	}
	sort.Slice(s.Servers, func(i, j int) bool { return s.Servers[i].URL < s.Servers[j].URL })
	return s
}

// expectJSON checks that body is JSON opening with open ('{' or '['), so an
// HTML page or a different shape is reported as such.
func expectJSON(body []byte, open byte) error {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return errors.New("an empty body")
	case trimmed[0] == '<':
		return errors.New("HTML, not JSON")
	case !json.Valid(trimmed):
		if trimmed[0] == '{' || trimmed[0] == '[' {
			return errors.New("invalid or truncated JSON")
		}
		return errors.New("no JSON")
	case trimmed[0] != open:
		want := "an object"
		if open == '[' {
			want = "an array"
		}
		return fmt.Errorf("JSON that is not %s (another API version?)", want)
	}
	return nil
}

// jsonProblem words a decoding error without echoing the input.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "a " + te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.Slice, reflect.Array:
			want = "an array"
		case reflect.Struct, reflect.Map, reflect.Pointer:
			want = "an object"
		}
		return fmt.Sprintf("JSON of another schema (%s is %s %s, expected %s)", sanitize(te.Field, 80), article(te.Value), te.Value, want)
	}
	return "invalid JSON (" + err.Error() + ")"
}

func article(word string) string {
	if strings.ContainsAny(word[:min(1, len(word))], "aeiou") {
		return "an"
	}
	return "a"
}

// normalizeURL gives the comparable form of a server URL:
// scheme://host:port[/path], lower case, default port filled in.
func normalizeURL(raw string) string {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return strings.ToLower(strings.TrimRight(raw, "/"))
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http", "h2c", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port) + strings.TrimRight(u.EscapedPath(), "/")
}
