package dockerutil

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"

	"github.com/deployctl/deployctl/deploy"
)

// createPlan is everything needed to create the new container.
type createPlan struct {
	config        *container.Config
	host          *container.HostConfig
	netConfig     *network.NetworkingConfig
	extraNetworks []netAttach // connected after create, before start
	warnings      []string
}

type netAttach struct {
	name     string
	endpoint *network.EndpointSettings
}

// DefaultRestartPolicy is the restart policy of a first deploy, when
// nothing else is asked for: the app comes back after a reboot, and a
// container stopped on purpose (an old version) stays stopped.
const DefaultRestartPolicy = container.RestartPolicyUnlessStopped

// buildCreate works out the new container's configuration: the template's
// (the current container's) minus whatever came from the template's image,
// so the new image's own defaults (env, command, healthcheck, exposed ports,
// ...) apply, with spec's overrides on top. tmpl is nil on a first deploy;
// oldImg is nil when the template's image is gone.
func buildCreate(tmpl *container.InspectResponse, oldImg *image.InspectResponse, spec deploy.CreateSpec) (createPlan, error) {
	var p createPlan
	cfg := &container.Config{}
	host := &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: DefaultRestartPolicy}}
	primary := ""
	endpoints := map[string]*network.EndpointSettings{}
	var order []string

	if tmpl != nil && tmpl.Config != nil && tmpl.HostConfig != nil {
		c := *tmpl.Config
		cfg = &c
		h := *tmpl.HostConfig
		host = &h
		stripImageDefaults(cfg, oldImg)
		if cfg.Hostname == shortID(tmpl.ID) {
			cfg.Hostname = "" // Docker's default: the container's own ID
		}
		cfg.Labels = maps.Clone(cfg.Labels)
		for k := range cfg.Labels {
			if strings.HasPrefix(k, "deployctl.") {
				delete(cfg.Labels, k)
			}
		}
		if fixed := fixedBindings(host.PortBindings); len(fixed) > 0 {
			p.warnings = append(p.warnings, fmt.Sprintf("host port bindings of the current container (%s) are not copied: two containers cannot hold one host port, and Traefik routes to the new one without them", describePorts(fixed)))
		}
		host.PortBindings = randomBindings(host.PortBindings)
		if host.AutoRemove {
			p.warnings = append(p.warnings, "the current container was started with --rm, so Docker removes it when it stops and it cannot be kept for rollback; the new container is created without --rm")
			host.AutoRemove = false
		}
		host.ContainerIDFile = ""
		host.MaskedPaths, host.ReadonlyPaths = nil, nil // the daemon's defaults
		host.Links = fixLinks(host.Links)
		primary, endpoints, order, p.warnings = copyNetworks(tmpl, p.warnings)
	} else {
		if len(spec.Networks) > 0 {
			host.NetworkMode = container.NetworkMode(spec.Networks[0])
		}
	}

	cfg.Image = spec.Image
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	for _, k := range spec.RemoveLabels {
		delete(cfg.Labels, k)
	}
	if spec.Entrypoint != nil {
		cfg.Entrypoint, cfg.Cmd = spec.Entrypoint, nil
	}
	if spec.Command != nil {
		cfg.Cmd = slices.Clone(spec.Command)
	}
	if spec.NetworkMode != "" {
		// Another container's network namespace: its networks, addresses,
		// hostname and ports are that container's.
		host.NetworkMode = container.NetworkMode(spec.NetworkMode)
		host.PortBindings, host.Links = nil, nil
		cfg.Hostname, cfg.Domainname, cfg.ExposedPorts = "", "", nil
		primary, endpoints, order = "", map[string]*network.EndpointSettings{}, nil
		spec.Networks = nil
	}
	for k, v := range spec.Labels {
		cfg.Labels[k] = v
	}
	cfg.Env = mergeEnv(cfg.Env, spec.Env)
	if spec.Healthcheck != nil {
		cfg.Healthcheck = fromHealthcheck(spec.Healthcheck)
	}
	if spec.StopTimeout > 0 {
		secs := int(spec.StopTimeout.Seconds() + 0.999)
		cfg.StopTimeout = &secs
	}
	if spec.Restart != "" {
		rp, err := parseRestart(spec.Restart)
		if err != nil {
			return p, err
		}
		host.RestartPolicy = rp
	}
	binds, err := mergeVolumes(host, spec.Volumes)
	if err != nil {
		return p, err
	}
	host.Binds = binds

	for _, n := range spec.Networks {
		if _, ok := endpoints[n]; !ok && n != string(host.NetworkMode) {
			endpoints[n] = &network.EndpointSettings{}
			order = append(order, n)
		}
	}
	if primary == "" && isUserNetwork(host.NetworkMode) {
		primary = string(host.NetworkMode)
		if _, ok := endpoints[primary]; !ok {
			endpoints[primary] = &network.EndpointSettings{}
		}
	}
	if primary != "" {
		p.netConfig = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{primary: endpoints[primary]}}
	}
	for _, n := range order {
		if n != primary {
			p.extraNetworks = append(p.extraNetworks, netAttach{name: n, endpoint: endpoints[n]})
		}
	}
	p.config, p.host = cfg, host
	return p, nil
}

// stripImageDefaults removes from cfg what Docker filled in from the image,
// so that the new image's values apply instead of the old image's.
func stripImageDefaults(cfg *container.Config, img *image.InspectResponse) {
	if img == nil || img.Config == nil {
		return
	}
	ic := img.Config
	imageEnv := map[string]bool{}
	for _, e := range ic.Env {
		imageEnv[e] = true
	}
	var env []string
	for _, e := range cfg.Env {
		if !imageEnv[e] {
			env = append(env, e)
		}
	}
	cfg.Env = env
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		if iv, ok := ic.Labels[k]; !ok || iv != v {
			labels[k] = v
		}
	}
	cfg.Labels = labels
	if slices.Equal(cfg.Cmd, ic.Cmd) {
		cfg.Cmd = nil
	}
	if slices.Equal(cfg.Entrypoint, ic.Entrypoint) {
		cfg.Entrypoint = nil
	}
	if cfg.WorkingDir == ic.WorkingDir {
		cfg.WorkingDir = ""
	}
	if cfg.User == ic.User {
		cfg.User = ""
	}
	if cfg.StopSignal == ic.StopSignal {
		cfg.StopSignal = ""
	}
	if slices.Equal(cfg.Shell, ic.Shell) {
		cfg.Shell = nil
	}
	if sameHealthcheck(cfg.Healthcheck, ic.Healthcheck) {
		cfg.Healthcheck = nil
	}
	cfg.OnBuild = nil
	if len(cfg.ExposedPorts) > 0 {
		ports := network.PortSet{}
		for p := range cfg.ExposedPorts {
			if _, ok := ic.ExposedPorts[p.String()]; !ok {
				ports[p] = struct{}{}
			}
		}
		cfg.ExposedPorts = ports
	}
	if len(cfg.Volumes) > 0 {
		vols := map[string]struct{}{}
		for v := range cfg.Volumes {
			if _, ok := ic.Volumes[v]; !ok {
				vols[v] = struct{}{}
			}
		}
		cfg.Volumes = vols
	}
}

// copyNetworks returns the template's networks with their user-given
// aliases: the primary one (created with the container) and the others in a
// stable order. Docker's own aliases (the container's short ID and name) and
// static IP and MAC addresses, which would clash with the running
// template, are left out.
func copyNetworks(tmpl *container.InspectResponse, warnings []string) (string, map[string]*network.EndpointSettings, []string, []string) {
	endpoints := map[string]*network.EndpointSettings{}
	mode := tmpl.HostConfig.NetworkMode
	if !isUserNetwork(mode) && !mode.IsBridge() && !mode.IsDefault() {
		return "", endpoints, nil, warnings // host, none, container:<id>: nothing to attach
	}
	if tmpl.NetworkSettings == nil {
		return "", endpoints, nil, warnings
	}
	name := strings.TrimPrefix(tmpl.Name, "/")
	var order []string
	for _, n := range sortedNames(tmpl.NetworkSettings.Networks) {
		ep := tmpl.NetworkSettings.Networks[n]
		if ep == nil {
			ep = &network.EndpointSettings{}
		}
		out := &network.EndpointSettings{Links: ep.Links, DriverOpts: ep.DriverOpts}
		for _, a := range ep.Aliases {
			if a != shortID(tmpl.ID) && a != name && !strings.HasPrefix(tmpl.ID, a) {
				out.Aliases = append(out.Aliases, a)
			}
		}
		if ep.IPAMConfig != nil && (ep.IPAMConfig.IPv4Address.IsValid() || ep.IPAMConfig.IPv6Address.IsValid()) {
			warnings = append(warnings, fmt.Sprintf("the current container has a fixed IP address on network %s; the new one gets an address from the network's pool, since both run at once", n))
		}
		endpoints[n] = out
		if n != string(mode) && !(n == "bridge" && (mode.IsBridge() || mode.IsDefault())) {
			order = append(order, n)
		}
	}
	primary := ""
	if isUserNetwork(mode) {
		primary = string(mode)
	}
	return primary, endpoints, order, warnings
}

func isUserNetwork(m container.NetworkMode) bool {
	return m != "" && m.IsUserDefined()
}

func sortedNames(m map[string]*network.EndpointSettings) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// fixLinks turns links as inspect shows them ("/db:/web/database") back
// into the form create takes ("db:database").
func fixLinks(links []string) []string {
	var out []string
	for _, l := range links {
		src, dst, ok := strings.Cut(l, ":")
		if !ok {
			out = append(out, l)
			continue
		}
		src = strings.TrimPrefix(src, "/")
		if i := strings.LastIndex(dst, "/"); i >= 0 {
			dst = dst[i+1:]
		}
		out = append(out, src+":"+dst)
	}
	return out
}

// mergeEnv replaces entries of base by the overrides with the same key.
func mergeEnv(base, overrides []string) []string {
	if len(overrides) == 0 {
		return base
	}
	keys := map[string]bool{}
	for _, e := range overrides {
		k, _, _ := strings.Cut(e, "=")
		keys[k] = true
	}
	var out []string
	for _, e := range base {
		k, _, _ := strings.Cut(e, "=")
		if !keys[k] {
			out = append(out, e)
		}
	}
	return append(out, overrides...)
}

// mergeVolumes adds -v style volumes, replacing copied binds and mounts with
// the same destination.
func mergeVolumes(host *container.HostConfig, volumes []string) ([]string, error) {
	if len(volumes) == 0 {
		return host.Binds, nil
	}
	dests := map[string]bool{}
	for _, v := range volumes {
		d, err := volumeDest(v)
		if err != nil {
			return nil, err
		}
		dests[d] = true
	}
	var binds []string
	for _, b := range host.Binds {
		if d, err := volumeDest(b); err != nil || !dests[d] {
			binds = append(binds, b)
		}
	}
	var mounts = host.Mounts[:0:0]
	for _, m := range host.Mounts {
		if !dests[m.Target] {
			mounts = append(mounts, m)
		}
	}
	host.Mounts = mounts
	return append(binds, volumes...), nil
}

// volumeDest is the container path of a -v style volume: [src:]dst[:opts].
func volumeDest(v string) (string, error) {
	parts := strings.Split(v, ":")
	var d string
	switch len(parts) {
	case 1:
		d = parts[0]
	case 2, 3:
		d = parts[1]
	default:
		return "", fmt.Errorf("volume %q: want [source:]destination[:options]", v)
	}
	if !strings.HasPrefix(d, "/") {
		return "", fmt.Errorf("volume %q: the destination %q must be an absolute path in the container", v, d)
	}
	return d, nil
}

func parseRestart(s string) (container.RestartPolicy, error) {
	name, count, _ := strings.Cut(s, ":")
	rp := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
	switch rp.Name {
	case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		if count != "" {
			return rp, fmt.Errorf("restart policy %q takes no retry count", s)
		}
	case container.RestartPolicyOnFailure:
		if count != "" {
			if _, err := fmt.Sscanf(count, "%d", &rp.MaximumRetryCount); err != nil || rp.MaximumRetryCount < 0 {
				return rp, fmt.Errorf("restart policy %q: the retry count must be a number", s)
			}
		}
	default:
		return rp, fmt.Errorf("restart policy %q: want no, always, unless-stopped or on-failure[:N]", s)
	}
	return rp, nil
}

func describePorts(pm network.PortMap) string {
	var out []string
	for p, bindings := range pm {
		for _, b := range bindings {
			hostPart := b.HostPort
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				hostPart = b.HostIP.String() + ":" + b.HostPort
			}
			out = append(out, hostPart+"->"+p.String())
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// given is c as a container to copy (buildCreate's template): a
// configuration declared rather than running (a compose service's).
func given(c *deploy.ContainerConfig) (*container.InspectResponse, error) {
	cfg := &container.Config{
		Env: slices.Clone(c.Env), Labels: maps.Clone(c.Labels),
		Entrypoint: slices.Clone(c.Entrypoint), Cmd: slices.Clone(c.Command),
		User: c.User, WorkingDir: c.WorkingDir, Hostname: c.Hostname, StopSignal: c.StopSignal,
		Healthcheck: fromHealthcheck(c.Healthcheck), Tty: c.Tty, OpenStdin: c.OpenStdin,
	}
	if c.StopTimeout > 0 {
		secs := int(c.StopTimeout.Seconds() + 0.999)
		cfg.StopTimeout = &secs
	}
	host := &container.HostConfig{
		Binds: slices.Clone(c.Binds), Tmpfs: maps.Clone(c.Tmpfs), ReadonlyRootfs: c.ReadOnly, Init: c.Init,
		Privileged: c.Privileged, CapAdd: slices.Clone(c.CapAdd), CapDrop: slices.Clone(c.CapDrop),
		ExtraHosts: slices.Clone(c.ExtraHosts), DNSSearch: slices.Clone(c.DNSSearch),
		SecurityOpt: slices.Clone(c.SecurityOpt), Sysctls: maps.Clone(c.Sysctls), GroupAdd: slices.Clone(c.GroupAdd),
		ShmSize:   c.ShmSize,
		LogConfig: container.LogConfig{Type: c.LogDriver, Config: maps.Clone(c.LogOptions)},
	}
	for _, d := range c.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("dns %q: not an IP address", d)
		}
		host.DNS = append(host.DNS, a)
	}
	host.Memory, host.MemoryReservation, host.NanoCPUs, host.PidsLimit = c.Memory, c.MemReservation, c.NanoCPUs, c.PidsLimit
	if c.Restart != "" {
		rp, err := parseRestart(c.Restart)
		if err != nil {
			return nil, err
		}
		host.RestartPolicy = rp
	}
	for _, e := range c.Expose {
		port, err := network.ParsePort(e)
		if err != nil {
			return nil, fmt.Errorf("expose %q: %w", e, err)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
		}
		cfg.ExposedPorts[port] = struct{}{}
	}
	for _, e := range c.Publish {
		port, err := network.ParsePort(e)
		if err != nil {
			return nil, fmt.Errorf("ports %q: %w", e, err)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
		}
		cfg.ExposedPorts[port] = struct{}{}
		if host.PortBindings == nil {
			host.PortBindings = network.PortMap{}
		}
		host.PortBindings[port] = append(host.PortBindings[port], network.PortBinding{})
	}
	nets := map[string]*network.EndpointSettings{}
	for i, n := range c.Networks {
		if i == 0 {
			host.NetworkMode = container.NetworkMode(n.Name)
		}
		nets[n.Name] = &network.EndpointSettings{Aliases: slices.Clone(n.Aliases)}
	}
	return &container.InspectResponse{Config: cfg, HostConfig: host, NetworkSettings: &container.NetworkSettings{Networks: nets}}, nil
}

// fixedBindings are the bindings of pm to a given host port.
func fixedBindings(pm network.PortMap) network.PortMap {
	out := network.PortMap{}
	for p, bs := range pm {
		for _, b := range bs {
			if b.HostPort != "" && b.HostPort != "0" {
				out[p] = append(out[p], b)
			}
		}
	}
	return out
}

// randomBindings are the bindings of pm to a host port Docker chooses,
// which two containers can both have; nil when none.
func randomBindings(pm network.PortMap) network.PortMap {
	var out network.PortMap
	for p, bs := range pm {
		for _, b := range bs {
			if b.HostPort == "" || b.HostPort == "0" {
				if out == nil {
					out = network.PortMap{}
				}
				out[p] = append(out[p], network.PortBinding{HostIP: b.HostIP})
			}
		}
	}
	return out
}
