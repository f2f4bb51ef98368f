package traefikapi

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/deployctl/deployctl/deploy"
)

// Labels of the routing cutover (docs/design.md, "Routing cutover").
const (
	prefixV2Routers = "traefik.http.routers."
	// LabelRoutingBase is deploy.LabelRoutingBase: the user's own
	// traefik.http.routers.* and traefik.http.services.* labels, as a JSON
	// object, on the app and route containers of an atomic rollout, so
	// that a later rollout splits the user's labels again rather than the
	// ones a previous split made.
	LabelRoutingBase = deploy.LabelRoutingBase
	// routeSelfPort is the port of a route container's own service. Traefik
	// accepts a container only with a port; no router uses that service.
	routeSelfPort = "1"
)

// routeOmits are the label prefixes a route container does not copy from
// the app's: the middlewares stay defined on the app containers; compose's,
// Swarm's and deployctl's own would make it one of the app's containers.
var routeOmits = []string{"traefik.http.middlewares.", "com.docker.compose.", "com.docker.stack.", "com.docker.swarm.", "deployctl."}

// Level is the priority a route container's routers get.
type Level int

const (
	// LevelUser is the user's own priority (the label, else Traefik's
	// default: the rule's length), under the user's router names.
	LevelUser Level = iota
	// LevelLifted is one above the user's, under "<router>-<version>".
	LevelLifted
)

// RouterLabels is one of the user's HTTP routers.
type RouterLabels struct {
	Name string
	// Keys are the router's labels without "traefik.http.routers.<name>."
	// and without service and priority.
	Keys map[string]string
	// Service is the user's service it routes to.
	Service string
	// Priority is the label's value, 0 when there is none.
	Priority int
	// Effective is the priority Traefik gives it: Priority, else the
	// length of its rule (v2 and v3 compute it so).
	Effective int
}

// Routing is a container's Traefik labels split for the atomic switch:
// the user's HTTP routers go onto route containers, its services onto the
// app containers under a name per version.
type Routing struct {
	Routers  []RouterLabels // sorted by name
	Services []string       // the user's service names, sorted
	// base is the user's routers and services labels (LabelRoutingBase).
	base map[string]string
	// rest is every other label.
	rest map[string]string
}

// NotAtomicError says why a container's labels cannot be switched
// atomically; the rollout falls back to the gradual switch.
type NotAtomicError struct{ Reason string }

func (e *NotAtomicError) Error() string { return e.Reason }

// SplitRouting reads the routing of an app from the labels of one of its
// containers (the rollout's template). Containers an atomic rollout made
// carry the user's own labels in LabelRoutingBase; those are read instead
// of their rewritten ones. port is the app's port (deploy.Endpoint.Port),
// for a service the labels only imply; defaultService names it.
func SplitRouting(labels map[string]string, port int, defaultService string) (*Routing, error) {
	r := &Routing{base: map[string]string{}, rest: map[string]string{}}
	rewritten := labels[LabelRoutingBase] != ""
	if rewritten {
		if err := json.Unmarshal([]byte(labels[LabelRoutingBase]), &r.base); err != nil {
			return nil, fmt.Errorf("label %s is not a JSON object of labels: %v", LabelRoutingBase, err)
		}
		for k := range r.base {
			if !strings.HasPrefix(k, prefixV2Routers) && !strings.HasPrefix(k, prefixV2Services) {
				return nil, fmt.Errorf("label %s holds %s, which is no router or service label", LabelRoutingBase, k)
			}
		}
	}
	for k, v := range labels {
		switch {
		case k == LabelRoutingBase:
		case strings.HasPrefix(k, "traefik.tcp.") || strings.HasPrefix(k, "traefik.udp."):
			return nil, &NotAtomicError{Reason: fmt.Sprintf("the app has TCP or UDP routing (label %s); only HTTP routers switch atomically", k)}
		case strings.HasPrefix(k, prefixV2Routers), strings.HasPrefix(k, prefixV2Services):
			if !rewritten { // else these are a previous split's; the base holds the user's
				r.base[k] = v
			}
		default:
			r.rest[k] = v
		}
	}
	if v1 := labels[labelV1Backend] + labels["traefik.frontend.rule"]; v1 != "" {
		return nil, &NotAtomicError{Reason: "the app is routed by Traefik v1 labels (traefik.frontend.rule, traefik.backend), which have no router priorities"}
	}

	routers := map[string]*RouterLabels{}
	services := map[string]bool{}
	for k, v := range r.base {
		if rest, ok := strings.CutPrefix(k, prefixV2Services); ok {
			if name, _, ok := strings.Cut(rest, "."); ok && name != "" {
				services[name] = true
			}
			continue
		}
		rest := strings.TrimPrefix(k, prefixV2Routers)
		name, key, ok := strings.Cut(rest, ".")
		if !ok || name == "" || key == "" {
			return nil, fmt.Errorf("label %s names no router key", k)
		}
		rt := routers[name]
		if rt == nil {
			rt = &RouterLabels{Name: name, Keys: map[string]string{}}
			routers[name] = rt
		}
		switch strings.ToLower(key) {
		case "service":
			rt.Service = v
		case "priority":
			p, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("label %s=%q is not a whole number", k, v)
			}
			rt.Priority = p
		default:
			rt.Keys[key] = v
		}
	}
	if len(routers) == 0 {
		return nil, &NotAtomicError{Reason: "the app has no traefik.http.routers.* labels: Traefik routes it by its default rule, which deployctl cannot copy onto a router of its own"}
	}
	if len(services) == 0 {
		if port <= 0 {
			return nil, fmt.Errorf("the app's labels name no service and no port is known")
		}
		services[defaultService] = true
		r.base[prefixV2Services+defaultService+".loadbalancer.server.port"] = strconv.Itoa(port)
	}
	for s := range services {
		r.Services = append(r.Services, s)
	}
	sort.Strings(r.Services)
	for _, rt := range routers {
		if rt.Service == "" {
			if len(r.Services) != 1 {
				return nil, fmt.Errorf("router %s names no service and the labels define %d (%s): add traefik.http.routers.%s.service", rt.Name, len(r.Services), strings.Join(r.Services, ", "), rt.Name)
			}
			rt.Service = r.Services[0]
		}
		if strings.Contains(rt.Service, "@") || !services[rt.Service] {
			return nil, &NotAtomicError{Reason: fmt.Sprintf("router %s routes to service %s, which the app's own labels do not define", rt.Name, rt.Service)}
		}
		rule := rt.Keys["rule"]
		if rule == "" {
			return nil, &NotAtomicError{Reason: fmt.Sprintf("router %s has no rule label: Traefik gives it its default rule, which deployctl cannot copy", rt.Name)}
		}
		rt.Effective = rt.Priority
		if rt.Effective == 0 {
			rt.Effective = len(rule)
		}
		r.Routers = append(r.Routers, *rt)
	}
	sort.Slice(r.Routers, func(i, j int) bool { return r.Routers[i].Name < r.Routers[j].Name })
	return r, nil
}

// NameVersion turns a version into the part of a Traefik name that
// follows the user's: letters and digits kept, every other run of
// characters one '-', at most 40 characters.
func NameVersion(version string) string {
	n := normalizeV1(version)
	if len(n) > 40 {
		n = strings.Trim(n[:40], "-")
	}
	return n
}

// VersionedService is the name of the user's service s for the app
// containers of version.
func VersionedService(s, version string) string { return s + "-" + NameVersion(version) }

// LiftedRouter is the name of the user's router at LevelLifted for
// version.
func LiftedRouter(r, version string) string { return r + "-" + NameVersion(version) }

// AppLabels are the labels of the app containers of version: every label
// but the user's routers, its services renamed (VersionedService), and
// LabelRoutingBase.
func (r *Routing) AppLabels(version string) map[string]string {
	out := copyLabels(r.rest)
	for k, v := range r.base {
		if rest, ok := strings.CutPrefix(k, prefixV2Services); ok {
			name, key, _ := strings.Cut(rest, ".")
			out[prefixV2Services+VersionedService(name, version)+"."+key] = v
		}
	}
	out[LabelRoutingBase] = r.baseJSON()
	return out
}

// RouteLabels are the labels of a route container for version at level:
// every label but services and routers, the user's routers (renamed and
// one above the user's priority at LevelLifted) routing to the versioned
// services, the container's own service (used by no router, on self),
// and LabelRoutingBase.
func (r *Routing) RouteLabels(version string, level Level, self string) map[string]string {
	out := copyLabels(r.rest)
	for k := range out {
		for _, p := range routeOmits {
			if strings.HasPrefix(k, p) {
				delete(out, k)
			}
		}
	}
	for _, rt := range r.Routers {
		name := rt.Name
		if level == LevelLifted {
			name = LiftedRouter(rt.Name, version)
		}
		for k, v := range rt.Keys {
			out[prefixV2Routers+name+"."+k] = v
		}
		out[prefixV2Routers+name+".service"] = VersionedService(rt.Service, version)
		switch {
		case level == LevelLifted:
			out[prefixV2Routers+name+".priority"] = strconv.Itoa(rt.Effective + 1)
		case rt.Priority != 0:
			out[prefixV2Routers+name+".priority"] = strconv.Itoa(rt.Priority)
		}
	}
	out[prefixV2Services+self+".loadbalancer.server.port"] = routeSelfPort
	out[LabelRoutingBase] = r.baseJSON()
	return out
}

// ObservedPriority is the priority Traefik gives a router it lists: the
// API shows the label's (v2, and v3 for a set one) or the computed one
// (v3); 0 means the rule's length.
func ObservedPriority(priority int, rule string) int {
	if priority != 0 {
		return priority
	}
	return len(rule)
}

func (r *Routing) baseJSON() string {
	b, _ := json.Marshal(r.base) // map[string]string: sorted keys, cannot fail
	return string(b)
}

// WithLabels is a template's labels with those given for the new version
// (a rollout's --label) over them. On a container an atomic rollout made,
// whose router and service labels are a previous split's, the given
// router and service labels go into the user's own, LabelRoutingBase.
func WithLabels(tmpl, given map[string]string) (map[string]string, error) {
	out := copyLabels(tmpl)
	var base map[string]string
	if b := tmpl[LabelRoutingBase]; b != "" {
		if err := json.Unmarshal([]byte(b), &base); err != nil {
			return nil, fmt.Errorf("label %s is not a JSON object of labels: %v", LabelRoutingBase, err)
		}
	}
	for k, v := range given {
		if base != nil && (strings.HasPrefix(k, prefixV2Routers) || strings.HasPrefix(k, prefixV2Services)) {
			base[k] = v
			continue
		}
		out[k] = v
	}
	if base != nil {
		b, _ := json.Marshal(base)
		out[LabelRoutingBase] = string(b)
	}
	return out, nil
}

func copyLabels(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+8)
	for k, v := range m {
		out[k] = v
	}
	return out
}
