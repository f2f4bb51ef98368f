// Package traefikapi is a small client for Traefik's API: it lists the HTTP
// services Traefik routes to and the server URLs in each, for Traefik v1
// (/api/providers/docker/backends) and v2/v3 (/api/http/services).
// It knows nothing about Docker.
package traefikapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
)

// Config says where Traefik's API is and how to reach it.
type Config struct {
	// URL of the API entrypoint, with any api.basePath:
	// http://localhost:8080 or https://host/traefik. Credentials in the URL
	// (http://user:pass@host) are used as basic auth unless Username is set.
	URL      string
	Username string // basic auth; never printed in errors
	Password string
	Headers  http.Header // extra headers (e.g. a token, or Host for a Host rule); never printed
	CAFile   string      // PEM bundle to trust for https, in addition to the system roots
	Insecure bool        // skip TLS verification

	RequestTimeout time.Duration // per attempt; default 5s
	// RetryMax is how often a connection error or a 5xx answer is retried,
	// with a backoff of 100ms doubling up to 1s; 0 means 4, negative means
	// never. 4xx answers are never retried.
	RetryMax int
	PageSize int // services per page for v2/v3 lists; default 100 (Traefik's own default)

	// HTTPClient, when set, is used as is (its Transport decides TLS); CAFile
	// and Insecure are then ignored. Its Timeout defaults to RequestTimeout.
	HTTPClient *http.Client
}

const (
	defaultRequestTimeout = 5 * time.Second
	defaultRetryMax       = 4
	defaultPageSize       = 100
	retryWaitMin          = 100 * time.Millisecond
	retryWaitMax          = time.Second
	maxBodySize           = 32 << 20
	goodURLExample        = "e.g. http://localhost:8080 or https://traefik.example.com/traefik"
)

// Client talks to one Traefik API. It is safe for concurrent use.
type Client struct {
	base     string // scheme://host[:port][/basePath], no userinfo, no trailing slash
	username string
	password string
	headers  http.Header
	pageSize int
	maxBody  int64
	retry    *retryablehttp.Client

	mu   sync.Mutex
	info *Info
	// answered: Traefik's API has answered this client before, so a
	// transport failure now is an outage, not a wrong URL.
	answered atomic.Bool
}

// New checks cfg and returns a client. It does not contact Traefik.
func New(cfg Config) (*Client, error) {
	// Errors show redactRawURL: url.Parse errors and u.Redacted() (for
	// "user:pass@host") may both carry a password.
	shown := redactRawURL(cfg.URL)
	u, err := url.Parse(cfg.URL)
	switch {
	case strings.TrimSpace(cfg.URL) == "":
		return nil, fmt.Errorf("traefik API URL is empty (%s)", goodURLExample)
	case err != nil:
		return nil, fmt.Errorf("traefik API URL %q is not a valid URL (%s)", shown, goodURLExample)
	case !strings.Contains(cfg.URL, "://"):
		return nil, fmt.Errorf("traefik API URL %q has no scheme: start it with http:// or https:// (%s)", shown, goodURLExample)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("traefik API URL %q: scheme must be http or https, not %q (%s)", shown, sanitize(u.Scheme, 20), goodURLExample)
	case u.Hostname() == "":
		return nil, fmt.Errorf("traefik API URL %q has no host (%s)", shown, goodURLExample)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("traefik API URL %q must not have a query or fragment (%s)", shown, goodURLExample)
	}

	c := &Client{
		username: cfg.Username,
		password: cfg.Password,
		headers:  cfg.Headers.Clone(),
		pageSize: cfg.PageSize,
		maxBody:  maxBodySize,
	}
	if u.User != nil && c.username == "" {
		c.username = u.User.Username()
		c.password, _ = u.User.Password()
	}
	u.User = nil
	c.base = strings.TrimRight(u.String(), "/")
	if c.pageSize <= 0 {
		c.pageSize = defaultPageSize
	}

	timeout := cfg.RequestTimeout
	if timeout <= 0 {
		timeout = defaultRequestTimeout
	}
	var hc *http.Client
	if cfg.HTTPClient != nil {
		copied := *cfg.HTTPClient
		hc = &copied
		if hc.Timeout == 0 {
			hc.Timeout = timeout
		}
	} else {
		tr := cleanhttp.DefaultPooledTransport()
		if u.Scheme == "https" {
			if tr.TLSClientConfig, err = tlsConfig(cfg); err != nil {
				return nil, err
			}
		}
		hc = &http.Client{Transport: tr, Timeout: timeout}
	}

	// Redirects: Go's client resends the request's headers to wherever a
	// redirect points, custom ones (--traefik-header) even to another host,
	// and the basic auth header even from https to http on the same host.
	// Only redirects within the origin of --traefik-url are followed.
	hc.CheckRedirect = checkRedirect

	retryMax := cfg.RetryMax
	switch {
	case retryMax == 0:
		retryMax = defaultRetryMax
	case retryMax < 0:
		retryMax = 0
	}
	c.retry = &retryablehttp.Client{
		HTTPClient:   hc,
		Logger:       nil, // go-retryablehttp would otherwise log to stderr
		RetryWaitMin: retryWaitMin,
		RetryWaitMax: retryWaitMax,
		RetryMax:     retryMax,
		CheckRetry:   checkRetry,
		Backoff: func(lo, hi time.Duration, n int, resp *http.Response) time.Duration {
			return min(retryablehttp.DefaultBackoff(lo, hi, n, resp), hi) // cap Retry-After too
		},
		ErrorHandler: retryablehttp.PassthroughErrorHandler, // we report the last answer ourselves
	}
	return c, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure} //nolint:gosec // the user asked for it
	if cfg.CAFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading the Traefik CA bundle (--traefik-ca): %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("traefik CA bundle %s (--traefik-ca) holds no PEM certificate", cfg.CAFile)
	}
	conf.RootCAs = pool
	return conf, nil
}

// maxRedirects bounds a chain of same-origin redirects, as Go's default.
const maxRedirects = 10

// redirectError is a redirect deployctl refused to follow.
type redirectError struct {
	from, to *url.URL
	tooMany  bool
}

func (e *redirectError) Error() string {
	if e.tooMany {
		return fmt.Sprintf("stopped after %d redirects (the last to %s)", maxRedirects, shownURL(e.to))
	}
	why := "another origin"
	if e.from.Scheme == "https" && e.to.Scheme == "http" {
		why = "plain http"
	}
	return fmt.Sprintf("redirected to %s (%s): not followed, so that the Traefik credentials are sent nowhere but --traefik-url", shownURL(e.to), why)
}

// checkRedirect follows a redirect only within the origin (scheme, host,
// port) of the first request: the credentials on it are Traefik's, and an
// https -> http redirect, even to the same host, would send them in clear.
func checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if !sameOrigin(first, req.URL) {
		return &redirectError{from: first, to: req.URL}
	}
	if len(via) >= maxRedirects {
		return &redirectError{from: first, to: req.URL, tooMany: true}
	}
	return nil
}

// sameOrigin reports whether a and b have the same scheme, host and port
// (the scheme's default port when none is given).
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// shownURL is u for a message: scheme, host and path, without userinfo or
// query (either may carry a token).
func shownURL(u *url.URL) string {
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	s := shown.String()
	if u.RawQuery != "" {
		s += "?(query not shown)"
	}
	return sanitize(s, 200)
}

// checkRetry retries connection errors and 5xx answers, never 4xx, and stops
// as soon as ctx is done.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var rerr *redirectError
		if tlsHint(err) != "" || errors.As(err, &rerr) {
			return false, nil
		}
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err) // also skips scheme and redirect errors
	}
	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

// answer is one HTTP answer, body already read (bounded).
type answer struct {
	url         string
	status      int
	contentType string
	header      http.Header
	body        []byte
}

// get fetches c.base+path (path already escaped) and returns the answer for
// any status but 401/403; transport failures become ErrUnreachable (or the
// ctx error), persistent 502/503/504 too.
func (c *Client) get(ctx context.Context, path string) (*answer, error) {
	target := c.base + path
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: building request for %s: %v", ErrUnexpectedAnswer, target, err)
	}
	req.Header.Set("Accept", "application/json")
	for k, vs := range c.headers {
		if http.CanonicalHeaderKey(k) == "Host" && len(vs) > 0 {
			req.Host = vs[0]
			continue
		}
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.username != "" || c.password != "" {
		req.SetBasicAuth(c.username, c.password)
	}

	resp, err := c.retry.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, target, err)
	}
	defer resp.Body.Close()
	c.answered.Store(true)

	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	a := &answer{url: target, status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), header: resp.Header, body: body}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("GET %s: %w", target, ctx.Err())
		}
		return nil, a.unexpected(c, fmt.Sprintf("a body cut short (%v)", err))
	}
	if int64(len(body)) > c.maxBody {
		return nil, a.unexpected(c, fmt.Sprintf("more than %d MiB", c.maxBody>>20))
	}

	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)) // not resp.Status: its text is the server's
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		hint := "check the Traefik API credentials (--traefik-user/--traefik-password or --traefik-header, or DEPLOYCTL_TRAEFIK_USER/DEPLOYCTL_TRAEFIK_PASSWORD)"
		if c.username == "" && c.password == "" && len(c.headers) == 0 {
			hint = "Traefik's API needs credentials and none were given: " + hint
		}
		return nil, fmt.Errorf("%w: %s answered %s; %s", ErrUnauthorized, target, status, hint)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, fmt.Errorf("%w: %s answered %s after %d attempts (a proxy in front of Traefik?); check --traefik-url and that Traefik's API is enabled",
			ErrUnreachable, target, status, c.retry.RetryMax+1)
	}
	return a, nil
}

func (c *Client) transportError(ctx context.Context, target string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("GET %s: %w", target, ctx.Err())
	}
	cause := err
	var uerr *url.Error
	if errors.As(err, &uerr) {
		cause = uerr.Err // its own text repeats the URL
	}
	if hint := tlsHint(err); hint != "" {
		return fmt.Errorf("%w: %w: GET %s: %v; %s", ErrUnreachable, ErrTLS, target, cause, hint)
	}
	var rerr *redirectError
	if errors.As(err, &rerr) {
		return fmt.Errorf("%w: GET %s was %v; if Traefik's API is there, give that URL as --traefik-url", ErrUnexpectedAnswer, target, rerr)
	}
	hint := "check --traefik-url and that Traefik's API is enabled (--api, and --api.insecure=true for the :8080 entrypoint)"
	if c.answered.Load() {
		hint = "it answered earlier in this run: check that Traefik is still up (restarting, overloaded or cut off?)"
	}
	return fmt.Errorf("%w: GET %s failed after %d attempts: %v; %s", ErrUnreachable, target, c.retry.RetryMax+1, cause, hint)
}

// tlsHint says what to do about a TLS failure, or "" if err is not one.
func tlsHint(err error) string {
	var (
		verr *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
		rerr tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &verr) || errors.As(err, &uae) || errors.As(err, &herr) || errors.As(err, &cerr):
		return "pass the CA that signed Traefik's certificate with --traefik-ca, or skip verification with --traefik-insecure"
	case errors.As(err, &rerr) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "the server does not speak TLS here: use an http:// --traefik-url"
	}
	return ""
}

// unexpected builds an ErrUnexpectedAnswer naming the URL, status, content
// type and the start of the body, with any configured secret blanked out.
func (a *answer) unexpected(c *Client, what string) error {
	ct := a.contentType
	if ct == "" {
		ct = "none"
	}
	return fmt.Errorf("%w: %s answered %d with %s (content type %s, body starts %q); is --traefik-url Traefik's API entrypoint, with its base path?",
		ErrUnexpectedAnswer, a.url, a.status, what, c.scrub(sanitize(ct, 60)), c.scrub(sanitize(string(a.body), 200)))
}

// scrub blanks the configured credentials out of s.
func (c *Client) scrub(s string) string {
	basic := base64.StdEncoding.EncodeToString([]byte(c.username + ":" + c.password))
	secrets := []string{basic, c.password, c.username}
	for _, vs := range c.headers {
		secrets = append(secrets, vs...)
	}
	for _, secret := range secrets {
		if len(secret) >= 3 {
			s = strings.ReplaceAll(s, secret, "***")
		}
	}
	return s
}

// sanitize keeps at most n bytes of printable text from s, one line.
func sanitize(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = ' '
		}
		if b.Len()+len(string(r)) > n {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// redactRawURL replaces any userinfo ("user:pass@") in raw, parsed or not.
func redactRawURL(raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + 3
	}
	if at := strings.LastIndex(raw, "@"); at >= start {
		raw = raw[:start] + "***" + raw[at:]
	}
	return sanitize(raw, 200)
}
