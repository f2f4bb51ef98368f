package cmd

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/traefikapi"
)

// DefaultTraefikURL is where Traefik's API listens with api.insecure=true.
const DefaultTraefikURL = "http://localhost:8080"

type traefikOptions struct {
	url      string
	user     string
	password string
	headers  []string
	ca       string
	insecure bool
	// throttle is Traefik's providersThrottleDuration (--traefik-throttle,
	// on the commands that change the world): the router's propagation
	// bound (traefikapi.DockerProvider).
	throttle time.Duration
}

func (t *traefikOptions) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&t.url, "traefik-url", DefaultTraefikURL, "Traefik API URL, with the API base path if any (env DEPLOYCTL_TRAEFIK_URL)")
	f.StringVar(&t.user, "traefik-user", "", "basic auth user for Traefik's API (env DEPLOYCTL_TRAEFIK_USER)")
	f.StringVar(&t.password, "traefik-password", "", "basic auth password for Traefik's API; prefer env DEPLOYCTL_TRAEFIK_PASSWORD (never printed)")
	f.StringArrayVar(&t.headers, "traefik-header", nil, "extra `Name: value` header on Traefik API requests, e.g. a token (never printed; prefer env DEPLOYCTL_TRAEFIK_HEADER, one header per line)")
	f.StringVar(&t.ca, "traefik-ca", "", "PEM `file` of CA certificates to trust for an https Traefik API")
	f.BoolVar(&t.insecure, "traefik-insecure", false, "do not verify the Traefik API's TLS certificate")
}

// warnings are what the user should know about how Traefik's API is
// reached: a run with them still goes on.
func (t *traefikOptions) warnings() []deploy.Warning {
	var w []deploy.Warning
	if t.insecure {
		w = append(w, deploy.Warning{Code: deploy.WarnTraefikInsecure, Message: "--traefik-insecure: the Traefik API's TLS certificate is not verified, so whoever sits on the path can read the credentials and forge Traefik's answers; pass the CA that signed it with --traefik-ca instead"})
	}
	u, err := url.Parse(t.url)
	if err != nil || !strings.EqualFold(u.Scheme, "http") || isLoopback(u.Hostname()) {
		return w
	}
	var creds []string
	if t.user != "" || t.password != "" {
		creds = append(creds, "--traefik-user/--traefik-password")
	}
	if u.User != nil {
		creds = append(creds, "the user:password in --traefik-url")
	}
	if len(t.headers) > 0 {
		creds = append(creds, "--traefik-header")
	}
	if len(creds) > 0 {
		w = append(w, deploy.Warning{Code: deploy.WarnCredentialsInClear, Message: fmt.Sprintf("the Traefik API credentials (%s) are sent over plain http to %s, readable by anyone on the network: use an https:// --traefik-url (Traefik's API behind a TLS router)",
			strings.Join(creds, ", "), u.Host)})
	}
	return w
}

// secrets are the credentials for Traefik's API, for the engine to redact
// from what it relays: the password, the header values, and the basic auth
// header they make.
func (t *traefikOptions) secrets() []string {
	user, password := t.user, t.password
	if u, err := url.Parse(t.url); err == nil && u.User != nil && user == "" {
		user = u.User.Username()
		password, _ = u.User.Password()
	}
	var out []string
	if user != "" || password != "" {
		out = append(out, password, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
	}
	for _, line := range t.headers {
		if _, value, ok := strings.Cut(line, ":"); ok {
			// "Bearer <token>": the token alone too.
			out = append(out, strings.TrimSpace(value))
			if f := strings.Fields(value); len(f) > 1 {
				out = append(out, f[len(f)-1])
			}
		}
	}
	return out
}

// isLoopback reports whether host is localhost or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// router is Traefik's API as t says how to reach it: the observing half
// of the engine's router (the adapter lives beside the client, in
// traefikapi; factory.engine makes it a traefikapi.DockerProvider).
func (t *traefikOptions) router() (deploy.Observer, error) {
	h := http.Header{}
	for _, line := range t.headers {
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, usagef("--traefik-header must be 'Name: value' (got a value without a colon)")
		}
		h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	cli, err := traefikapi.New(traefikapi.Config{
		URL: t.url, Username: t.user, Password: t.password, Headers: h, CAFile: t.ca, Insecure: t.insecure,
	})
	if err != nil {
		return nil, usagef("--traefik-url: %v", err)
	}
	return cli.Router(), nil
}
