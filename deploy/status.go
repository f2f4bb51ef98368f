package deploy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// AppStatus is what `deployctl status` shows for one app.
type AppStatus struct {
	App        string            `json:"app"`
	Services   []string          `json:"services"`
	Containers []ContainerStatus `json:"containers"`
	// Running is how many of its containers run, Up how many of those
	// Traefik routes to (UP): with several replicas, the app's size and
	// how much of it serves.
	Running int `json:"running"`
	Up      int `json:"up"`
	// Routes are the app's route containers (--switch atomic): the one
	// that runs holds the routers that route the app now.
	Routes   []RouteStatus `json:"routes,omitempty"`
	Lock     *Holder       `json:"lock,omitempty"`
	Problems []string      `json:"problems,omitempty"`
	// Swarm lists the app's Swarm services, newest first, when it is a
	// Swarm service (Containers is then empty).
	Swarm []SwarmServiceStatus `json:"swarm_services,omitempty"`
}

// SwarmServiceStatus is one Swarm service of an app.
type SwarmServiceStatus struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Image    string    `json:"image"`
	Replicas int       `json:"replicas"` // -1: global
	Running  int       `json:"running"`
	Routed   bool      `json:"routed"` // not taken out of the router by deployctl
	Up       int       `json:"up"`     // its tasks the router lists UP
	Created  time.Time `json:"created"`
}

// RouteStatus is one route container of an app.
type RouteStatus struct {
	Name    string `json:"name"`
	Version string `json:"version"` // the version its routers route to
	Level   string `json:"level"`   // user (the user's router names and priorities) or lifted (one above)
	State   string `json:"state"`
}

// ContainerStatus is one container of an app.
type ContainerStatus struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"`
	Version string    `json:"version"`
	State   string    `json:"state"`
	Health  string    `json:"health,omitempty"`
	Created time.Time `json:"created"`
	URL     string    `json:"url,omitempty"`
	// Traefik is UP, DOWN, or absent (not listed), or "" when not running.
	Traefik string `json:"traefik,omitempty"`
	Drained bool   `json:"drained,omitempty"`
}

// Status reports the apps deployctl manages on this Docker host (only app
// when it is not ""), with what Traefik says of each container and what
// looks wrong.
func (e *Engine) Status(ctx context.Context, app string) ([]AppStatus, error) {
	if app != "" {
		r := &rollout{e: e, o: Options{App: app}}
		if sw, err := r.swarmServices(ctx); err != nil {
			return nil, err
		} else if sw != nil {
			return []AppStatus{e.swarmStatus(ctx, app, sw)}, nil
		}
	}
	sel := map[string]string{LabelApp: app}
	cs, err := e.Runtime.List(ctx, sel)
	if err != nil {
		return nil, unreachable("Docker", err)
	}
	services, terr := e.Router.Services(ctx)
	routes := map[string][]RouteStatus{}
	if rcs, err := e.Runtime.List(ctx, map[string]string{LabelRouteOf: app}); err == nil {
		for _, c := range rcs {
			a := c.Labels[LabelRouteOf]
			routes[a] = append(routes[a], RouteStatus{Name: c.Short(), Version: c.Labels[LabelVersion], Level: c.Labels[LabelRouteLevel], State: c.State})
		}
	}
	byApp := map[string][]Container{}
	for _, c := range cs {
		byApp[c.Labels[LabelApp]] = append(byApp[c.Labels[LabelApp]], c)
	}
	if app != "" && len(byApp) == 0 {
		return nil, usageError("no containers of app %s on this Docker host", app)
	}
	var out []AppStatus
	for _, name := range sortedKeys(byApp) {
		st := AppStatus{App: name}
		list := byApp[name]
		sort.Slice(list, func(i, j int) bool { return list[i].Created.After(list[j].Created) })
		svcSeen := map[string]bool{}
		serving := map[string]bool{}
		for _, c := range list {
			cst := ContainerStatus{Name: c.Short(), ID: c.ID, Version: c.Labels[LabelVersion], State: c.State, Health: c.Health, Created: c.Created}
			if c.Running() {
				cst.Traefik = "absent"
				if terr != nil {
					cst.Traefik = "unknown"
				}
				for _, u := range serverURLs(e.Router.Endpoint, c) {
					for _, svc := range services {
						if srv, ok := svc.Server(u); ok {
							cst.URL, cst.Traefik = u, "UP"
							if srv.Status == "DOWN" {
								cst.Traefik = "DOWN"
							}
							svcSeen[svc.Name] = true
						}
					}
				}
				if d := e.drainer(); d != nil && c.Labels[LabelDrain] == "probe" {
					if drained, err := d.Drained(ctx, c); err == nil && drained {
						cst.Drained = true
					}
				}
				switch {
				case cst.Drained:
					st.Problems = append(st.Problems, fmt.Sprintf("%s (%s) is drained but still running: a rollout was interrupted; the next rollout stops it, or: docker stop %s", cst.Name, cst.Version, cst.Name))
				case cst.Traefik == "absent":
					st.Problems = append(st.Problems, fmt.Sprintf("%s (%s) is running but Traefik does not route to it (health %q): check its health, traefik.enable and network", cst.Name, cst.Version, c.Health))
				case cst.Traefik == "DOWN":
					st.Problems = append(st.Problems, fmt.Sprintf("%s (%s) is running but DOWN in Traefik (health %q): Traefik's own health check fails for it; check its health and logs", cst.Name, cst.Version, c.Health))
				case cst.Traefik == "UP":
					serving[cst.Version] = true
				}
				st.Running++
				if cst.Traefik == "UP" {
					st.Up++
				}
			}
			st.Containers = append(st.Containers, cst)
		}
		if len(serving) > 1 {
			st.Problems = append(st.Problems, fmt.Sprintf("%d versions are serving at once (%s): a rollout did not finish; run the rollout again", len(serving), strings.Join(sortedKeys(serving), ", ")))
		}
		if len(serving) == 0 && terr == nil {
			st.Problems = append(st.Problems, "no container of the app is served by Traefik")
		}
		if terr != nil {
			st.Problems = append(st.Problems, "Traefik's API could not be read: "+terr.Error())
		}
		st.Services = sortedKeys(svcSeen)
		st.Routes = routes[name]
		for _, rs := range st.Routes {
			if rs.Level == RouteLifted && rs.State == "running" {
				st.Problems = append(st.Problems, fmt.Sprintf("route container %s (%s) is lifted: a rollout was interrupted after its switch; the app is served, and the next atomic rollout settles it (or, while other versions still run, switches back from it first)", rs.Name, rs.Version))
			}
		}
		if e.Journal != nil {
			if h, err := e.Journal.LockHolder(ctx, name); err == nil && h != nil {
				st.Lock = h
				st.Problems = append(st.Problems, fmt.Sprintf("deploy lock held by %s", h))
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// History returns the rollouts and rollbacks of app ("" for all), newest
// first.
func (e *Engine) History(ctx context.Context, app string) ([]Record, error) {
	if e.Journal == nil {
		return nil, nil
	}
	recs, err := e.Journal.Records(ctx, app)
	if err != nil {
		return nil, unreachable("Docker", err)
	}
	return recs, nil
}

// FileReader is implemented by runtimes that can read a file from a
// container; Traefik's docker provider reads the drain marker with it
// (Drainer.Drained), so Status tells drained containers apart.
type FileReader interface {
	ReadFile(ctx context.Context, id, path string) ([]byte, error)
}

// swarmStatus is the status of an app that is a Swarm service.
func (e *Engine) swarmStatus(ctx context.Context, app string, sw *swarmApp) AppStatus {
	st := AppStatus{App: app}
	if j := e.Journal; j != nil {
		st.Lock, _ = j.LockHolder(ctx, app)
	}
	rt, _ := e.Router.(ServiceRouter)
	serving := 0
	for i := len(sw.svcs) - 1; i >= 0; i-- {
		svc := sw.svcs[i]
		ss := SwarmServiceStatus{Name: svc.Name, Version: svc.Version(), Image: svc.Image, Replicas: svc.Replicas, Routed: svc.Routed(), Created: svc.Created}
		tasks, err := sw.sr.ServiceTasks(ctx, svc.ID)
		if err != nil {
			st.Problems = append(st.Problems, fmt.Sprintf("service %s: %v", svc.Name, err))
		}
		running := runningTasks(tasks)
		ss.Running = len(running)
		st.Running += ss.Running
		if rt != nil && len(running) > 0 {
			if ep, err := rt.ServiceEndpoint(ctx, svc.Labels); err == nil {
				s := &swarmRun{ep: ep}
				for _, name := range ep.Services {
					if !slices.Contains(st.Services, name) {
						st.Services = append(st.Services, name)
					}
					rsvc, err := e.Router.Service(ctx, name)
					if err != nil {
						continue
					}
					for _, t := range running {
						for _, u := range s.taskURLs(t) {
							if srv, ok := rsvc.Server(u); ok && srv.Status == "UP" {
								ss.Up++
							}
						}
					}
				}
			}
		}
		st.Up += ss.Up
		if ss.Replicas != 0 && ss.Routed {
			serving++
		}
		if ss.Routed && ss.Replicas > 0 && ss.Running < ss.Replicas {
			st.Problems = append(st.Problems, fmt.Sprintf("service %s runs %d of its %d tasks", svc.Name, ss.Running, ss.Replicas))
		}
		st.Swarm = append(st.Swarm, ss)
	}
	if serving > 1 {
		st.Problems = append(st.Problems, "several services of the app serve: the next rollout refuses until one is scaled to 0")
	}
	return st
}
