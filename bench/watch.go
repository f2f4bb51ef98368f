package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/deployctl/deployctl/internal/harness"
)

// snapshot is the set of registered (listed, not DOWN) server URLs of a
// service, as seen by a poll that started at t.
type snapshot struct {
	t    time.Time
	urls map[string]bool
}

// traefikWatcher polls one service of Traefik's API every interval and
// keeps the snapshots where the set of servers changed.
type traefikWatcher struct {
	mu    sync.Mutex
	snaps []snapshot
	polls int
	stopc chan struct{}
	done  chan struct{}
}

func watchTraefik(tr *harness.Traefik, service string, interval time.Duration) *traefikWatcher {
	w := &traefikWatcher{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var last map[string]bool
		for {
			t := time.Now()
			svc, err := tr.HTTPService(service)
			if err == nil {
				cur := map[string]bool{}
				if svc != nil {
					for _, u := range svc.ServerURLs() {
						if svc.ServerStatus[u] != "DOWN" {
							cur[u] = true
						}
					}
				}
				w.mu.Lock()
				w.polls++
				if last == nil || !sameSet(last, cur) {
					w.snaps = append(w.snaps, snapshot{t: t, urls: cur})
					last = cur
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stopc:
				return
			case <-time.After(time.Until(t.Add(interval))):
			}
		}
	}()
	return w
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func (w *traefikWatcher) stop() {
	select {
	case <-w.stopc:
	default:
		close(w.stopc)
	}
	<-w.done
}

// firstWith returns when url was first seen listed at or after from.
func (w *traefikWatcher) firstWith(url string, from time.Time) time.Time {
	return w.first(from, func(s snapshot) bool { return s.urls[url] })
}

// firstWithout returns when url was first seen not listed at or after from.
func (w *traefikWatcher) firstWithout(url string, from time.Time) time.Time {
	return w.first(from, func(s snapshot) bool { return !s.urls[url] })
}

func (w *traefikWatcher) first(from time.Time, cond func(snapshot) bool) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The snapshot in force at from is the last one before it.
	start := 0
	for i, s := range w.snaps {
		if s.t.After(from) {
			break
		}
		start = i
	}
	for _, s := range w.snaps[start:] {
		if cond(s) {
			if s.t.Before(from) {
				return from
			}
			return s.t
		}
	}
	return time.Time{}
}

// dockerEvent is one container event of the engine.
type dockerEvent struct {
	t      time.Time
	id     string
	action string // start, health_status: healthy, kill, die, ...
	app    string // label deployctl.app, or the baselines' deployctl-bench.app
}

// eventWatcher records the engine's container events for containers of
// this run (label deployctl-testenv=<run id>).
type eventWatcher struct {
	mu     sync.Mutex
	events []dockerEvent
	cancel context.CancelFunc
	done   chan struct{}
}

func watchEvents(cli *client.Client) *eventWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &eventWatcher{cancel: cancel, done: make(chan struct{})}
	res := cli.Events(ctx, client.EventsListOptions{Filters: make(client.Filters).
		Add("type", string(events.ContainerEventType)).
		Add("label", harness.LabelKey+"="+harness.RunID())})
	go func() {
		defer close(w.done)
		for {
			select {
			case m := <-res.Messages:
				w.mu.Lock()
				app := m.Actor.Attributes["deployctl.app"]
				if app == "" {
					app = m.Actor.Attributes[benchAppLabel]
				}
				w.events = append(w.events, dockerEvent{t: time.Unix(0, m.TimeNano), id: m.Actor.ID, action: string(m.Action), app: app})
				w.mu.Unlock()
			case <-res.Err:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return w
}

func (w *eventWatcher) stop() {
	w.cancel()
	<-w.done
}

// first returns the time of the first event of container id whose action
// starts with action, at or after from.
func (w *eventWatcher) first(id, action string, from time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.events {
		if e.id == id && strings.HasPrefix(e.action, action) && !e.t.Before(from) {
			return e.t
		}
	}
	return time.Time{}
}
