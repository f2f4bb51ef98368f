package dockerutil

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
)

// The journal lives in Docker objects on the Docker host:
//   - the deploy lock of an app is a container named deployctl-lock-<app>,
//     created (never started) from any local image: Docker refuses a second
//     container of the same name, which makes taking the lock atomic; its
//     labels say who holds it. On a Swarm manager it is a Swarm config of
//     that name instead: one for the whole cluster (the Swarm's store
//     refuses a second config of a name), and no image needed (a manager
//     need not have the app's image);
//   - each history record is a volume named deployctl-history-<app>-<time>,
//     whose label holds the record as JSON (a volume with labels is the
//     cheapest Docker object that carries data and can be listed by label).
const (
	lockPrefix     = "deployctl-lock-"
	historyPrefix  = "deployctl-history-"
	labelLock      = "deployctl.lock"
	labelHolder    = "deployctl.lock.holder"
	labelHistory   = "deployctl.history"
	labelRecord    = "deployctl.record"
	maxRecordBytes = 8 << 10
)

var _ deploy.Journal = (*Runtime)(nil)

// lockSettle bounds how long Lock waits for a lock container that Docker
// is creating or removing (its name taken, the container not inspectable):
// Docker finishes within moments, seconds on a busy host.
var lockSettle = 15 * time.Second

// Lock implements deploy.Journal.
func (r *Runtime) Lock(ctx context.Context, app, image string, h deploy.Holder) error {
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if r.swarmManager(ctx) {
		return r.lockConfig(ctx, app, hb)
	}
	// Docker reserves a container's name before the container can be
	// inspected, and frees it only once it is gone. A conflict with no
	// container to read is a lock container being created (maybe by a run
	// killed meanwhile: Docker still finishes it) or removed: wait until
	// there is a holder to judge or the name is free.
	deadline := time.Now().Add(lockSettle)
	delay := 10 * time.Millisecond
	for {
		holder, err := r.tryLock(ctx, app, image, hb)
		if err != nil || holder == nil {
			return err
		}
		if *holder != (deploy.Holder{}) {
			return &deploy.LockedError{App: app, Holder: *holder}
		}
		if !time.Now().Before(deadline) {
			return &deploy.LockedError{App: app, Holder: deploy.Holder{User: fmt.Sprintf("unknown (Docker has been creating or removing the lock container for over %s)", lockSettle)}}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(delay):
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// tryLock creates the lock container (nil holder, nil error). On a name
// conflict it returns who holds the lock, or the zero Holder while the
// container of that name is being created or removed (a lock container
// always records its holder's start time).
func (r *Runtime) tryLock(ctx context.Context, app, image string, hb []byte) (*deploy.Holder, error) {
	// Not abandoned half-way: a lock container created after the client
	// gave up would be a lock nobody knows they hold.
	ctx, cancel := uncancelled(ctx)
	defer cancel()
	_, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: lockPrefix + app,
		Config: &container.Config{
			Image:      image,
			Labels:     map[string]string{labelLock: app, labelHolder: string(hb)},
			Entrypoint: []string{"/deployctl-lock-never-runs"},
		},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err == nil {
		return nil, nil
	}
	if cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is already in use") {
		holder, herr := r.LockHolder(ctx, app)
		if herr != nil {
			return nil, herr
		}
		if holder == nil {
			return &deploy.Holder{}, nil
		}
		return holder, nil
	}
	return nil, fmt.Errorf("creating the lock container %s%s: %w", lockPrefix, app, wrap(err))
}

// Unlock implements deploy.Journal. The lock container is removed by its
// ID, read together with its holder: a lock container of the same name
// created in between (another run took the lock) is left alone.
func (r *Runtime) Unlock(ctx context.Context, app string, held *deploy.Holder) error {
	if r.swarmManager(ctx) {
		id, h, err := r.configHolder(ctx, app)
		if err != nil || h != nil {
			if err != nil || held != nil && !h.Same(*held) {
				return err
			}
			if _, err := r.cli.ConfigRemove(ctx, id, client.ConfigRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				return wrap(err)
			}
			return nil
		}
	}
	id, h, err := r.lockHolder(ctx, app)
	if err != nil || h == nil || held != nil && !h.Same(*held) {
		return err
	}
	_, err = r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return wrap(err)
	}
	return nil
}

// LockHolder implements deploy.Journal.
func (r *Runtime) LockHolder(ctx context.Context, app string) (*deploy.Holder, error) {
	if r.swarmManager(ctx) {
		if _, h, err := r.configHolder(ctx, app); err != nil || h != nil {
			return h, err
		}
	}
	_, h, err := r.lockHolder(ctx, app)
	return h, err
}

// lockHolder returns the ID of the app's lock container and its holder; a
// nil holder when there is none.
func (r *Runtime) lockHolder(ctx context.Context, app string) (string, *deploy.Holder, error) {
	res, err := r.cli.ContainerInspect(ctx, lockPrefix+app, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, wrap(err)
	}
	var h deploy.Holder
	if res.Container.Config != nil {
		if err := json.Unmarshal([]byte(res.Container.Config.Labels[labelHolder]), &h); err != nil {
			h = deploy.Holder{User: "unknown (unreadable lock label)"}
		}
	}
	return res.Container.ID, &h, nil
}

// AddRecord implements deploy.Journal.
func (r *Runtime) AddRecord(ctx context.Context, rec deploy.Record, keep int) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if len(b) > maxRecordBytes {
		rec.Phases, rec.Error = nil, firstN(rec.Error, 500)
		if b, err = json.Marshal(rec); err != nil {
			return err
		}
	}
	name := fmt.Sprintf("%s%s-%d", historyPrefix, rec.App, rec.Started.UnixNano())
	_, err = r.cli.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:   name,
		Labels: map[string]string{labelHistory: rec.App, labelRecord: string(b)},
	})
	if err != nil {
		return wrap(err)
	}
	vols, err := r.historyVolumes(ctx, rec.App)
	if err != nil {
		return err
	}
	for i, v := range vols {
		if i >= keep {
			if _, err := r.cli.VolumeRemove(ctx, v.name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				return wrap(err)
			}
		}
	}
	return nil
}

// Records implements deploy.Journal.
func (r *Runtime) Records(ctx context.Context, app string) ([]deploy.Record, error) {
	vols, err := r.historyVolumes(ctx, app)
	if err != nil {
		return nil, err
	}
	out := make([]deploy.Record, 0, len(vols))
	for _, v := range vols {
		out = append(out, v.rec)
	}
	return out, nil
}

type historyVolume struct {
	name string
	at   int64
	rec  deploy.Record
}

// historyVolumes lists app's records ("" for all apps), newest first.
func (r *Runtime) historyVolumes(ctx context.Context, app string) ([]historyVolume, error) {
	f := client.Filters{}
	if app == "" {
		f.Add("label", labelHistory)
	} else {
		f.Add("label", labelHistory+"="+app)
	}
	res, err := r.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return nil, wrap(err)
	}
	var out []historyVolume
	for _, v := range res.Items {
		var rec deploy.Record
		if err := json.Unmarshal([]byte(v.Labels[labelRecord]), &rec); err != nil {
			continue // not ours, or damaged: skip rather than fail the listing
		}
		at := rec.Started.UnixNano()
		if i := strings.LastIndex(v.Name, "-"); i >= 0 {
			if n, err := strconv.ParseInt(v.Name[i+1:], 10, 64); err == nil {
				at = n
			}
		}
		out = append(out, historyVolume{name: v.Name, at: at, rec: rec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at > out[j].at })
	return out, nil
}

// ReadFile implements deploy.FileReader: one regular file from a container.
func (r *Runtime) ReadFile(ctx context.Context, id, path string) ([]byte, error) {
	res, err := r.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, wrap(err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: not in the archive Docker returned", path)
			}
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, 1<<20))
		}
	}
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// swarmManager reports whether the engine is a Swarm manager (asked once).
func (r *Runtime) swarmManager(ctx context.Context) bool {
	r.mu.Lock()
	known, role := r.roleKnown, r.role
	r.mu.Unlock()
	if known {
		return role == "manager"
	}
	role, err := r.SwarmRole(ctx)
	if err != nil {
		return false
	}
	r.mu.Lock()
	r.roleKnown, r.role = true, role
	r.mu.Unlock()
	return role == "manager"
}

// lockConfig takes the app's deploy lock as a Swarm config. A lock
// container of an earlier deployctl on this manager still counts.
func (r *Runtime) lockConfig(ctx context.Context, app string, hb []byte) error {
	ctx, cancel := uncancelled(ctx)
	defer cancel()
	res, err := r.cli.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: lockPrefix + app, Labels: map[string]string{labelLock: app, labelHolder: string(hb)}},
		Data:        []byte("deployctl deploy lock of " + app + "\n"),
	}})
	if err != nil {
		if cerrdefs.IsConflict(err) || cerrdefs.IsAlreadyExists(err) || strings.Contains(err.Error(), "already exists") {
			_, h, herr := r.configHolder(ctx, app)
			if herr != nil {
				return herr
			}
			if h == nil { // released in between
				return &deploy.LockedError{App: app, Holder: deploy.Holder{User: "unknown (the lock was being released)"}}
			}
			return &deploy.LockedError{App: app, Holder: *h}
		}
		return fmt.Errorf("creating the Swarm config %s%s (the deploy lock): %w", lockPrefix, app, wrap(err))
	}
	if _, h, err := r.lockHolder(ctx, app); err != nil || h != nil {
		r.cli.ConfigRemove(ctx, res.ID, client.ConfigRemoveOptions{})
		if err != nil {
			return err
		}
		return &deploy.LockedError{App: app, Holder: *h}
	}
	return nil
}

// configHolder returns the ID of the app's lock config and its holder; a
// nil holder when there is none.
func (r *Runtime) configHolder(ctx context.Context, app string) (string, *deploy.Holder, error) {
	res, err := r.cli.ConfigInspect(ctx, lockPrefix+app, client.ConfigInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, wrap(err)
	}
	var h deploy.Holder
	if err := json.Unmarshal([]byte(res.Config.Spec.Labels[labelHolder]), &h); err != nil {
		h = deploy.Holder{User: "unknown (unreadable lock label)"}
	}
	return res.Config.ID, &h, nil
}
