package traefikapi

import (
	"context"
	"errors"
	"strings"

	"github.com/deployctl/deployctl/deploy"
)

// Router adapts a Client to the observing half of the engine's router
// protocol (deploy.Observer and deploy.TraefikVersioner); DockerProvider
// makes it the engine's router. It lives beside the client rather than in
// cmd, so a router call goes deploy -> traefikapi and back, and the
// mapping of this package's errors onto the engine's kinds sits next to
// the errors.
type Router struct{ c *Client }

// Router returns the engine's view of c.
func (c *Client) Router() Router { return Router{c} }

var (
	_ deploy.Observer         = Router{}
	_ deploy.TraefikVersioner = Router{}
)

// Services implements deploy.Observer.
func (r Router) Services(ctx context.Context) ([]deploy.Service, error) {
	svcs, err := r.c.Services(ctx)
	if err != nil {
		return nil, routerError(err)
	}
	out := make([]deploy.Service, len(svcs))
	for i, s := range svcs {
		out[i] = toDeployService(s)
	}
	return out, nil
}

// Service implements deploy.Observer.
func (r Router) Service(ctx context.Context, name string) (deploy.Service, error) {
	s, err := r.c.Service(ctx, name)
	if err != nil {
		return deploy.Service{}, routerError(err)
	}
	return toDeployService(s), nil
}

// TraefikVersion implements deploy.TraefikVersioner from /api/version.
func (r Router) TraefikVersion(ctx context.Context) (string, error) {
	info, err := r.c.Info(ctx)
	if err != nil {
		return "", routerError(err)
	}
	return info.Version, nil
}

// toDeployService is s as the engine sees it: Traefik's server statuses
// ("UP", "up", "DOWN") upper case, as deploy.Server.Registered reads them.
func toDeployService(s Service) deploy.Service {
	out := deploy.Service{Name: s.Name, Servers: make([]deploy.Server, len(s.Servers))}
	for i, srv := range s.Servers {
		out.Servers[i] = deploy.Server{URL: srv.URL, Status: strings.ToUpper(srv.Status)}
	}
	return out
}

// routerError makes err, one of this package's, also match the engine's
// sentinel of the same kind, which decides the exit code and what the
// engine does next (a missing service is waited for, an unreachable
// Traefik is not).
func routerError(err error) error {
	switch {
	case errors.Is(err, ErrServiceNotFound):
		return kindError{err, []error{deploy.ErrServiceNotFound}}
	case errors.Is(err, ErrTLS):
		return kindError{err, []error{deploy.ErrUnreachable, deploy.ErrTraefikTLS}}
	case errors.Is(err, ErrUnreachable):
		return kindError{err, []error{deploy.ErrUnreachable}}
	case errors.Is(err, ErrUnauthorized):
		return kindError{err, []error{deploy.ErrTraefikCredentials}}
	}
	return err
}

// kindError is err, also matching the engine's sentinel kinds, without
// repeating their text ("unreachable: traefik API unreachable: ...").
type kindError struct {
	err   error
	kinds []error
}

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return append([]error{e.err}, e.kinds...) }
