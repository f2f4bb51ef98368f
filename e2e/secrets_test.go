package e2e

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/internal/testenv"
)

// The paths by which a secret used to reach deployctl's output, each run
// against a real Traefik (behind a FaultProxy requiring the leak check's
// credentials) under load, with the leak check's secrets plus those below
// searched in every output (stderr with the progress events, the --json
// document, status and history):
//
//   - the new version crashes at start and prints its whole environment in
//     red first: the --env-file value, a DEPLOYCTL_ENV value and the env
//     copied from v1 are in its last log lines, which deployctl shows;
//   - a database URL with a comma and query parameters, alone in
//     DEPLOYCTL_ENV, reaches the container whole, as one variable;
//   - a token given alone as -e (no NAME=);
//   - Traefik's API redirects to another origin (another host; https to
//     http on the same host): the target must get no request.
func TestSecretsNeverShown(t *testing.T) {
	e := newEnv(t, "v3.0.0")
	repo := appImages(t, e.cli, "v1", "v2", "v3", "v4")
	app := e.appName("secrets")
	e.firstDeploy(app, repo, "v1")
	nets := e.networks()
	leaks := newLeakCheck(t)
	proxy := testenv.StartFaultProxy(t, e.traefik.APIURL, leaks.proxyOptions()...)

	dbPassword := "db-" + randomHex(12)
	dbURL := "postgres://shop:" + dbPassword + "@db:5432/shop?sslmode=require&options=-c%20search_path%3Dshop,public&application_name=web"
	extra := map[string]string{
		"the database URL (DEPLOYCTL_ENV)":       dbURL,
		"the database password (DEPLOYCTL_ENV)":  dbPassword,
		"the v1 env-file value (copied into v2)": secrets.envValue,
	}
	// check fails t if a secret of this test or of the leak check is in r's
	// output, or a terminal escape.
	check := func(t *testing.T, r faultRun) {
		t.Helper()
		leaks.add(r)
		expectNoSecrets(t, "deployctl", r.stdout, r.stderr)
		for what, secret := range extra {
			for _, out := range []string{r.stdout, r.stderr} {
				if i := strings.Index(out, secret); i >= 0 {
					t.Errorf("%s appears in the output: ...%s...", what, out[max(0, i-200):min(len(out), i+len(secret)+50)])
				}
			}
		}
		if strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07") {
			t.Errorf("a terminal escape or control character reached the output")
		}
	}
	// One entry, no newline: the form a comma split used to cut.
	env := append(leaks.env(), "DEPLOYCTL_ENV=DATABASE_URL="+dbURL)

	t.Run("a crash that prints the env", func(t *testing.T) {
		e := e.with(t)
		l := startLoad(t, e.traefik.EntryURL, app+".test", 50, true)
		time.Sleep(200 * time.Millisecond)
		crashEnv := append(leaks.env(), "DEPLOYCTL_ENV=DATABASE_URL="+dbURL+"\nCRASH_AFTER=0\nCRASH_DUMP_ENV=1")
		r := e.deployctlVia(proxy.URL, crashEnv, "", nil, append([]string{"rollout", "--app", app, "--image", repo, "--version", "v2"}, leaks.rolloutArgs()...)...)
		check(t, r)
		if r.code != 1 || r.doc.Error == nil {
			t.Fatalf("exit %d, want 1 (the new version crashed)", r.code)
		}
		obs := r.doc.Error.Observed
		for _, want := range []string{"event=crash", "env DATABASE_URL=[redacted]", "env API_KEY=[redacted]", "env DEPLOYCTL_E2E_SECRET=[redacted]", "env CRASH_DUMP_ENV=1"} {
			if !strings.Contains(obs, want) {
				t.Errorf("--json observed lacks %q:\n%s", want, obs)
			}
		}
		time.Sleep(200 * time.Millisecond)
		l.expectNoFailures(t)
		e.expectAftermath(app, "v1", "v2", nets)
	})

	t.Run("a comma in a DEPLOYCTL_ENV value", func(t *testing.T) {
		e := e.with(t)
		l := startLoad(t, e.traefik.EntryURL, app+".test", 50, true)
		time.Sleep(200 * time.Millisecond)
		r := e.deployctlVia(proxy.URL, env, "", nil, append([]string{"rollout", "--app", app, "--image", repo, "--version", "v3"}, leaks.rolloutArgs()...)...)
		check(t, r)
		if r.code != 0 || r.doc.Result == nil {
			t.Fatalf("exit %d, want 0", r.code)
		}
		c, err := e.rt.Inspect(t.Context(), r.doc.Result.New.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"DATABASE_URL=" + dbURL, "API_KEY=" + leaks.apiKey} {
			if !slices.Contains(c.Env, want) {
				t.Errorf("the new container's env lacks %.20s...: %d entries", want, len(c.Env))
			}
		}
		for _, kv := range c.Env {
			if strings.HasPrefix(kv, "public") || strings.HasPrefix(kv, "application_name") {
				t.Errorf("the database URL's tail became a variable of its own: %.20s...", kv)
			}
		}
		time.Sleep(200 * time.Millisecond)
		l.expectNoFailures(t)
		e.expectAftermath(app, "v3", "", nets)
	})

	t.Run("a token alone as -e", func(t *testing.T) {
		e := e.with(t)
		before := e.containers(app)
		r := e.deployctlVia(proxy.URL, leaks.env(), "", nil, "rollout", "--app", app, "--image", repo, "--version", "v4", "-e", "SECOND=2", "-e", leaks.token)
		check(t, r)
		if r.code != 2 || r.doc.Error == nil || !strings.Contains(r.doc.Error.Message, "the 2nd -e/--env value") {
			t.Errorf("exit %d, error %+v; want 2 naming the 2nd -e/--env value", r.code, r.doc.Error)
		}
		if !sameContainers(before, e.containers(app)) {
			t.Errorf("the app's containers changed")
		}
	})

	t.Run("a redirecting API", func(t *testing.T) {
		redirect := func(target string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			})
		}
		otherHost := strings.Replace(proxy.URL, "127.0.0.1", "localhost", 1)
		toOtherHost := httptest.NewServer(redirect(otherHost))
		defer toOtherHost.Close()
		downgrade := httptest.NewTLSServer(redirect(proxy.URL)) // https://127.0.0.1 -> http://127.0.0.1
		defer downgrade.Close()
		for _, tc := range []struct {
			name, url, location string
			extra               []string
		}{
			{"to another host", toOtherHost.URL, otherHost, nil},
			{"https to http", downgrade.URL, proxy.URL, []string{"--traefik-insecure"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := e.with(t)
				before := e.containers(app)
				passed, refused := proxy.Requests(testenv.FaultPass), proxy.Unauthorized()
				args := append([]string{"rollout", "--app", app, "--image", repo, "--version", "v4"}, leaks.rolloutArgs()...)
				r := e.deployctlVia(tc.url, leaks.env(), "", nil, append(args, tc.extra...)...)
				check(t, r)
				if n := proxy.Requests(testenv.FaultPass) + proxy.Unauthorized() - passed - refused; n != 0 {
					t.Errorf("%d requests followed the redirect to %s (%s)", n, tc.location, proxy.Counts())
				}
				if r.code != 4 || !strings.Contains(r.errorText(), "redirected to "+tc.location+"/api/") || !strings.Contains(r.errorText(), "--traefik-url") {
					t.Errorf("exit %d, want 4 and a message naming the redirect to %s and --traefik-url:\n%s", r.code, tc.location, r.errorText())
				}
				if tc.extra != nil && !slices.ContainsFunc(r.warnings(), func(w string) bool { return strings.Contains(w, "--traefik-insecure") }) {
					t.Errorf("no warning about --traefik-insecure: %q", r.warnings())
				}
				if !sameContainers(before, e.containers(app)) {
					t.Errorf("the app's containers changed")
				}
			})
		}
	})

	leaks.check(t, app, proxy.URL)
}
