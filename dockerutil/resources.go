package dockerutil

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
)

// EnsureNetwork implements deploy.Resources.
func (r *Runtime) EnsureNetwork(ctx context.Context, n deploy.NetworkSpec) (bool, error) {
	_, err := r.cli.NetworkInspect(ctx, n.Name, client.NetworkInspectOptions{})
	switch {
	case err == nil:
		return false, nil
	case !cerrdefs.IsNotFound(err):
		return false, wrap(err)
	case n.External:
		return false, fmt.Errorf("no network named %s on the Docker host", n.Name)
	}
	_, err = r.cli.NetworkCreate(ctx, n.Name, client.NetworkCreateOptions{
		Driver: n.Driver, Options: n.Options, Labels: n.Labels, Internal: n.Internal, Attachable: n.Attachable,
	})
	if cerrdefs.IsConflict(err) {
		return false, nil // made meanwhile (a concurrent docker compose up)
	}
	return err == nil, wrap(err)
}

// EnsureVolume implements deploy.Resources.
func (r *Runtime) EnsureVolume(ctx context.Context, v deploy.VolumeSpec) (bool, error) {
	_, err := r.cli.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
	switch {
	case err == nil:
		return false, nil
	case !cerrdefs.IsNotFound(err):
		return false, wrap(err)
	case v.External:
		return false, fmt.Errorf("no volume named %s on the Docker host", v.Name)
	}
	_, err = r.cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: v.Name, Driver: v.Driver, DriverOpts: v.Options, Labels: v.Labels})
	return err == nil, wrap(err)
}

var _ deploy.Resources = (*Runtime)(nil)
