package traefikapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// DefaultThrottle is Traefik's own default providersThrottleDuration.
const DefaultThrottle = 2 * time.Second

// DockerProvider is the engine's router for Traefik's docker provider
// (deploy.Router, deploy.Drainer, deploy.Propagator): Traefik's API
// observes; the containers' Traefik labels say how Traefik reaches them
// (LabelEndpoint); a drain is the drain-aware probe's marker file, copied
// into the container through the engine's Runtime, which fails the
// container's Docker health, which Traefik follows within its
// providersThrottleDuration (Throttle).
type DockerProvider struct {
	// API is Traefik's API (Client.Router), or a fake of it.
	API deploy.Observer
	// Runtime is the Docker engine the containers run on.
	Runtime deploy.Runtime
	// Throttle is Traefik's providersThrottleDuration; 0: DefaultThrottle.
	Throttle time.Duration
}

var (
	_ deploy.Router           = DockerProvider{}
	_ deploy.Drainer          = DockerProvider{}
	_ deploy.Propagator       = DockerProvider{}
	_ deploy.TraefikVersioner = DockerProvider{}
)

// Name implements deploy.Router.
func (DockerProvider) Name() string { return "Traefik" }

// Services implements deploy.Router.
func (p DockerProvider) Services(ctx context.Context) ([]deploy.Service, error) {
	return p.API.Services(ctx)
}

// Service implements deploy.Router.
func (p DockerProvider) Service(ctx context.Context, name string) (deploy.Service, error) {
	return p.API.Service(ctx, name)
}

// Endpoint implements deploy.Router from the container's labels.
func (DockerProvider) Endpoint(c deploy.Container) (deploy.Endpoint, error) {
	return LabelEndpoint(c)
}

// Drain implements deploy.Drainer: the marker says drain, the probe fails
// the container's health, Traefik drops it.
func (p DockerProvider) Drain(ctx context.Context, c deploy.Container) error {
	return p.mark(ctx, c, deploy.MarkerDrain)
}

// Restore implements deploy.Drainer: the marker says serve again.
func (p DockerProvider) Restore(ctx context.Context, c deploy.Container) error {
	return p.mark(ctx, c, deploy.MarkerServe)
}

// mark writes the probe's marker: one CopyFiles call, which the engine's
// fault tests count (a missing container stays deploy.ErrContainerNotFound).
func (p DockerProvider) mark(ctx context.Context, c deploy.Container, marker string) error {
	err := p.Runtime.CopyFiles(ctx, c.ID, []deploy.File{{Path: deploy.MarkerPath, Mode: 0o644, Data: []byte(marker)}})
	if err != nil {
		return fmt.Errorf("writing the drain marker: %w", err)
	}
	return nil
}

// Drained implements deploy.Drainer: the marker says drain (read through
// the runtime, when it can read files: deploy.FileReader).
func (p DockerProvider) Drained(ctx context.Context, c deploy.Container) (bool, error) {
	fr, ok := p.Runtime.(deploy.FileReader)
	if !ok {
		return false, fmt.Errorf("reading the drain marker: %w", errors.ErrUnsupported)
	}
	b, err := fr.ReadFile(ctx, c.ID, deploy.MarkerPath)
	if err != nil {
		return false, fmt.Errorf("reading the drain marker: %w", err)
	}
	return strings.HasPrefix(string(b), strings.TrimSpace(deploy.MarkerDrain)), nil
}

// Propagation implements deploy.Propagator: Traefik's throttle.
func (p DockerProvider) Propagation() time.Duration {
	if p.Throttle == 0 {
		return DefaultThrottle
	}
	return p.Throttle
}

// TraefikVersion implements deploy.TraefikVersioner when API does.
func (p DockerProvider) TraefikVersion(ctx context.Context) (string, error) {
	if v, ok := p.API.(deploy.TraefikVersioner); ok {
		return v.TraefikVersion(ctx)
	}
	return "", errors.ErrUnsupported
}

var _ deploy.ServiceRouter = DockerProvider{}

// ServiceEndpoint implements deploy.ServiceRouter for Traefik's swarm
// provider, which reads a Swarm service's labels as the docker provider
// reads a container's: the services it names are "<name>@swarm" from v3 on
// (a provider of its own) and "<name>@docker" in v2 (the docker provider
// in swarmMode); the network label is traefik.swarm.network (v3) or
// traefik.docker.network.
func (p DockerProvider) ServiceEndpoint(ctx context.Context, labels map[string]string) (deploy.Endpoint, error) {
	ep, err := LabelEndpoint(deploy.Container{Labels: labels})
	if err != nil {
		return ep, err
	}
	provider := "swarm"
	if v, verr := p.TraefikVersion(ctx); verr == nil && majorVersion(v) == 2 {
		provider = "docker"
	} else if n := labels["traefik.swarm.network"]; n != "" {
		ep.Network = n
	}
	for i, s := range ep.Services {
		ep.Services[i] = strings.TrimSuffix(s, "@docker") + "@" + provider
	}
	return ep, nil
}
