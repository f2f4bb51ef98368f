package dockerutil

import (
	"context"

	"github.com/moby/moby/client"
)

// What shell completion asks of the engine (cmd/completion.go). A shell waits
// for these on every <Tab>, so each is one list call: Runtime.List would
// inspect every container.

// LabelValues returns the value of label on each container, running or
// not, that has filter (a label key, or key=value), in Docker's order.
func (r *Runtime) LabelValues(ctx context.Context, filter, label string) ([]string, error) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", filter)})
	if err != nil {
		return nil, wrap(err)
	}
	values := make([]string, 0, len(res.Items))
	for _, ct := range res.Items {
		values = append(values, ct.Labels[label])
	}
	return values, nil
}

// RepoTags returns the repo:tag references of the local images that match
// Docker's reference filter (a repository, or repository:tag).
func (r *Runtime) RepoTags(ctx context.Context, reference string) ([]string, error) {
	res, err := r.cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", reference)})
	if err != nil {
		return nil, wrap(err)
	}
	var refs []string
	for _, img := range res.Items {
		refs = append(refs, img.RepoTags...)
	}
	return refs, nil
}
