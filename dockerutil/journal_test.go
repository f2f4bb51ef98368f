package dockerutil_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/dockerutil"
	"github.com/deployctl/deployctl/internal/testenv"
)

// The deploy lock against the real Docker engine: taking it is atomic, and
// releasing or breaking a lock removes that lock only, never one another
// run took since.
func TestLockIsAtomicAndUnlockRemovesOnlyItsOwnLock(t *testing.T) {
	cli := testenv.Docker(t)
	image := testenv.AppImage(t, cli, testenv.AppImageOptions{Tag: "lock"})
	ctx := context.Background()
	rt, err := dockerutil.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	app := "locktest-" + testenv.RunID()
	t.Cleanup(func() { rt.Unlock(context.Background(), app, nil) })

	holder := func(pid int) deploy.Holder {
		now := time.Now()
		return deploy.Holder{User: "test", Host: "h", PID: pid, Since: now, Expires: now.Add(time.Hour)}
	}
	held := func() *deploy.Holder {
		t.Helper()
		h, err := rt.LockHolder(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	// Eight runs at once: exactly one gets it, the others are told who.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []deploy.Holder
		locked  int
	)
	for pid := 1; pid <= 8; pid++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := holder(pid)
			err := rt.Lock(ctx, app, image, h)
			mu.Lock()
			defer mu.Unlock()
			var le *deploy.LockedError
			switch {
			case err == nil:
				winners = append(winners, h)
			case errors.As(err, &le):
				locked++
			default:
				t.Errorf("pid %d: %v", pid, err)
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 || locked != 7 {
		t.Fatalf("%d runs took the lock and %d were refused, want 1 and 7", len(winners), locked)
	}
	a := winners[0]
	if h := held(); h == nil || !h.Same(a) {
		t.Fatalf("lock held by %v, want %v", h, a)
	}

	// Two runs find a's lock stale. The first breaks it and takes its own;
	// the second, breaking the lock it saw, must leave the new one alone.
	stale := *held()
	if err := rt.Unlock(ctx, app, &stale); err != nil {
		t.Fatal(err)
	}
	b := holder(100)
	if err := rt.Lock(ctx, app, image, b); err != nil {
		t.Fatalf("taking the lock after breaking a stale one: %v", err)
	}
	if err := rt.Unlock(ctx, app, &stale); err != nil {
		t.Fatal(err)
	}
	if h := held(); h == nil || !h.Same(b) {
		t.Fatalf("breaking a stale lock that was already broken removed the lock taken since: held by %v, want %v", h, b)
	}
	// The same goes for a run releasing a lock it no longer holds.
	if err := rt.Unlock(ctx, app, &a); err != nil {
		t.Fatal(err)
	}
	if h := held(); h == nil || !h.Same(b) {
		t.Fatalf("releasing an old holder's lock removed b's: held by %v", h)
	}

	// deployctl unlock (whoever holds it), and unlocking a free lock.
	if err := rt.Unlock(ctx, app, nil); err != nil {
		t.Fatal(err)
	}
	if h := held(); h != nil {
		t.Fatalf("still locked by %v", h)
	}
	if err := rt.Unlock(ctx, app, &b); err != nil {
		t.Errorf("unlocking a free lock: %v", err)
	}
}

// A signal or --timeout can cancel a rollout while Docker is creating its
// container. Whatever the moment, Create either returns the container or
// none was made: a container whose ID deployctl never learnt would be left
// behind, and so would a lock container nobody knows they hold.
func TestCreateCancelledAtAnyMomentLeavesNoOrphan(t *testing.T) {
	cli := testenv.Docker(t)
	image := testenv.AppImage(t, cli, testenv.AppImageOptions{Tag: "orphan"})
	rt, err := dockerutil.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	exists := func(name string) (string, bool) {
		res, err := cli.ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
		if err != nil {
			return "", false
		}
		return res.Container.ID, true
	}
	returned := 0
	for i, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 80 * time.Millisecond} {
		name := fmt.Sprintf("deployctl-orphan-%s-%d", testenv.RunID(), i)
		app := "orphan-" + testenv.RunID()
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(delay, cancel)
		c, _, err := rt.Create(ctx, deploy.CreateSpec{Name: name, Image: image, Labels: map[string]string{deploy.LabelApp: app}})
		timer.Stop()
		cancel()
		if err == nil {
			returned++
		}
		// A create the engine got but the client gave up on finishes
		// within a few seconds.
		time.Sleep(2 * time.Second)
		id, ok := exists(name)
		switch {
		case err == nil && (!ok || id != c.ID):
			t.Errorf("cancelled after %s: Create returned %s, the engine has %q", delay, c.ID, id)
		case err != nil && ok:
			t.Errorf("cancelled after %s: Create failed (%v), but the engine made container %s: an orphan", delay, err, id[:12])
		}
		if ok {
			rt.Remove(context.Background(), id)
		}
		lockApp := fmt.Sprintf("%s-%d", app, i)
		ctx, cancel = context.WithCancel(context.Background())
		timer = time.AfterFunc(delay, cancel)
		err = rt.Lock(ctx, lockApp, image, deploy.Holder{User: "test", PID: i, Since: time.Now()})
		timer.Stop()
		cancel()
		time.Sleep(2 * time.Second)
		h, herr := rt.LockHolder(context.Background(), lockApp)
		if herr != nil {
			t.Fatal(herr)
		}
		if err != nil && h != nil {
			t.Errorf("cancelled after %s: Lock failed (%v), but the engine holds a lock for %s", delay, err, h)
		}
		if err == nil && h == nil {
			t.Errorf("cancelled after %s: Lock succeeded, but there is no lock", delay)
		}
		rt.Unlock(context.Background(), lockApp, nil)
	}
	// Before creates were shielded from cancellation, those cancelled 1-20
	// ms in failed here and left a container or a lock behind.
	t.Logf("%d of 6 cancelled creates returned their container", returned)
}
