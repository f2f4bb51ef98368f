package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

// Small fakes of the engine's interfaces, for the run functions' tests:
// they decide nothing themselves (deploy's own tests cover the engine with
// richer fakes, which this package cannot import), they only hold what a
// run reads and record what it asks.

// fakeDocker is the Docker engine: containers and images to list and
// inspect, a lock and a history. Anything that would change a container
// fails, naming the call.
type fakeDocker struct {
	mu         sync.Mutex
	containers []deploy.Container
	images     map[string]deploy.Image
	holder     *deploy.Holder
	records    []deploy.Record
	calls      []string
	closed     bool
}

var _ dockerClient = (*fakeDocker)(nil)

func (d *fakeDocker) call(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf(format, args...))
}

func (d *fakeDocker) List(_ context.Context, sel map[string]string) ([]deploy.Container, error) {
	var out []deploy.Container
	for _, c := range d.containers {
		match := true
		for k, v := range sel {
			if got, ok := c.Labels[k]; !ok || (v != "" && got != v) {
				match = false
			}
		}
		if match {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (d *fakeDocker) Inspect(_ context.Context, id string) (deploy.Container, error) {
	for _, c := range d.containers {
		if c.ID == id {
			return c, nil
		}
	}
	return deploy.Container{}, fmt.Errorf("%w: %s", deploy.ErrContainerNotFound, id)
}

func (d *fakeDocker) Image(_ context.Context, ref string) (deploy.Image, error) {
	if img, ok := d.images[ref]; ok {
		return img, nil
	}
	return deploy.Image{}, fmt.Errorf("%w: %s", deploy.ErrImageNotFound, ref)
}

// errNotScripted is what the fake answers to a call that would change
// something.
var errNotScripted = errors.New("fake docker: not scripted")

func (d *fakeDocker) Pull(_ context.Context, ref string) error {
	d.call("pull %s", ref)
	return errNotScripted
}

func (d *fakeDocker) Create(_ context.Context, spec deploy.CreateSpec) (deploy.Container, []string, error) {
	d.call("create %s", spec.Image)
	return deploy.Container{}, nil, errNotScripted
}

func (d *fakeDocker) CopyFiles(_ context.Context, id string, _ []deploy.File) error {
	d.call("copy %s", id)
	return errNotScripted
}

func (d *fakeDocker) Start(_ context.Context, id string) error {
	d.call("start %s", id)
	return errNotScripted
}

func (d *fakeDocker) Stop(_ context.Context, id string, _ time.Duration) error {
	d.call("stop %s", id)
	return errNotScripted
}

func (d *fakeDocker) Remove(_ context.Context, id string) error {
	d.call("remove %s", id)
	return nil
}

func (d *fakeDocker) Logs(context.Context, string, int) (string, error) { return "", nil }

func (d *fakeDocker) Exec(_ context.Context, id string, cmd []string) (deploy.ExecResult, error) {
	d.call("exec %s %s", id, cmd[0])
	return deploy.ExecResult{}, errNotScripted
}

func (d *fakeDocker) Lock(_ context.Context, app, _ string, h deploy.Holder) error {
	d.call("lock %s", app)
	d.holder = &h
	return nil
}

func (d *fakeDocker) Unlock(_ context.Context, app string, held *deploy.Holder) error {
	d.call("unlock %s", app)
	d.holder = nil
	return nil
}

func (d *fakeDocker) LockHolder(context.Context, string) (*deploy.Holder, error) {
	return d.holder, nil
}

func (d *fakeDocker) AddRecord(_ context.Context, rec deploy.Record, _ int) error {
	d.call("record %s %s", rec.Operation, rec.Result)
	d.records = append([]deploy.Record{rec}, d.records...)
	return nil
}

func (d *fakeDocker) Records(_ context.Context, app string) ([]deploy.Record, error) {
	var out []deploy.Record
	for _, r := range d.records {
		if app == "" || r.App == app {
			out = append(out, r)
		}
	}
	return out, nil
}

func (d *fakeDocker) Close() error {
	d.closed = true
	return nil
}

// fakeRouter is Traefik's API: a fixed list of services.
type fakeRouter struct{ services []deploy.Service }

func (r fakeRouter) Services(context.Context) ([]deploy.Service, error) { return r.services, nil }

func (r fakeRouter) Service(_ context.Context, name string) (deploy.Service, error) {
	for _, s := range r.services {
		if s.Name == name {
			return s, nil
		}
	}
	return deploy.Service{}, fmt.Errorf("%w: %s", deploy.ErrServiceNotFound, name)
}

// fakeCompleter answers shell completion's two questions from lists.
type fakeCompleter struct {
	containers []map[string]string // labels
	repoTags   []string
	closed     bool
}

func (c *fakeCompleter) LabelValues(_ context.Context, filter, label string) ([]string, error) {
	var out []string
	for _, labels := range c.containers {
		if hasLabels(labels, map[string]bool{filter: true}) {
			out = append(out, labels[label])
		}
	}
	return out, nil
}

func (c *fakeCompleter) RepoTags(_ context.Context, reference string) ([]string, error) {
	var out []string
	for _, ref := range c.repoTags {
		if repo, _, _ := cutTag(ref); repo == reference {
			out = append(out, ref)
		}
	}
	return out, nil
}

func (c *fakeCompleter) Close() error {
	c.closed = true
	return nil
}

func cutTag(ref string) (repo, tag string, ok bool) {
	for i := len(ref) - 1; i >= 0 && ref[i] != '/'; i-- {
		if ref[i] == ':' {
			return ref[:i], ref[i+1:], true
		}
	}
	return ref, "", false
}

// fakeFactory is a factory over docker and router, with plain progress to
// a buffer the test can read (through the returned *events) and a fixed
// clock.
func fakeFactory(t *testing.T, docker *fakeDocker, router deploy.Observer) *factory {
	t.Helper()
	f := newFactory()
	f.Docker = func(context.Context) (dockerClient, error) { return docker, nil }
	f.Router = func(*traefikOptions) (deploy.Observer, error) { return router, nil }
	f.Progress = func(_ string, w io.Writer) progress { return nopClose{newPlainReporter(w)} }
	f.Completer = func(context.Context) (completer, error) { return nil, errors.New("fake: no completer") }
	f.Now = func() time.Time { return fakeNow }
	f.Processes = nil
	return f
}

var fakeNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// parseCmd runs args through a root like deployctl's (DEPLOYCTL_*,
// --progress, flag errors) holding only the command newCmd makes, with a
// runF that keeps the options it is given: flags -> options, with no
// Docker and no Traefik. The options' writers are cleared.
func parseCmd[T any](t *testing.T, newCmd func(runF func(*T) error) *cobra.Command, args ...string) (*T, error) {
	t.Helper()
	var got *T
	root := newBareRoot(io.Discard, io.Discard)
	root.AddCommand(newCmd(func(o *T) error { got = o; return nil }))
	root.SetArgs(args)
	err := root.Execute()
	return got, err
}

func rolloutCmdF(runF func(*rolloutOptions) error) *cobra.Command {
	return newRolloutCmd(nil, runF)
}

// webContainer is a running, healthy container of app web at version v,
// on network proxy at ip.
func webContainer(v, ip string) deploy.Container {
	return deploy.Container{
		ID: "id-web-" + v, Name: "web-" + v + "-abcdef", Image: "web:" + v, State: "running", Health: "healthy",
		Created: fakeNow.Add(-2 * time.Hour),
		Labels: map[string]string{
			deploy.LabelApp: "web", deploy.LabelVersion: v, deploy.LabelImage: "web", deploy.LabelDrain: "probe",
			"traefik.enable": "true", "traefik.http.services.web.loadbalancer.server.port": "8080",
		},
		Networks:    map[string]string{"proxy": ip},
		Ports:       []int{8080},
		Healthcheck: &deploy.Healthcheck{Test: []string{"CMD", deploy.ProbePath, "probe"}},
	}
}
