package dockerutil

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/deploy"
)

// An engine that speaks an API older than deployctl needs is refused at
// connect time, with DOCKER_HOST and both versions in the message. The
// "engine" is a stub answering /_ping as Docker 1.13 (API 1.26) does.
func TestOldDockerAPIRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.26")
		w.Header().Set("Docker-Experimental", "false")
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			_, _ = w.Write([]byte("OK"))
			return
		}
		http.Error(w, `{"message":"client version is too new"}`, http.StatusBadRequest)
	}))
	defer srv.Close()
	host := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("DOCKER_HOST", host)
	t.Setenv("DOCKER_CONTEXT", "")
	t.Setenv("DOCKER_TLS_VERIFY", "")
	t.Setenv("DOCKER_API_VERSION", "")

	_, err := New(context.Background())
	if err == nil {
		t.Fatal("connected to an engine with API 1.26")
	}
	if !errors.Is(err, deploy.ErrUnreachable) {
		t.Errorf("error %v does not match deploy.ErrUnreachable (exit 4)", err)
	}
	for _, want := range []string{strings.TrimPrefix(host, "tcp://"), "API 1.26", MinAPIVersion, "Docker 20.10"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// DockerVersion reads the engine's release and minimum API version from
// GET /version, as Docker 29 answers it (the stub's body is the one
// `docker version` shows: "API version: 1.52 (minimum version 1.44)").
func TestDockerVersionOfDocker29(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.52")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/version"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"Platform":{"Name":"Docker Engine - Community"},"Version":"29.0.0","ApiVersion":"1.52","MinAPIVersion":"1.44","GitCommit":"d105562","GoVersion":"go1.25.4","Os":"linux","Arch":"amd64"}`))
		default:
			http.NotFound(w, r)
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
	v, err := rt.DockerVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v != (deploy.DockerVersion{Version: "29.0.0", MinAPIVersion: "1.44"}) {
		t.Errorf("got %+v", v)
	}
}
