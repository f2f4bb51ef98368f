package dockerutil

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
)

// The Swarm side of the runtime (deploy.ServiceRuntime), for an engine
// that is a Swarm manager.

var _ deploy.ServiceRuntime = (*Runtime)(nil)

// SwarmRole implements deploy.ServiceRuntime.
func (r *Runtime) SwarmRole(ctx context.Context) (string, error) {
	info, err := r.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", err
	}
	sw := info.Info.Swarm
	switch {
	case sw.LocalNodeState != swarm.LocalNodeStateActive:
		return "", nil
	case sw.ControlAvailable:
		return "manager", nil
	default:
		return "worker", nil
	}
}

// AppServices implements deploy.ServiceRuntime.
func (r *Runtime) AppServices(ctx context.Context, app string) ([]deploy.SwarmService, error) {
	seen := map[string]bool{}
	var out []deploy.SwarmService
	for _, f := range []client.Filters{
		make(client.Filters).Add("name", app),
		make(client.Filters).Add("label", deploy.LabelApp+"="+app),
	} {
		l, err := r.cli.ServiceList(ctx, client.ServiceListOptions{Filters: f})
		if err != nil {
			return nil, err
		}
		for _, s := range l.Items {
			// The name filter matches prefixes.
			if seen[s.ID] || s.Spec.Name != app && s.Spec.Labels[deploy.LabelApp] != app {
				continue
			}
			seen[s.ID] = true
			out = append(out, toSwarmService(s))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func toSwarmService(s swarm.Service) deploy.SwarmService {
	out := deploy.SwarmService{ID: s.ID, Name: s.Spec.Name, Labels: maps.Clone(s.Spec.Labels), Created: s.CreatedAt, Replicas: -1}
	if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
		out.Image = cs.Image
	}
	if rep := s.Spec.Mode.Replicated; rep != nil {
		out.Replicas = 0
		if rep.Replicas != nil {
			out.Replicas = int(*rep.Replicas)
		}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	return out
}

func (r *Runtime) inspectService(ctx context.Context, id string) (swarm.Service, error) {
	res, err := r.cli.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
	return res.Service, err
}

func applyLabels(dst map[string]string, labels map[string]string) map[string]string {
	if dst == nil {
		dst = map[string]string{}
	}
	for k, v := range labels {
		if v == "" {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
	return dst
}

// CloneService implements deploy.ServiceRuntime: the whole spec of from
// (task template with networks, secrets, configs, mounts, resources,
// placement, healthcheck, stop grace; update and rollback config; endpoint
// spec without published ports, which two services cannot share) under
// another name, image and replica count.
func (r *Runtime) CloneService(ctx context.Context, from deploy.SwarmService, name, image string, replicas int, labels map[string]string) (deploy.SwarmService, error) {
	src, err := r.inspectService(ctx, from.ID)
	if err != nil {
		return deploy.SwarmService{}, err
	}
	spec := src.Spec
	spec.Name = name
	spec.Labels = applyLabels(maps.Clone(spec.Labels), labels)
	cs := *spec.TaskTemplate.ContainerSpec
	cs.Image = image
	spec.TaskTemplate.ContainerSpec = &cs
	// Tasks are replaced, not restarted in place: a clean count.
	spec.TaskTemplate.ForceUpdate = 0
	n := uint64(replicas)
	spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	if spec.EndpointSpec != nil {
		ep := *spec.EndpointSpec
		ep.Ports = nil
		spec.EndpointSpec = &ep
	}
	res, err := r.cli.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: spec})
	if err != nil {
		return deploy.SwarmService{}, fmt.Errorf("creating service %s: %w", name, err)
	}
	created, err := r.inspectService(ctx, res.ID)
	if err != nil {
		return deploy.SwarmService{ID: res.ID, Name: name, Image: image, Replicas: replicas, Labels: spec.Labels}, nil
	}
	return toSwarmService(created), nil
}

// updateService applies change to the service's current spec, again on a
// version conflict (someone else updated it in between).
func (r *Runtime) updateService(ctx context.Context, id string, change func(*swarm.ServiceSpec)) error {
	for try := 0; ; try++ {
		s, err := r.inspectService(ctx, id)
		if err != nil {
			return err
		}
		spec := s.Spec
		change(&spec)
		_, err = r.cli.ServiceUpdate(ctx, id, client.ServiceUpdateOptions{Version: s.Version, Spec: spec})
		if err == nil || try == 3 || !isOutOfSequence(err) {
			return err
		}
	}
}

func isOutOfSequence(err error) bool {
	return err != nil && strings.Contains(err.Error(), "update out of sequence")
}

// SetServiceLabels implements deploy.ServiceRuntime.
func (r *Runtime) SetServiceLabels(ctx context.Context, id string, labels map[string]string) error {
	return r.updateService(ctx, id, func(spec *swarm.ServiceSpec) {
		spec.Labels = applyLabels(spec.Labels, labels)
	})
}

// ScaleService implements deploy.ServiceRuntime.
func (r *Runtime) ScaleService(ctx context.Context, id string, replicas int) error {
	return r.updateService(ctx, id, func(spec *swarm.ServiceSpec) {
		n := uint64(replicas)
		spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	})
}

// RemoveService implements deploy.ServiceRuntime.
func (r *Runtime) RemoveService(ctx context.Context, id string) error {
	_, err := r.cli.ServiceRemove(ctx, id, client.ServiceRemoveOptions{})
	return err
}

// ServiceTasks implements deploy.ServiceRuntime.
func (r *Runtime) ServiceTasks(ctx context.Context, id string) ([]deploy.Task, error) {
	l, err := r.cli.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", id)})
	if err != nil {
		return nil, err
	}
	var out []deploy.Task
	for _, t := range l.Items {
		dt := deploy.Task{ID: t.ID, Slot: t.Slot, Node: r.nodeName(ctx, t.NodeID), State: string(t.Status.State), DesiredState: string(t.DesiredState),
			Err: t.Status.Err, Message: t.Status.Message, Addrs: map[string]string{}}
		for _, na := range t.NetworksAttachments {
			for _, a := range na.Addresses {
				dt.Addrs[na.Network.Spec.Name] = a.Addr().String()
			}
		}
		out = append(out, dt)
	}
	return out, nil
}

// nodeName is the hostname of a Swarm node, else its ID. The names are
// listed once and again only for a node not seen yet: the tasks are polled
// while a rollout waits, the nodes rarely change.
func (r *Runtime) nodeName(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	r.mu.Lock()
	name, ok := r.nodes[id]
	r.mu.Unlock()
	if ok {
		return name
	}
	nl, err := r.cli.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return id
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == nil {
		r.nodes = map[string]string{}
	}
	for _, n := range nl.Items {
		r.nodes[n.ID] = cmp.Or(n.Description.Hostname, n.ID)
	}
	if name, ok := r.nodes[id]; ok {
		return name
	}
	return id
}
