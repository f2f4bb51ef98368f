package compose

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/deployctl/deployctl/deploy"
)

// UnsupportedError names the service's fields that deployctl does not
// carry over to the containers it makes: it refuses them rather than
// make containers that differ from what `docker compose up` would.
type UnsupportedError struct {
	Service string
	Fields  []string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("compose service %s: deployctl does not carry over %s to the containers it makes yet; remove them from the service, or deploy it with docker compose", e.Service, strings.Join(e.Fields, ", "))
}

// ContainerConfig is the service's configuration as the containers
// `docker compose up` makes would have it (compose's pkg/compose
// create.go getCreateConfigs and convert.go, v2.40.3), in deployctl's
// terms: env, labels, command, user, networks with their aliases, mounts
// (volumes under their project names, file secrets and configs as
// read-only bind mounts), healthcheck, resources, stop signal and grace
// period, restart, logging. Its labels are the service's own; the caller
// adds compose's (ContainerLabels). A field it cannot carry over is an
// *UnsupportedError that names it.
func (s *Service) ContainerConfig() (*deploy.ContainerConfig, error) {
	c := s.Config
	if u := unsupported(c); len(u) > 0 {
		return nil, &UnsupportedError{Service: s.Name(), Fields: u}
	}
	out := &deploy.ContainerConfig{
		Labels:     map[string]string{},
		Entrypoint: []string(c.Entrypoint), Command: []string(c.Command),
		User: c.User, WorkingDir: c.WorkingDir, Hostname: c.Hostname, StopSignal: c.StopSignal,
		ReadOnly: c.ReadOnly, Init: c.Init, Privileged: c.Privileged,
		CapAdd: c.CapAdd, CapDrop: c.CapDrop, DNS: c.DNS, DNSSearch: c.DNSSearch,
		SecurityOpt: c.SecurityOpt, GroupAdd: c.GroupAdd, Tty: c.Tty, OpenStdin: c.StdinOpen,
		ShmSize: int64(c.ShmSize), Memory: int64(c.MemLimit), MemReservation: int64(c.MemReservation),
		Restart: c.Restart, Sysctls: map[string]string(c.Sysctls),
	}
	for k, v := range c.Labels {
		out.Labels[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(c.Environment)) {
		if v := c.Environment[k]; v != nil {
			out.Env = append(out.Env, k+"="+*v)
		} else {
			out.Env = append(out.Env, k) // compose passes a bare KEY: Docker takes it from nowhere, as compose does
		}
	}
	if c.StopGracePeriod != nil {
		out.StopTimeout = time.Duration(*c.StopGracePeriod)
	}
	if c.PidsLimit != 0 {
		p := c.PidsLimit
		out.PidsLimit = &p
	}
	if len(c.ExtraHosts) > 0 {
		out.ExtraHosts = c.ExtraHosts.AsList(":")
	}
	if h := c.HealthCheck; h != nil {
		out.Healthcheck = healthcheck(h)
	}
	if c.Logging != nil {
		out.LogDriver, out.LogOptions = c.Logging.Driver, map[string]string(c.Logging.Options)
	}
	if d := c.Deploy; d != nil {
		if l := d.Resources.Limits; l != nil {
			if l.MemoryBytes != 0 {
				out.Memory = int64(l.MemoryBytes)
			}
			if l.NanoCPUs != 0 {
				out.NanoCPUs = int64(float64(l.NanoCPUs.Value()) * 1e9)
			}
			if l.Pids != 0 {
				p := l.Pids
				out.PidsLimit = &p
			}
		}
		if r := d.Resources.Reservations; r != nil && r.MemoryBytes != 0 {
			out.MemReservation = int64(r.MemoryBytes)
		}
		if rp := d.RestartPolicy; rp != nil {
			out.Restart = restartPolicy(rp)
		}
	}
	out.Expose = slices.Clone([]string(c.Expose))
	for _, p := range c.Ports {
		if p.Published != "" {
			continue // refused (Refuse): a fixed host port
		}
		if p.HostIP != "" {
			return nil, &UnsupportedError{Service: s.Name(), Fields: []string{"ports with host_ip and no published port"}}
		}
		out.Publish = append(out.Publish, fmt.Sprintf("%d/%s", p.Target, cmp.Or(p.Protocol, "tcp")))
	}
	nets, err := s.networks()
	if err != nil {
		return nil, err
	}
	out.Networks = nets
	if err := s.mounts(out); err != nil {
		return nil, err
	}
	return out, nil
}

// unsupported lists the service's fields that are set and not carried
// over.
func unsupported(c types.ServiceConfig) []string {
	var u []string
	add := func(set bool, field string) {
		if set {
			u = append(u, field)
		}
	}
	add(len(c.Devices) > 0, "devices")
	add(len(c.DeviceCgroupRules) > 0, "device_cgroup_rules")
	add(len(c.Gpus) > 0, "gpus")
	add(c.Ipc != "", "ipc")
	add(c.Pid != "", "pid")
	add(c.Uts != "", "uts")
	add(c.UserNSMode != "", "userns_mode")
	add(c.Isolation != "", "isolation")
	add(c.Runtime != "", "runtime")
	add(len(c.StorageOpt) > 0, "storage_opt")
	add(len(c.VolumesFrom) > 0, "volumes_from")
	add(len(c.Links) > 0, "links")
	add(len(c.ExternalLinks) > 0, "external_links")
	add(c.CredentialSpec != nil, "credential_spec")
	add(c.MacAddress != "", "mac_address")
	add(c.OomKillDisable, "oom_kill_disable")
	add(c.OomScoreAdj != 0, "oom_score_adj")
	add(c.MemSwapLimit != 0, "memswap_limit")
	add(c.MemSwappiness != 0, "mem_swappiness")
	add(len(c.Ulimits) > 0, "ulimits")
	add(c.DomainName != "", "domainname")
	add(len(c.DNSOpts) > 0, "dns_opt")
	add(c.UseAPISocket, "use_api_socket")
	add(c.Provider != nil, "provider")
	add(len(c.Models) > 0, "models")
	add(c.NetworkMode != "", "network_mode")
	add(c.VolumeDriver != "", "volume_driver")
	add(c.Platform != "", "platform")
	return u
}

func healthcheck(h *types.HealthCheckConfig) *deploy.Healthcheck {
	if h.Disable {
		return &deploy.Healthcheck{Test: []string{"NONE"}}
	}
	out := &deploy.Healthcheck{Test: []string(h.Test)}
	dur := func(d *types.Duration) time.Duration {
		if d == nil {
			return 0
		}
		return time.Duration(*d)
	}
	out.Interval, out.Timeout, out.StartPeriod = dur(h.Interval), dur(h.Timeout), dur(h.StartPeriod)
	if h.Retries != nil {
		out.Retries = int(*h.Retries)
	}
	return out
}

// restartPolicy is deploy.restart_policy as a docker run --restart value
// (compose's getRestartPolicy).
func restartPolicy(rp *types.RestartPolicy) string {
	switch rp.Condition {
	case "none":
		return "no"
	case "on-failure":
		if rp.MaxAttempts != nil {
			return "on-failure:" + strconv.FormatUint(*rp.MaxAttempts, 10)
		}
		return "on-failure"
	default: // "any", ""
		return "always"
	}
}

// networks are the service's networks under their engine names, ordered
// as compose orders them (priority, highest first, then name), each with
// the service's name and its aliases.
func (s *Service) networks() ([]deploy.NetworkAttachment, error) {
	type entry struct {
		key string
		cfg *types.ServiceNetworkConfig
	}
	var es []entry
	for key, cfg := range s.Config.Networks {
		es = append(es, entry{key, cfg})
	}
	slices.SortFunc(es, func(a, b entry) int {
		pa, pb := 0, 0
		if a.cfg != nil {
			pa = a.cfg.Priority
		}
		if b.cfg != nil {
			pb = b.cfg.Priority
		}
		return cmp.Or(cmp.Compare(pb, pa), strings.Compare(a.key, b.key))
	})
	var out []deploy.NetworkAttachment
	for _, e := range es {
		n, ok := s.Project.Networks[e.key]
		if !ok {
			return nil, fmt.Errorf("compose service %s: network %s is not defined in the project", s.Name(), e.key)
		}
		a := deploy.NetworkAttachment{Name: cmp.Or(n.Name, e.key), Aliases: []string{s.Name()}}
		if e.cfg != nil {
			if e.cfg.Ipv4Address != "" || e.cfg.Ipv6Address != "" {
				return nil, &UnsupportedError{Service: s.Name(), Fields: []string{"networks." + e.key + ".ipv4_address/ipv6_address (a fixed address cannot be held by two containers at once)"}}
			}
			a.Aliases = append(a.Aliases, e.cfg.Aliases...)
		}
		out = append(out, a)
	}
	return out, nil
}

// mounts adds the service's volumes, tmpfs, file secrets and file configs
// to out, as compose mounts them without Swarm.
func (s *Service) mounts(out *deploy.ContainerConfig) error {
	c := s.Config
	out.Tmpfs = map[string]string{}
	for _, t := range c.Tmpfs {
		target, opts, _ := strings.Cut(t, ":")
		out.Tmpfs[target] = opts
	}
	for _, v := range c.Volumes {
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		switch v.Type {
		case types.VolumeTypeBind:
			out.Binds = append(out.Binds, v.Source+":"+v.Target+":"+mode)
		case types.VolumeTypeVolume:
			if v.Source == "" { // anonymous
				out.Binds = append(out.Binds, v.Target)
				continue
			}
			name := v.Source
			if pv, ok := s.Project.Volumes[v.Source]; ok && pv.Name != "" {
				name = pv.Name
			}
			out.Binds = append(out.Binds, name+":"+v.Target+":"+mode)
		case types.VolumeTypeTmpfs:
			opts := ""
			if v.Tmpfs != nil && v.Tmpfs.Size != 0 {
				opts = "size=" + strconv.FormatInt(int64(v.Tmpfs.Size), 10)
			}
			out.Tmpfs[v.Target] = opts
		default:
			return &UnsupportedError{Service: s.Name(), Fields: []string{"volumes of type " + v.Type}}
		}
	}
	secrets, configs := map[string]types.FileObjectConfig{}, map[string]types.FileObjectConfig{}
	for k, v := range s.Project.Secrets {
		secrets[k] = types.FileObjectConfig(v)
	}
	for k, v := range s.Project.Configs {
		configs[k] = types.FileObjectConfig(v)
	}
	for _, ref := range c.Secrets {
		target := cmp.Or(ref.Target, ref.Source)
		if !path.IsAbs(target) {
			target = "/run/secrets/" + target
		}
		if err := s.fileMount(out, "secret", ref.Source, target, secrets); err != nil {
			return err
		}
	}
	for _, ref := range c.Configs {
		target := cmp.Or(ref.Target, ref.Source)
		if !path.IsAbs(target) {
			target = "/" + target
		}
		if err := s.fileMount(out, "config", ref.Source, target, configs); err != nil {
			return err
		}
	}
	if len(out.Tmpfs) == 0 {
		out.Tmpfs = nil
	}
	return nil
}

// fileMount mounts a file secret or config read-only at target.
func (s *Service) fileMount(out *deploy.ContainerConfig, kind, source, target string, defs map[string]types.FileObjectConfig) error {
	def, ok := defs[source]
	switch {
	case !ok:
		return fmt.Errorf("compose service %s: %s %s is not defined in the project", s.Name(), kind, source)
	case def.File == "":
		return &UnsupportedError{Service: s.Name(), Fields: []string{kind + " " + source + " (only file " + kind + "s are carried over)"}}
	}
	out.Binds = append(out.Binds, def.File+":"+target+":ro")
	return nil
}
