package traefikapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// credentialCatcher is a Traefik API (a fake) that counts the requests it
// gets and those that carry any of the client's credentials.
type credentialCatcher struct {
	fake               *fakeTraefik
	requests, withCred atomic.Int32
}

func (c *credentialCatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	if r.Header.Get("Authorization") != "" || r.Header.Get("X-Api-Token") != "" {
		c.withCred.Add(1)
	}
	c.fake.ServeHTTP(w, r)
}

// redirectTo answers every request with a 302 to target plus the request's
// path and query.
func redirectTo(target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusFound)
	})
}

// A redirect that leaves the origin of --traefik-url (another host or port,
// or https -> http on the same host) is not followed: the credentials on the
// request (basic auth, --traefik-header) would go with it, the header even
// to another host and basic auth in clear text. The error names where it
// pointed and what to do, and is not retried.
func TestRedirectsLeavingTheOriginAreRefused(t *testing.T) {
	const user, pass, token = "deploy", "s3cret-pass", "tok-7f3a9c"
	headers := http.Header{"X-Api-Token": {token}}

	catcher := &credentialCatcher{fake: newFakeV2(t, "v3_services.json", "v3.0.0")}
	elsewhere := httptest.NewServer(catcher) // http://127.0.0.1:<port>
	defer elsewhere.Close()
	otherHost := strings.Replace(elsewhere.URL, "127.0.0.1", "localhost", 1)

	var redirects atomic.Int32
	counting := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { redirects.Add(1); h.ServeHTTP(w, r) })
	}
	toOtherHost := httptest.NewServer(counting(redirectTo(otherHost)))
	defer toOtherHost.Close()
	toOtherPort := httptest.NewServer(counting(redirectTo(elsewhere.URL)))
	defer toOtherPort.Close()
	// https://127.0.0.1:<a> -> http://127.0.0.1:<b>: same host, plain http.
	downgrade := httptest.NewTLSServer(counting(redirectTo(elsewhere.URL)))
	defer downgrade.Close()

	cases := []struct {
		name, url, location, why string
		insecure                 bool
	}{
		{"to another host", toOtherHost.URL, otherHost, "another origin", false},
		{"to another port", toOtherPort.URL, elsewhere.URL, "another origin", false},
		{"https to http on the same host", downgrade.URL, elsewhere.URL, "plain http", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			catcher.requests.Store(0)
			catcher.withCred.Store(0)
			redirects.Store(0)
			c, err := New(Config{URL: tc.url, Username: user, Password: pass, Headers: headers, Insecure: tc.insecure})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Services(context.Background())
			if n := catcher.withCred.Load(); n != 0 {
				t.Errorf("%d requests reached %s with the credentials", n, tc.location)
			}
			if n := catcher.requests.Load(); n != 0 {
				t.Errorf("%d requests reached %s", n, tc.location)
			}
			if err == nil {
				t.Fatal("the redirect was followed: Services() succeeded through it")
			}
			if !errors.Is(err, ErrUnexpectedAnswer) {
				t.Errorf("err = %v, want ErrUnexpectedAnswer", err)
			}
			for _, want := range []string{"redirected to " + tc.location + "/api/", tc.why, "--traefik-url"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			for _, secret := range []string{pass, token} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a credential: %v", err)
				}
			}
			if n := redirects.Load(); n != 1 {
				t.Errorf("%d requests got the redirect: a refused redirect must not be retried", n)
			}
		})
	}
}

// A redirect within the origin (e.g. an old base path to the new one) is
// followed, credentials and all; a loop of them ends with an error.
func TestSameOriginRedirectsAreFollowed(t *testing.T) {
	fake := newFakeV2(t, "v3_services.json", "v3.0.0")
	var withCred atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("/old/", http.StripPrefix("/old", redirectTo("")))
	mux.Handle("/loop/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.RequestURI(), http.StatusFound)
	}))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u == "deploy" && p == "s3cret" && r.Header.Get("X-Api-Token") == "tok" {
			withCred.Add(1)
		}
		fake.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cfg := Config{Username: "deploy", Password: "s3cret", Headers: http.Header{"X-Api-Token": {"tok"}}}

	cfg.URL = srv.URL + "/old"
	c, _ := New(cfg)
	if got, err := c.Services(context.Background()); err != nil || len(got) != 2 {
		t.Fatalf("Services() through a same-origin redirect = %v, %v", got, err)
	}
	if withCred.Load() == 0 {
		t.Errorf("the credentials did not follow a same-origin redirect")
	}

	cfg.URL = srv.URL + "/loop"
	c, _ = New(cfg)
	_, err := c.Services(context.Background())
	if !errors.Is(err, ErrUnexpectedAnswer) || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Errorf("redirect loop: err = %v", err)
	}
}
