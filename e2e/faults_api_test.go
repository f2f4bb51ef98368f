package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/testenv"
)

// Row 13 of the fault matrix: Traefik's API can be reached, but only with
// the right credentials, over TLS, or under a base path. Given the wrong
// access, deployctl refuses before it changes anything (exit 4) and says
// what to fix; given the right one, the rollout completes. Load flows
// through Traefik all along and no credential shows up in any output.
//
// One app for the whole test, deployed at v1 once: the refused runs try to
// roll out the next version and leave the app as it was; the rollouts that
// complete go to v2, v3 and v4 in turn (each target is new, so a failed
// subtest does not change what the next one expects).
func TestFaultTraefikAPIAccess(t *testing.T) {
	e := newEnv(t, traefikFor(t))
	repo := appImages(t, e.cli, "v1", "v2", "v3", "v4")
	f := &accessFixture{e: e, repo: repo, app: e.appName("fapi"), serving: "v1"}
	e.firstDeploy(f.app, repo, "v1")
	f.nets = e.networks()

	t.Run("wrong password", func(t *testing.T) {
		s := f.step(t)
		wrong := "wr0ng-" + randomHex(8)
		// The user from the environment, the wrong password on the command
		// line (so that an echo of the arguments would show it too).
		r := s.run(s.proxy.URL, []string{"DEPLOYCTL_TRAEFIK_USER=" + s.leaks.user}, "v2", "--traefik-password", wrong)
		s.expectRefused(r, "v2")
		msg := r.errorText()
		if !containsAny(msg, "refused the credentials", "credentials were refused", "rejected the credentials") {
			t.Errorf("the message does not say the credentials were refused:\n%s", msg)
		}
		for _, flag := range []string{"--traefik-user", "--traefik-password"} {
			if !strings.Contains(msg, flag) {
				t.Errorf("the message does not name %s:\n%s", flag, msg)
			}
		}
		if !containsAny(msg, "DEPLOYCTL_TRAEFIK_PASSWORD", "environment variable") {
			t.Errorf("the message does not name the environment variables (DEPLOYCTL_TRAEFIK_PASSWORD):\n%s", msg)
		}
		if r.doc.Error == nil || !strings.Contains(r.doc.Error.Hint, "--traefik-password") || strings.Contains(r.doc.Error.Hint, "api.insecure") {
			t.Errorf("--json hint %+v, want one about the credentials only", r.doc.Error)
		}
		if n := s.proxy.Unauthorized(); n == 0 {
			t.Errorf("the proxy answered no 401: the wrong password was not exercised (%s)", s.proxy.Counts())
		}
		if n := s.proxy.Requests(testenv.FaultPass); n != 0 {
			t.Errorf("%d requests passed the proxy's auth with the wrong password (%s)", n, s.proxy.Counts())
		}
		s.finishRefused("v2", map[string]string{
			"the wrong Traefik password":             wrong,
			"the basic auth header (wrong password)": base64.StdEncoding.EncodeToString([]byte(s.leaks.user + ":" + wrong)),
		})
	})

	t.Run("no credentials", func(t *testing.T) {
		s := f.step(t)
		r := s.e.deployctlVia(s.proxy.URL, nil, "", nil, "rollout", "--app", f.app, "--image", f.repo, "--version", "v2")
		s.leaks.add(r)
		s.expectRefused(r, "v2")
		msg := r.errorText()
		if !containsAny(msg, "needs credentials", "requires credentials", "none were given", "no credentials") {
			t.Errorf("the message does not say Traefik's API needs credentials:\n%s", msg)
		}
		if !strings.Contains(msg, "--traefik-user") {
			t.Errorf("the message does not name --traefik-user:\n%s", msg)
		}
		if n := s.proxy.Unauthorized(); n == 0 {
			t.Errorf("the proxy answered no 401 (%s)", s.proxy.Counts())
		}
		s.finishRefused("v2", nil)
	})

	t.Run("tls", func(t *testing.T) {
		caFile, cert := newTestCA(t)
		tlsOpt := testenv.WithTLS(cert)

		t.Run("untrusted certificate", func(t *testing.T) {
			s := f.step(t, tlsOpt)
			if !strings.HasPrefix(s.proxy.URL, "https://") {
				t.Fatalf("proxy URL %s, want https://", s.proxy.URL)
			}
			r := s.run(s.proxy.URL, s.leaks.env(), "v2")
			s.expectRefused(r, "v2")
			msg := r.errorText()
			if !containsAny(msg, "not trusted", "untrusted", "unknown authority") || !containsAny(msg, "certificate") {
				t.Errorf("the message does not say Traefik's certificate is not trusted:\n%s", msg)
			}
			for _, flag := range []string{"--traefik-ca", "--traefik-insecure"} {
				if !strings.Contains(msg, flag) {
					t.Errorf("the message does not name %s:\n%s", flag, msg)
				}
			}
			if r.doc.Error == nil || !strings.Contains(r.doc.Error.Hint, "--traefik-ca") {
				t.Errorf("--json hint %+v, want one about --traefik-ca", r.doc.Error)
			}
			if n := s.proxy.Requests(testenv.FaultPass) + s.proxy.Unauthorized(); n != 0 {
				t.Errorf("%d requests reached the proxy over an untrusted TLS connection (%s)", n, s.proxy.Counts())
			}
			s.finishRefused("v2", nil, "DEPLOYCTL_TRAEFIK_CA="+caFile)
		})

		t.Run("with --traefik-ca", func(t *testing.T) {
			s := f.step(t, tlsOpt)
			r := s.run(s.proxy.URL, s.leaks.env(), "v2", "--traefik-ca", caFile)
			s.expectRolledOut(r, "v2")
			s.finishRolledOut(r, "v2", "DEPLOYCTL_TRAEFIK_CA="+caFile)
		})

		t.Run("with --traefik-insecure", func(t *testing.T) {
			s := f.step(t, tlsOpt)
			r := s.run(s.proxy.URL, s.leaks.env(), "v3", "--traefik-insecure")
			s.expectRolledOut(r, "v3")
			t.Logf("warnings: %q", r.warnings())
			s.finishRolledOut(r, "v3", "DEPLOYCTL_TRAEFIK_INSECURE=true")
		})
	})

	t.Run("base path", func(t *testing.T) {
		baseOpt := testenv.WithBasePath("/traefik")

		t.Run("URL without the base path", func(t *testing.T) {
			s := f.step(t, baseOpt)
			if !strings.HasSuffix(s.proxy.URL, "/traefik") {
				t.Fatalf("proxy URL %s, want it to end with /traefik", s.proxy.URL)
			}
			root := "http://" + s.proxy.Addr
			r := s.run(root, s.leaks.env(), "v4")
			s.expectRefused(r, "v4")
			msg := r.errorText()
			if !containsAny(msg, "base path", "basePath", "base-path") {
				t.Errorf("the message does not hint at the API's base path:\n%s", msg)
			}
			if !strings.Contains(msg, "--traefik-url") {
				t.Errorf("the message does not name --traefik-url:\n%s", msg)
			}
			if n := s.proxy.OutsideBasePath(); n == 0 {
				t.Errorf("no request outside the base path: the wrong URL was not exercised (%s)", s.proxy.Counts())
			}
			s.finishRefused("v4", nil)
		})

		t.Run("URL with the base path", func(t *testing.T) {
			s := f.step(t, baseOpt)
			r := s.run(s.proxy.URL, s.leaks.env(), "v4")
			s.expectRolledOut(r, "v4")
			if n := s.proxy.OutsideBasePath(); n != 0 {
				t.Errorf("%d requests outside the base path (%s)", n, s.proxy.Counts())
			}
			s.finishRolledOut(r, "v4")
		})
	})
}

// accessFixture is the app of TestFaultTraefikAPIAccess, shared by its
// subtests.
type accessFixture struct {
	e       *env
	repo    string
	app     string
	serving string // the version serving, as the subtests left it
	nets    map[string]bool
}

// accessStep is one subtest: a proxy in front of Traefik's API requiring
// the credentials of its own leak check (plus opts), the app's containers
// before the run, and load through Traefik.
type accessStep struct {
	t           *testing.T
	f           *accessFixture
	e           *env
	leaks       *leakCheck
	proxy       *testenv.FaultProxy
	before      []deploy.Container
	keep, fresh *load
}

func (f *accessFixture) step(t *testing.T, opts ...testenv.FaultProxyOption) *accessStep {
	t.Helper()
	s := &accessStep{t: t, f: f, e: f.e.with(t), leaks: newLeakCheck(t)}
	s.proxy = testenv.StartFaultProxy(t, f.e.traefik.APIURL, append(s.leaks.proxyOptions(), opts...)...)
	s.before = s.e.containers(f.app)
	s.keep = startLoad(t, f.e.traefik.EntryURL, f.app+".test", 100, true)
	s.fresh = startLoad(t, f.e.traefik.EntryURL, f.app+".test", 50, false)
	time.Sleep(300 * time.Millisecond) // steady state
	return s
}

// run rolls the app out to version with the Traefik API at apiURL, the
// environment env, the leak check's token header and env file, and extra
// arguments; its output goes to the leak check.
func (s *accessStep) run(apiURL string, env []string, version string, extra ...string) faultRun {
	s.t.Helper()
	args := append([]string{"rollout", "--app", s.f.app, "--image", s.f.repo, "--version", version}, s.leaks.rolloutArgs()...)
	r := s.e.deployctlVia(apiURL, env, "", nil, append(args, extra...)...)
	s.leaks.add(r)
	return r
}

// expectRefused checks a run that must stop before changing anything:
// exit 4, an error of the plan phase saying nothing was changed, and no
// container created (for version or any other).
func (s *accessStep) expectRefused(r faultRun, version string) {
	t := s.t
	t.Helper()
	t.Logf("exit %d after %s; message:\n%s", r.code, r.end.Sub(r.start).Round(time.Millisecond), r.errorText())
	if r.code != 4 {
		t.Errorf("exit %d, want 4 (Traefik's API cannot be used; nothing changed)", r.code)
	}
	if r.doc.OK || r.doc.Error == nil {
		t.Fatalf("--json says ok=%v error=%+v, want an error", r.doc.OK, r.doc.Error)
	}
	if r.doc.ExitCode != r.code {
		t.Errorf("--json exit_code %d, exit %d", r.doc.ExitCode, r.code)
	}
	if r.doc.Error.Phase != deploy.PhasePlan {
		t.Errorf("--json error phase %q, want plan", r.doc.Error.Phase)
	}
	if !containsAny(r.errorText(), "nothing was changed", "still serving", "untouched") {
		t.Errorf("the message does not say that nothing was changed:\n%s", r.errorText())
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("deployctl crashed")
	}
	after := s.e.containers(s.f.app)
	if !sameContainers(s.before, after) {
		t.Errorf("the app's containers changed (%s wanted untouched):\nbefore: %s\nafter:  %s", version, describe(s.before), describe(after))
	}
}

// expectRolledOut checks a run that must complete: exit 0 and the result
// names version's new container.
func (s *accessStep) expectRolledOut(r faultRun, version string) {
	t := s.t
	t.Helper()
	if r.code != 0 || !r.doc.OK || r.doc.Result == nil {
		t.Fatalf("exit %d, want 0 (rollout to %s)\n%s", r.code, version, r.errorText())
	}
	if r.doc.Result.Version != version || r.doc.Result.New.ID == "" {
		t.Errorf("result version %q, new container %+v; want %s", r.doc.Result.Version, r.doc.Result.New, version)
	}
	if n := s.proxy.Requests(testenv.FaultPass); n == 0 {
		t.Errorf("no Traefik API request went through the proxy (%s)", s.proxy.Counts())
	}
	s.f.serving = version
}

// finishRefused checks what a refused run left: no failed request, the app
// as it was (serving what it served, no container of version), the lock
// released, and no secret (those of the leak check, plus extra) in any
// output. env is added to the environment of the leak check's status and
// history runs (e.g. the CA to reach an https proxy).
func (s *accessStep) finishRefused(version string, extra map[string]string, env ...string) {
	s.t.Helper()
	s.finish(s.f.serving, version, extra, env)
}

// finishRolledOut checks what a completed run left: no failed request,
// version serving from the run's new container, every container from before
// still there (stopped for rollback) unless pruned, the lock released, and
// no secret in any output.
func (s *accessStep) finishRolledOut(r faultRun, version string, env ...string) {
	t := s.t
	t.Helper()
	s.finish(version, "", nil, env)
	want := map[string]bool{r.doc.Result.New.ID: true}
	for _, c := range s.before {
		if !slices.Contains(r.doc.Result.Pruned, c.Name) && !slices.Contains(r.doc.Result.Pruned, c.ID) {
			want[c.ID] = true
		}
	}
	after := s.e.containers(s.f.app)
	got := map[string]bool{}
	for _, c := range after {
		got[c.ID] = true
		if !want[c.ID] {
			t.Errorf("unexpected container of the app: %s (%s, %s)", c.Name, c.Labels[deploy.LabelVersion], c.State)
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("container %.12s is gone (not pruned by the run); before: %s; after: %s", id, describe(s.before), describe(after))
		}
	}
}

func (s *accessStep) finish(serving, gone string, extra map[string]string, env []string) {
	t := s.t
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	s.keep.expectNoFailures(t)
	s.fresh.expectNoFailures(t)
	s.e.expectAftermath(s.f.app, serving, gone, s.f.nets)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	s.leaks.check(t, s.f.app, s.proxy.URL)
	s.leaks.mu.Lock()
	defer s.leaks.mu.Unlock()
	for what, secret := range extra {
		for _, out := range s.leaks.outputs {
			if i := strings.Index(out, secret); i >= 0 {
				head, _, _ := strings.Cut(out, "\n")
				t.Errorf("%s appears in the output (%s): ...%s...", what, head, out[max(0, i-200):min(len(out), i+len(secret)+50)])
			}
		}
	}
	t.Logf("Traefik API requests through the proxy: %s", s.proxy.Counts())
}

// sameContainers reports whether a and b are the same containers in the
// same states.
func sameContainers(a, b []deploy.Container) bool {
	m := map[string]string{}
	for _, c := range a {
		m[c.ID] = c.State
	}
	if len(a) != len(b) {
		return false
	}
	for _, c := range b {
		if st, ok := m[c.ID]; !ok || st != c.State {
			return false
		}
	}
	return true
}

func describe(cs []deploy.Container) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.Name+" ("+c.Labels[deploy.LabelVersion]+", "+c.State+")")
	}
	slices.Sort(parts)
	return "[" + strings.Join(parts, ", ") + "]"
}

// newTestCA makes a throwaway CA (ECDSA P-256) and a server certificate it
// signs for 127.0.0.1; it returns the path of the CA's PEM file and the
// server certificate with its key.
func newTestCA(t *testing.T) (caFile string, cert tls.Certificate) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "deployctl e2e throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "traefik-api.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "traefik-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
