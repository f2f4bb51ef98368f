package testenv

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultMode is how a [FaultProxy] answers.
type FaultMode int32

// The modes of a [FaultProxy].
const (
	// FaultPass forwards every request to Traefik's API unchanged.
	FaultPass FaultMode = iota
	// Fault5xx answers 502, 503 and 500 in turn, without asking Traefik.
	Fault5xx
	// FaultHang holds each request open without answering until the mode
	// changes (the request is then handled as the new mode says) or the
	// client gives up.
	FaultHang
	// FaultDown refuses connections: the listener is closed and every open
	// connection (idle keep-alive ones included) is closed; when the mode
	// changes, the proxy listens on the same port again.
	FaultDown
	// FaultGarbage answers 200 with a body that is not JSON. The body
	// echoes the request's headers, as debugging pages of some proxies do,
	// so that a client quoting the answer would quote its own credentials.
	FaultGarbage
	// FaultTruncated forwards the request and answers with the first half of
	// Traefik's real answer (a complete HTTP answer whose JSON is cut off).
	FaultTruncated
	// FaultHuge answers 200 with about [FaultProxy.HugeSize] bytes of
	// valid-looking JSON (a list of services), streamed.
	FaultHuge
	// FaultSchema answers valid JSON of another shape, as a future Traefik
	// might: /api/version says 4.0.0, and every other answer of Traefik is
	// wrapped as {"apiVersion":"v4","items":<the real answer>}.
	FaultSchema

	numFaultModes
)

var faultModeNames = [...]string{"pass", "5xx", "hang", "down", "garbage", "truncated", "huge", "schema"}

func (m FaultMode) String() string {
	if m >= 0 && int(m) < len(faultModeNames) {
		return faultModeNames[m]
	}
	return "FaultMode(" + strconv.Itoa(int(m)) + ")"
}

// FaultProxyOption configures [StartFaultProxy].
type FaultProxyOption func(*FaultProxy)

// WithBasicAuth makes the proxy answer 401 to every request without these
// basic auth credentials.
func WithBasicAuth(user, password string) FaultProxyOption {
	return func(p *FaultProxy) { p.user, p.password, p.auth = user, password, true }
}

// WithRequiredHeader makes the proxy answer 401 to every request without
// the header name set to value.
func WithRequiredHeader(name, value string) FaultProxyOption {
	return func(p *FaultProxy) { p.headerName, p.headerValue = http.CanonicalHeaderKey(name), value }
}

// WithTLS makes the proxy serve HTTPS (HTTP/2 and HTTP/1.1) with cert
// instead of plain HTTP; its URL then starts with https://. TLS handshake
// errors (e.g. a client that does not trust cert) are logged with t.Logf.
func WithTLS(cert tls.Certificate) FaultProxyOption {
	return func(p *FaultProxy) {
		p.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
}

// WithBasePath makes the proxy serve Traefik's API under path (e.g.
// "/traefik"), as Traefik's api.basePath or a PathPrefix router with a
// StripPrefix middleware would: the prefix is stripped before the request
// is forwarded, and any request outside it is answered 404 ("404 page not
// found", as Traefik answers a path no router matches) before the
// credentials are checked. The proxy's URL then ends with the base path.
// "" and "/" mean no base path.
func WithBasePath(path string) FaultProxyOption {
	return func(p *FaultProxy) {
		if path = strings.Trim(path, "/"); path != "" {
			p.basePath = "/" + path
		}
	}
}

// FaultProxy is an HTTP proxy on 127.0.0.1 in front of Traefik's API whose
// answers can be broken on purpose ([FaultMode]), switched at any time with
// [FaultProxy.SetMode]. It counts the requests it got in each mode.
type FaultProxy struct {
	// URL is the proxy's base URL, to use as the Traefik API URL:
	// http://127.0.0.1:port, https:// with [WithTLS], followed by the base
	// path with [WithBasePath].
	URL string
	// Addr is the proxy's 127.0.0.1:port.
	Addr string
	// HugeSize is the size of a [FaultHuge] answer (default 50 MiB). Set it
	// before switching to FaultHuge.
	HugeSize int64

	t        testing.TB
	addr     string
	upstream *url.URL
	pass     *httputil.ReverseProxy
	truncate *httputil.ReverseProxy
	schema   *httputil.ReverseProxy

	auth                    bool
	user, password          string
	headerName, headerValue string
	tlsConfig               *tls.Config // nil: plain HTTP
	basePath                string      // "" or "/prefix"

	mode         atomic.Int32
	counts       [numFaultModes]atomic.Int64
	unauthorized atomic.Int64
	outside      atomic.Int64
	n5xx         atomic.Int64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every mode change
	srv     *http.Server  // nil while down
	closed  bool
}

// StartFaultProxy starts a proxy in [FaultPass] mode in front of the API at
// target (e.g. a [Traefik]'s APIURL). It is stopped in t.Cleanup.
func StartFaultProxy(t testing.TB, target string, opts ...FaultProxyOption) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("fault proxy: target %q: %v", target, err)
	}
	p := &FaultProxy{t: t, upstream: u, HugeSize: 50 << 20, changed: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	transport := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, ResponseHeaderTimeout: 30 * time.Second}
	newRP := func(modify func(*http.Response) error) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(u)
				r.Out.Host = u.Host
			},
			Transport:      transport,
			ModifyResponse: modify,
			ErrorLog:       nil,
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if r.Context().Err() == nil {
					p.logf("fault proxy: upstream %s: %v", r.URL.Path, err)
				}
				w.WriteHeader(http.StatusBadGateway)
			},
		}
	}
	p.pass = newRP(nil)
	p.truncate = newRP(truncateResponse)
	p.schema = newRP(reshapeResponse)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	p.addr = ln.Addr().String()
	p.Addr = p.addr
	scheme := "http://"
	if p.tlsConfig != nil {
		scheme = "https://"
	}
	p.URL = scheme + p.addr + p.basePath
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

func (p *FaultProxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	p.srv = srv
	if p.tlsConfig != nil {
		srv.TLSConfig = p.tlsConfig.Clone()
		srv.ErrorLog = log.New(logWriter{p}, "", 0)
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		return
	}
	go func() { _ = srv.Serve(ln) }()
}

// logWriter sends an http.Server's error log (e.g. TLS handshake errors)
// to p.logf.
type logWriter struct{ p *FaultProxy }

func (w logWriter) Write(b []byte) (int, error) {
	w.p.logf("fault proxy: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// SetMode switches the proxy to m at once; requests held by [FaultHang]
// are then handled as m says.
func (p *FaultProxy) SetMode(m FaultMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	old := FaultMode(p.mode.Load())
	if old == m {
		return
	}
	p.mode.Store(int32(m))
	close(p.changed)
	p.changed = make(chan struct{})
	switch {
	case m == FaultDown && p.srv != nil:
		// Closes the listener and every connection, idle or active.
		p.srv.Close()
		p.srv = nil
	case m != FaultDown && p.srv == nil:
		var ln net.Listener
		var err error
		for i := 0; i < 50; i++ { // the port may linger for a moment
			if ln, err = net.Listen("tcp", p.addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			p.t.Errorf("fault proxy: listening again on %s: %v", p.addr, err)
			return
		}
		p.serve(ln)
	}
}

// SetModeFor switches to m, and back to [FaultPass] after d (unless the
// mode was changed again meanwhile).
func (p *FaultProxy) SetModeFor(m FaultMode, d time.Duration) {
	p.SetMode(m)
	time.AfterFunc(d, func() {
		p.mu.Lock()
		cur := FaultMode(p.mode.Load())
		p.mu.Unlock()
		if cur == m {
			p.SetMode(FaultPass)
		}
	})
}

// Mode is the current mode.
func (p *FaultProxy) Mode() FaultMode { return FaultMode(p.mode.Load()) }

// Requests is how many authorised requests arrived while the proxy was in
// mode m (requests refused by [FaultDown] never arrive).
func (p *FaultProxy) Requests(m FaultMode) int64 {
	if m < 0 || m >= numFaultModes {
		return 0
	}
	return p.counts[m].Load()
}

// Unauthorized is how many requests were answered 401.
func (p *FaultProxy) Unauthorized() int64 { return p.unauthorized.Load() }

// OutsideBasePath is how many requests were answered 404 for a path outside
// the base path of [WithBasePath].
func (p *FaultProxy) OutsideBasePath() int64 { return p.outside.Load() }

// Counts describes the requests per mode, e.g. "pass=12 5xx=9 unauthorized=0".
func (p *FaultProxy) Counts() string {
	var parts []string
	for m := FaultMode(0); m < numFaultModes; m++ {
		if n := p.counts[m].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", m, n))
		}
	}
	parts = append(parts, fmt.Sprintf("unauthorized=%d", p.unauthorized.Load()))
	if p.basePath != "" {
		parts = append(parts, fmt.Sprintf("outside-base-path=%d", p.outside.Load()))
	}
	return strings.Join(parts, " ")
}

func (p *FaultProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.changed) // releases held requests
	p.changed = make(chan struct{})
	if p.srv != nil {
		p.srv.Close()
		p.srv = nil
	}
}

// logf logs with t.Logf unless the test is over (its cleanup closed the
// proxy): testing panics on a log after the test completed.
func (p *FaultProxy) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.t.Logf(format, args...)
	}
}

func (p *FaultProxy) current() (FaultMode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return FaultMode(p.mode.Load()), p.changed
}

func (p *FaultProxy) authorized(r *http.Request) bool {
	if p.auth {
		u, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(p.user)) != 1 || subtle.ConstantTimeCompare([]byte(pw), []byte(p.password)) != 1 {
			return false
		}
	}
	if p.headerName != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(p.headerName)), []byte(p.headerValue)) != 1 {
		return false
	}
	return true
}

// stripBasePath returns r with the base path cut off its URL, or false if
// r is outside the base path.
func (p *FaultProxy) stripBasePath(r *http.Request) (*http.Request, bool) {
	if p.basePath == "" {
		return r, true
	}
	rest, ok := strings.CutPrefix(r.URL.Path, p.basePath)
	if !ok || (rest != "" && rest[0] != '/') {
		return nil, false
	}
	if rest == "" {
		rest = "/"
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.URL = new(url.URL)
	*r2.URL = *r.URL
	r2.URL.Path = rest
	r2.URL.RawPath = ""
	if raw, ok := strings.CutPrefix(r.URL.RawPath, p.basePath); ok && strings.HasPrefix(raw, "/") {
		r2.URL.RawPath = raw
	}
	return r2, true
}

// ServeHTTP answers as the current mode says.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, ok := p.stripBasePath(r)
	if !ok {
		p.outside.Add(1)
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if !p.authorized(r) {
		p.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="traefik"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	mode, changed := p.current()
	p.counts[mode].Add(1)
	for mode == FaultHang {
		select {
		case <-changed:
			mode, changed = p.current()
		case <-r.Context().Done():
			return
		}
	}
	switch mode {
	case FaultPass:
		p.pass.ServeHTTP(w, r)
	case Fault5xx:
		code := []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusInternalServerError}[(p.n5xx.Add(1)-1)%3]
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", code, http.StatusText(code))
	case FaultDown:
		// Switched to down while this request was held: drop it.
		panic(http.ErrAbortHandler)
	case FaultGarbage:
		var b strings.Builder
		b.WriteString("Welcome! This is not the API you are looking for. Your request: ")
		b.WriteString(r.Method + " " + r.URL.RequestURI())
		for _, k := range slices.Sorted(maps.Keys(r.Header)) {
			fmt.Fprintf(&b, "; %s: %s", k, strings.Join(r.Header[k], ", "))
		}
		b.WriteString("\n")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, b.String())
	case FaultTruncated:
		p.truncate.ServeHTTP(w, r)
	case FaultHuge:
		p.serveHuge(w)
	case FaultSchema:
		if strings.TrimSuffix(r.URL.Path, "/") == "/api/version" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"apiVersion":"v4","Version":"4.0.0","Codename":"future","startDate":"2031-01-01T00:00:00Z"}`+"\n")
			return
		}
		p.schema.ServeHTTP(w, r)
	}
}

// serveHuge streams a JSON array of services of about HugeSize bytes.
func (p *FaultProxy) serveHuge(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	written := int64(0)
	buf.WriteString("[")
	for i := 0; written+int64(buf.Len()) < p.HugeSize; i++ {
		if i > 0 {
			buf.WriteString(",")
		}
		ip := fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		fmt.Fprintf(&buf, `{"loadBalancer":{"servers":[{"url":"http://%s:8080"}],"passHostHeader":true},"serverStatus":{"http://%s:8080":"UP"},"status":"enabled","usedBy":["svc%07d@docker"],"name":"svc%07d@docker","provider":"docker","type":"loadbalancer"}`, ip, ip, i, i)
		if buf.Len() >= 64<<10 {
			n, err := w.Write(buf.Bytes())
			written += int64(n)
			buf.Reset()
			if err != nil {
				return // the client stopped reading
			}
		}
	}
	buf.WriteString("]\n")
	w.Write(buf.Bytes())
}

// truncateResponse cuts a real answer in half (keeping its headers, with a
// matching Content-Length).
func truncateResponse(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	body = body[:len(body)/2]
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// reshapeResponse wraps a real JSON answer in an object of another schema.
func reshapeResponse(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if !json.Valid(body) { // e.g. Traefik's text 404: left as it is
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	out := []byte(`{"apiVersion":"v4","items":` + strings.TrimSpace(string(body)) + `}` + "\n")
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.Header.Del("X-Next-Page")
	return nil
}
