package dockerutil

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
)

// Docker reserves a container's name before the container can be
// inspected, and frees it only once it is gone: while a lock container is
// being created (e.g. by a run SIGKILLed while Docker made its lock, seen by
// the soak test) or removed, taking the lock conflicts but there is no
// holder to read. Lock waits until Docker has finished and then judges what
// it finds, instead of reporting an unknown holder. The "engine" is a stub
// of the three API calls involved.
func TestLockWhileTheLockContainerIsBeingCreatedOrRemoved(t *testing.T) {
	const settle = 300 * time.Millisecond
	dead := deploy.Holder{User: "ci", Host: "runner", PID: 4242, Since: time.Unix(1, 0).UTC(), Expires: time.Unix(2, 0).UTC()}
	cases := []struct {
		name string
		// after settle: whether the name is free, else who holds it
		free       bool
		wantHolder *deploy.Holder
	}{
		{"being created by a killed run", false, &dead},
		{"being removed", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var first time.Time
			settled := func() bool {
				mu.Lock()
				defer mu.Unlock()
				if first.IsZero() {
					first = time.Now()
				}
				return time.Since(first) > settle
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Api-Version", "1.41")
				w.Header().Set("Content-Type", "application/json")
				switch {
				case strings.HasSuffix(r.URL.Path, "/_ping"):
					_, _ = w.Write([]byte("OK"))
				case strings.HasSuffix(r.URL.Path, "/info"):
					// Not a Swarm manager: the lock is a container.
					_, _ = w.Write([]byte(`{"Swarm":{"LocalNodeState":"inactive"}}`))
				case strings.HasSuffix(r.URL.Path, "/containers/create"):
					if settled() && tc.free {
						w.WriteHeader(http.StatusCreated)
						_, _ = w.Write([]byte(`{"Id":"new-lock","Warnings":[]}`))
						return
					}
					w.WriteHeader(http.StatusConflict)
					_, _ = w.Write([]byte(`{"message":"Conflict. The container name \"/deployctl-lock-web\" is already in use by container \"0123\". You have to remove (or rename) that container to be able to reuse that name."}`))
				case strings.HasSuffix(r.URL.Path, "/containers/deployctl-lock-web/json"):
					if !settled() || tc.free {
						w.WriteHeader(http.StatusNotFound)
						_, _ = w.Write([]byte(`{"message":"No such container: deployctl-lock-web"}`))
						return
					}
					hb, _ := json.Marshal(dead)
					_ = json.NewEncoder(w).Encode(map[string]any{"Id": "0123", "Name": "/deployctl-lock-web",
						"Config": map[string]any{"Labels": map[string]string{labelLock: "web", labelHolder: string(hb)}}})
				default:
					http.Error(w, `{"message":"unexpected call"}`, http.StatusInternalServerError)
					t.Errorf("unexpected call %s %s", r.Method, r.URL.Path)
				}
			}))
			defer srv.Close()
			t.Setenv("DOCKER_HOST", "tcp://"+strings.TrimPrefix(srv.URL, "http://"))
			t.Setenv("DOCKER_CONTEXT", "")
			t.Setenv("DOCKER_TLS_VERIFY", "")
			t.Setenv("DOCKER_API_VERSION", "")
			rt, err := New(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()

			err = rt.Lock(context.Background(), "web", "img", deploy.Holder{User: "me", PID: 1})
			var le *deploy.LockedError
			switch {
			case tc.wantHolder == nil && err != nil:
				t.Errorf("Lock: %v; want the lock, once the old lock container is gone", err)
			case tc.wantHolder != nil && !errors.As(err, &le):
				t.Errorf("Lock: %v; want a LockedError naming the holder", err)
			case tc.wantHolder != nil && !le.Holder.Same(*tc.wantHolder):
				t.Errorf("Lock: held by %+v; want %+v (the holder Docker shows once the container exists)", le.Holder, *tc.wantHolder)
			}
		})
	}
}
