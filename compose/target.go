package compose

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/mattn/go-shellwords"

	"github.com/deployctl/deployctl/deploy"
)

// Labels compose puts on the networks and volumes it makes.
const (
	LabelNetwork = "com.docker.compose.network"
	LabelVolume  = "com.docker.compose.volume"
)

// App is the deployctl app of the service: <project>-<service>, the
// prefix of the names compose gives its containers.
func (s *Service) App() string { return s.Project.Name + "-" + s.Name() }

// Selector finds the service's containers, whoever made them: compose's
// labels of a replica of the service (a one-off, `docker compose run`,
// is none of them).
func (s *Service) Selector() map[string]string {
	return map[string]string{LabelProject: s.Project.Name, LabelService: s.Name(), LabelOneoff: "False"}
}

// Target is the service as a rollout's target (deploy.Target): the
// configuration `docker compose up` would give its containers, compose's
// labels on each (numbered as compose numbers them), its networks and
// named volumes as compose names and labels them, and the labels of its
// route containers: a one-off of the service, which `up` leaves alone,
// `ps -a` lists and `down --remove-orphans` removes. envFiles are the
// --env-file values given, if any.
func (s *Service) Target(envFiles []string) (*deploy.Target, error) {
	cfg, err := s.ContainerConfig()
	if err != nil {
		return nil, err
	}
	hash, err := ServiceHash(s.Config)
	if err != nil {
		return nil, fmt.Errorf("compose: the config hash of %s: %w", s.Name(), err)
	}
	nets, err := s.networkSpecs()
	if err != nil {
		return nil, err
	}
	vols, err := s.volumeSpecs()
	if err != nil {
		return nil, err
	}
	return &deploy.Target{
		Config:      cfg,
		NumberLabel: LabelNumber,
		Labels: func(n int, imageID string) (map[string]string, error) {
			return ContainerLabels(s, n, imageID, envFiles)
		},
		Networks:  nets,
		Volumes:   vols,
		PostStart: hooks(s.Config.PostStart),
		PreStop:   hooks(s.Config.PreStop),
		OneOffLabels: map[string]string{
			LabelProject: s.Project.Name, LabelService: s.Name(), LabelOneoff: "True",
			LabelConfigHash: hash, LabelVersion: ComposeVersion,
			LabelWorkingDir: s.Project.WorkingDir, LabelConfigFiles: strings.Join(s.Project.ComposeFiles, ","),
		},
	}, nil
}

// networkSpecs are the project networks the service joins, as compose
// makes them (pkg/compose create.go prepareNetworks, resolveOrCreateNetwork):
// its labels, and the config hash of the network's definition.
func (s *Service) networkSpecs() ([]deploy.NetworkSpec, error) {
	var out []deploy.NetworkSpec
	for _, key := range slices.Sorted(maps.Keys(s.Config.Networks)) {
		n, ok := s.Project.Networks[key]
		if !ok {
			return nil, fmt.Errorf("compose service %s: network %s is not defined in the project", s.Name(), key)
		}
		name := cmp.Or(n.Name, key)
		if n.External {
			out = append(out, deploy.NetworkSpec{Name: name, External: true})
			continue
		}
		if n.Ipam.Driver != "" || len(n.Ipam.Config) > 0 || n.EnableIPv6 != nil || n.EnableIPv4 != nil {
			return nil, &UnsupportedError{Service: s.Name(), Fields: []string{"networks." + key + ".ipam/enable_ipv4/enable_ipv6 (create the network with docker compose up, or declare it external)"}}
		}
		hash, err := hashJSON(n)
		if err != nil {
			return nil, err
		}
		labels := map[string]string{}
		maps.Copy(labels, n.Labels)
		labels[LabelNetwork], labels[LabelProject], labels[LabelVersion], labels[LabelConfigHash] = key, s.Project.Name, ComposeVersion, hash
		out = append(out, deploy.NetworkSpec{Name: name, Driver: n.Driver, Options: n.DriverOpts, Labels: labels, Internal: n.Internal, Attachable: n.Attachable})
	}
	return out, nil
}

// volumeSpecs are the project's named volumes the service mounts, as
// compose makes them (create.go ensureProjectVolumes, createVolume).
func (s *Service) volumeSpecs() ([]deploy.VolumeSpec, error) {
	var out []deploy.VolumeSpec
	seen := map[string]bool{}
	for _, m := range s.Config.Volumes {
		if m.Type != types.VolumeTypeVolume || m.Source == "" || seen[m.Source] {
			continue
		}
		seen[m.Source] = true
		v, ok := s.Project.Volumes[m.Source]
		if !ok {
			continue // not a project volume: Docker makes it as the container is created
		}
		name := cmp.Or(v.Name, m.Source)
		if v.External {
			out = append(out, deploy.VolumeSpec{Name: name, External: true})
			continue
		}
		h := v
		if h.Driver == "" {
			h.Driver = "local" // compose's VolumeHash does the same
		}
		hash, err := hashJSON(h)
		if err != nil {
			return nil, err
		}
		labels := map[string]string{}
		maps.Copy(labels, v.Labels)
		labels[LabelVolume], labels[LabelProject], labels[LabelVersion], labels[LabelConfigHash] = m.Source, s.Project.Name, ComposeVersion, hash
		out = append(out, deploy.VolumeSpec{Name: name, Driver: v.Driver, Options: v.DriverOpts, Labels: labels})
	}
	return out, nil
}

// hashJSON is compose's config hash of a network or volume definition:
// the sha256 of its JSON (pkg/compose hash.go NetworkHash, VolumeHash).
func hashJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// TraefikNetwork is the network Traefik reaches the service on: its
// traefik.docker.network label (or traefik.swarm.network), else its only
// network.
func (s *Service) TraefikNetwork() (string, error) {
	for _, k := range []string{"traefik.docker.network", "traefik.swarm.network"} {
		if v := s.Config.Labels[k]; v != "" {
			return v, nil
		}
	}
	if len(s.Config.Networks) == 1 {
		for key := range s.Config.Networks {
			if n, ok := s.Project.Networks[key]; ok {
				return cmp.Or(n.Name, key), nil
			}
		}
	}
	var names []string
	for key := range s.Config.Networks {
		names = append(names, cmp.Or(s.Project.Networks[key].Name, key))
	}
	slices.Sort(names)
	return "", &RefusalError{Service: s.Name(), Field: "labels", Reason: fmt.Sprintf("the service is on networks %v, and none says which one Traefik reaches it on", names),
		Fix: "add the label traefik.docker.network=<the network Traefik is on>"}
}

// Update is the service's deploy.update_config in deployctl's terms.
type Update struct {
	// Parallelism: replicas replaced at a time; 0: not given (deployctl's
	// atomic switch replaces them all at once).
	Parallelism int
	// StopFirst: order: stop-first, asked for explicitly.
	StopFirst bool
	// Monitor is the watch window after the switch (--watch).
	Monitor time.Duration
	// Delay is the pause between steps.
	Delay time.Duration
	// Ignored are the settings deployctl does not honour, each with why.
	Ignored []string
}

// Update reads the service's deploy.update_config. A failure_action
// other than rollback is refused: deployctl always restores the old
// version when a step fails.
func (s *Service) Update() (Update, error) {
	var u Update
	if s.Config.Deploy == nil || s.Config.Deploy.UpdateConfig == nil {
		return u, nil
	}
	c := s.Config.Deploy.UpdateConfig
	if c.Parallelism != nil {
		u.Parallelism = int(*c.Parallelism)
	}
	switch c.Order {
	case "", "start-first":
	case "stop-first":
		u.StopFirst = true
	default:
		return u, &RefusalError{Service: s.Name(), Field: "deploy.update_config.order", Reason: fmt.Sprintf("%q is neither start-first nor stop-first", c.Order), Fix: "use start-first"}
	}
	switch c.FailureAction {
	case "", "rollback":
	default:
		return u, &RefusalError{Service: s.Name(), Field: "deploy.update_config.failure_action",
			Reason: fmt.Sprintf("%q is not supported: deployctl always puts the old version back when a step fails, before it is out of Traefik", c.FailureAction),
			Fix:    "use failure_action: rollback, or remove it"}
	}
	u.Monitor = time.Duration(c.Monitor)
	u.Delay = time.Duration(c.Delay)
	if c.MaxFailureRatio != 0 {
		u.Ignored = append(u.Ignored, fmt.Sprintf("deploy.update_config.max_failure_ratio (%g): any failed replica stops the rollout", c.MaxFailureRatio))
	}
	return u, nil
}

// ImageRepo is the repository of the service's image, whose tag is the
// version (deployctl's --image): refused when the tag is more than the
// version (image: web:${TAG}-alpine) or a digest pins the image.
func ImageRepo(s *Service, version string) (string, error) {
	name, tag := splitTag(s.Config.Image)
	switch {
	case strings.Contains(name, "@"):
		return "", &RefusalError{Service: s.Name(), Field: "image", Reason: fmt.Sprintf("%s is pinned by digest, so no version can change it", s.Config.Image),
			Fix: "write the image with a tag variable instead: image: <repository>:${TAG}"}
	case tag != version:
		return "", &RefusalError{Service: s.Name(), Field: "image", Reason: fmt.Sprintf("its tag is %q with version %s: deployctl deploys <repository>:<version>", tag, version),
			Fix: "make the tag the version variable alone: image: <repository>:${TAG}"}
	}
	return name, nil
}

// Extension is the service's x-deployctl key: deployctl's own settings
// in the compose file.
const Extension = "x-deployctl"

// Release is the service's release commands from its x-deployctl key
// (pre-deploy, post-deploy), each a list (argv) or a string split as
// compose splits command: (quotes honoured, no shell).
func (s *Service) Release() (pre, post []string, err error) {
	raw, ok := s.Config.Extensions[Extension]
	if !ok {
		return nil, nil, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, nil, &RefusalError{Service: s.Name(), Field: Extension, Reason: "it is not a mapping", Fix: "write x-deployctl: {pre-deploy: <command>, post-deploy: <command>}"}
	}
	for k := range m {
		if k != "pre-deploy" && k != "post-deploy" {
			return nil, nil, &RefusalError{Service: s.Name(), Field: Extension + "." + k, Reason: "deployctl knows no such setting", Fix: "use pre-deploy or post-deploy"}
		}
	}
	cmd := func(key string) ([]string, error) {
		switch v := m[key].(type) {
		case nil:
			return nil, nil
		case string:
			argv, err := SplitCommand(v)
			if err != nil {
				return nil, &RefusalError{Service: s.Name(), Field: Extension + "." + key, Reason: err.Error(), Fix: "write the command as a list: [bin/rails, db:migrate]"}
			}
			return argv, nil
		case []any:
			var argv []string
			for _, a := range v {
				str, ok := a.(string)
				if !ok {
					return nil, &RefusalError{Service: s.Name(), Field: Extension + "." + key, Reason: fmt.Sprintf("item %v is not a string", a), Fix: "quote it"}
				}
				argv = append(argv, str)
			}
			return argv, nil
		}
		return nil, &RefusalError{Service: s.Name(), Field: Extension + "." + key, Reason: "it is neither a string nor a list", Fix: "write the command as a list: [bin/rails, db:migrate]"}
	}
	if pre, err = cmd("pre-deploy"); err != nil {
		return nil, nil, err
	}
	post, err = cmd("post-deploy")
	return pre, post, err
}

// SplitCommand splits a command line as compose splits a string
// command: (shell-like words and quotes, no expansion, no shell).
func SplitCommand(line string) ([]string, error) {
	argv, err := shellwords.Parse(line)
	if err != nil {
		return nil, fmt.Errorf("cannot split %q into words: %w", line, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("the command is empty")
	}
	return argv, nil
}

// hooks are compose's lifecycle hooks in deployctl's terms.
func hooks(hs []types.ServiceHook) []deploy.Hook {
	var out []deploy.Hook
	for _, h := range hs {
		d := deploy.Hook{Command: []string(h.Command), User: h.User, WorkingDir: h.WorkingDir, Privileged: h.Privileged}
		for _, k := range slices.Sorted(maps.Keys(h.Environment)) {
			if v := h.Environment[k]; v != nil {
				d.Env = append(d.Env, k+"="+*v)
			} else {
				d.Env = append(d.Env, k)
			}
		}
		out = append(out, d)
	}
	return out
}
