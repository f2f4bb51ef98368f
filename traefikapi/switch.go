package traefikapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/deployctl/deployctl/deploy"
)

// RouterLister lists Traefik's HTTP routers: Router does, from the API.
// DockerProvider switches atomically (deploy.Switcher) only when its API
// is one.
type RouterLister interface {
	HTTPRouters(ctx context.Context) ([]RouterInfo, error)
}

var _ RouterLister = Router{}

// HTTPRouters implements RouterLister.
func (r Router) HTTPRouters(ctx context.Context) ([]RouterInfo, error) {
	rs, err := r.c.Routers(ctx)
	if err != nil && !errors.Is(err, ErrNoRouters) {
		return nil, routerError(err)
	}
	return rs, err
}

var _ deploy.Switcher = DockerProvider{}

// notAtomic is a reason to switch gradually, as the engine reads it.
func notAtomic(format string, args ...any) error {
	return fmt.Errorf("%w: %s", deploy.ErrNotAtomic, fmt.Sprintf(format, args...))
}

// PlanSwitch implements deploy.Switcher: the template's labels split by
// SplitRouting, refused when Traefik is v1, when the labels cannot be
// split, or when another router has the priority a lifted router needs
// (a deploy.LiftedLeftError comes with the plan, whole).
func (p DockerProvider) PlanSwitch(ctx context.Context, tmpl deploy.Container, labels map[string]string, ep deploy.Endpoint, version string) (deploy.SwitchPlan, error) {
	rl, ok := p.API.(RouterLister)
	if !ok {
		return deploy.SwitchPlan{}, notAtomic("Traefik's routers cannot be listed here")
	}
	routers, err := rl.HTTPRouters(ctx)
	if errors.Is(err, ErrNoRouters) {
		return deploy.SwitchPlan{}, notAtomic("Traefik v1 has no router priorities")
	}
	if err != nil {
		return deploy.SwitchPlan{}, err
	}
	base := tmpl.Labels[deploy.LabelApp]
	if base == "" {
		base = normalizeV1(tmpl.Short())
	}
	merged, err := WithLabels(tmpl.Labels, labels)
	if err != nil {
		return deploy.SwitchPlan{}, err
	}
	split, err := SplitRouting(merged, ep.Port, base)
	var na *NotAtomicError
	if errors.As(err, &na) {
		return deploy.SwitchPlan{}, notAtomic("%s", na.Reason)
	}
	if err != nil {
		return deploy.SwitchPlan{}, err
	}
	plan := deploy.SwitchPlan{Labels: map[string]string{}}
	for _, m := range []map[string]string{tmpl.Labels, labels} {
		for k := range m {
			if strings.HasPrefix(k, prefixV2Routers) || strings.HasPrefix(k, prefixV2Services) {
				plan.RemoveLabels = append(plan.RemoveLabels, k)
			}
		}
	}
	slices.Sort(plan.RemoveLabels)
	plan.RemoveLabels = slices.Compact(plan.RemoveLabels)
	for k, v := range split.AppLabels(version) {
		if strings.HasPrefix(k, prefixV2Services) || k == LabelRoutingBase {
			plan.Labels[k] = v
		}
	}
	for _, s := range split.Services {
		plan.Services = append(plan.Services, VersionedService(s, version)+"@docker")
	}
	self := base + "-deployctl-route"
	plan.Lifted.Labels = split.RouteLabels(version, LevelLifted, self)
	plan.User.Labels = split.RouteLabels(version, LevelUser, self)
	for _, r := range split.Routers {
		plan.Lifted.Routers = append(plan.Lifted.Routers, LiftedRouter(r.Name, version)+"@docker")
		plan.User.Routers = append(plan.User.Routers, r.Name+"@docker")
	}
	if others, left := priorityConflicts(split, routers, version); len(others)+len(left) > 0 {
		var c []string
		for _, r := range append(others, left...) {
			c = append(c, fmt.Sprintf("%s (priority %d)", r.Name, ObservedPriority(r.Priority, r.Rule)))
		}
		slices.Sort(c)
		err := notAtomic("router(s) %s share an entrypoint with the app's and have the priority its lifted router needs, and Traefik does not define which of two routers of equal priority wins; give the app's router(s) an explicit traefik.http.routers.<name>.priority", strings.Join(c, "; "))
		if len(others) > 0 {
			return deploy.SwitchPlan{}, err
		}
		le := &deploy.LiftedLeftError{Err: err}
		for _, r := range left {
			le.Routers = append(le.Routers, r.Name)
		}
		slices.Sort(le.Routers)
		return plan, le // the plan is whole: its user-level routes tie with nothing
	}
	return plan, nil
}

// priorityConflicts lists the routers that a lifted router of split for
// version would tie with on a shared entrypoint: others, and left, the
// lifted routers of the app for other versions (a route container an
// interrupted run left; the one of version itself is no conflict).
func priorityConflicts(split *Routing, routers []RouterInfo, version string) (others, left []RouterInfo) {
	seen := map[string]bool{}
	for _, ours := range split.Routers {
		eps := splitList(ours.Keys["entrypoints"])
		for _, r := range routers {
			name, provider, _ := strings.Cut(r.Name, "@")
			if seen[r.Name] || name == ours.Name || name == LiftedRouter(ours.Name, version) || provider == "internal" {
				continue
			}
			if ObservedPriority(r.Priority, r.Rule) != ours.Effective+1 {
				continue
			}
			if len(eps) > 0 && len(r.EntryPoints) > 0 && !slices.ContainsFunc(eps, func(e string) bool { return slices.Contains(r.EntryPoints, e) }) {
				continue
			}
			seen[r.Name] = true
			if isLiftedOf(r, ours) {
				left = append(left, r)
			} else {
				others = append(others, r)
			}
		}
	}
	return others, left
}

// isLiftedOf reports whether r is a lifted router of ours for some
// version, as RouteLabels defines it: a Docker router named
// LiftedRouter(ours, v), with ours's rule, that routes to
// VersionedService(ours's service, v).
func isLiftedOf(r RouterInfo, ours RouterLabels) bool {
	name, provider, _ := strings.Cut(r.Name, "@")
	v, ok := strings.CutPrefix(name, ours.Name+"-")
	svc, _, _ := strings.Cut(r.Service, "@")
	return ok && provider == "docker" && r.Rule == ours.Keys["rule"] && svc == ours.Service+"-"+v
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Routes implements deploy.Switcher: every one of routers is enabled and
// its service lists every one of urls UP; with no urls, none of routers
// is listed.
func (p DockerProvider) Routes(ctx context.Context, routers, urls []string) (bool, error) {
	rl, ok := p.API.(RouterLister)
	if !ok {
		return false, notAtomic("Traefik's routers cannot be listed here")
	}
	all, err := rl.HTTPRouters(ctx)
	if err != nil {
		return false, err
	}
	byName := map[string]RouterInfo{}
	for _, r := range all {
		byName[r.Name] = r
	}
	if len(urls) == 0 {
		for _, name := range routers {
			if _, ok := byName[name]; ok {
				return false, nil
			}
		}
		return true, nil
	}
	for _, name := range routers {
		r, ok := byName[name]
		if !ok || r.Status != "enabled" {
			return false, nil
		}
		svc, err := p.API.Service(ctx, r.QualifiedService())
		if errors.Is(err, deploy.ErrServiceNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, u := range urls {
			if srv, ok := svc.Server(u); !ok || srv.Status != "UP" {
				return false, nil
			}
		}
	}
	return true, nil
}
