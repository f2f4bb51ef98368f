package compose

import (
	"fmt"
	"strings"
)

// RefusalError is a service configuration deployctl cannot roll out in
// place; the message says what and how to change it.
type RefusalError struct {
	Service string
	Field   string // the compose field at fault
	Reason  string
	Fix     string
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("compose service %s: %s: %s; %s", e.Service, e.Field, e.Reason, e.Fix)
}

// Refuse returns why the service cannot be rolled out in place (nil when
// it can): a rollout runs the old and the new containers side by side, so
// nothing of the service may be fixed to one container.
func Refuse(s *Service) error {
	c := s.Config
	refuse := func(field, reason, fix string) error {
		return &RefusalError{Service: s.Name(), Field: field, Reason: reason, Fix: fix}
	}
	switch {
	case c.Image == "" && c.Build != nil:
		return refuse("build", "the service has only build: and no image:, and deployctl deploys images",
			"build and push the image in CI, and name it with image: (image: registry.example.com/web:${WEB_VERSION})")
	case c.Image == "":
		return refuse("image", "the service names no image", "add image:")
	case c.ContainerName != "":
		return refuse("container_name", fmt.Sprintf("%q is a fixed name, and a rollout runs the old and the new container side by side, which cannot share it", c.ContainerName),
			"remove container_name: (compose then names the containers "+s.Project.Name+"-"+s.Name()+"-<n>)")
	case c.NetworkMode == "host":
		return refuse("network_mode", "host networking is not supported yet: the old and the new container would both bind the host's port",
			"put the service on a network Traefik reaches it on")
	}
	if published := publishedPorts(s); len(published) > 0 {
		return refuse("ports", fmt.Sprintf("host port(s) %s are published, and two containers cannot hold one host port", strings.Join(published, ", ")),
			"remove ports: (Traefik reaches the containers on their network), or publish no host port (ports: [\"8080\"] picks a free one each)")
	}
	return nil
}

// publishedPorts are the service's fixed host ports, as host:container.
func publishedPorts(s *Service) []string {
	var out []string
	for _, p := range s.Config.Ports {
		if p.Published == "" {
			continue // ports: ["8080"]: Docker picks a free host port for each
		}
		out = append(out, fmt.Sprintf("%s:%d", p.Published, p.Target))
	}
	return out
}
