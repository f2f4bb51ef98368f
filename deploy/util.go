package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

func lastServed(c Container) time.Time {
	if c.Finished.After(c.Created) {
		return c.Finished
	}
	return c.Created
}

func versionsOf(olds []*oldContainer) string {
	if len(olds) == 0 {
		return ""
	}
	return describeCurrent(olds)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// logs returns the container's last log lines, relayed (secrets redacted,
// escapes dropped), or why they are missing.
func (r *rollout) logs(ctx context.Context, id string) string {
	ctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	out, err := r.e.Runtime.Logs(ctx, id, 20)
	if err != nil {
		return "(logs unavailable: " + err.Error() + ")"
	}
	out = strings.TrimRight(r.relay(out), "\n")
	if out == "" {
		return "(no output)"
	}
	return indent(out, "    ")
}

// errTimeout marks a poll that ran out of time.
var errTimeout = errors.New("timed out")

func isTimeout(err error) bool { return errors.Is(err, errTimeout) }

// poll calls check every PollInterval until it returns true or an error,
// the deadline passes (errTimeout) or ctx is done.
func (r *rollout) poll(ctx context.Context, deadline time.Duration, check func() (bool, error)) error {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	tick := time.NewTicker(r.o.PollInterval)
	defer tick.Stop()
	for {
		ok, err := check()
		if err != nil {
			return disappeared(err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-timer.C:
			return errTimeout
		case <-tick.C:
		}
	}
}

// disappeared explains a container that is gone while deployctl waited
// for it; other errors are returned as they are.
func disappeared(err error) error {
	if errors.Is(err, ErrContainerNotFound) {
		return &Error{Kind: KindFailed, Err: fmt.Errorf("a container deployctl was waiting for disappeared: %w", err), Hint: "whether something else removed it (docker events)"}
	}
	return err
}

// besideKey tags the context of the Docker calls a goroutine makes beside
// the run's own sequence of calls (pruning while the old containers stop)
// with that goroutine's name. How many calls such a goroutine makes, and when, depends on timing;
// the tag lets the fault tests number the run's own calls and each
// goroutine's calls apart, so that "the n-th call" is the same call in every
// run. The engine's decisions never depend on it.
type besideKey struct{}

func beside(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, besideKey{}, name)
}

// besideName is the name given by beside, "" for the run's own calls.
func besideName(ctx context.Context) string {
	s, _ := ctx.Value(besideKey{}).(string)
	return s
}

// parallel runs f for each item concurrently and joins the errors.
func parallel[T any](items []T, f func(T) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(items))
	for i, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(it)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func unreachable(what string, err error) error {
	if err == nil {
		return nil
	}
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	if what == "Docker" && !errors.Is(err, ErrUnreachable) {
		// Docker answered, with an error: it is reachable (the adapter
		// marks connection failures with ErrUnreachable).
		return &Error{Kind: KindFailed, Err: fmt.Errorf("%s: %w", what, err), Hint: dockerErrorHint}
	}
	hint := "that the Docker engine is running and DOCKER_HOST points at it"
	if what == "Traefik" {
		switch {
		case errors.Is(err, ErrTraefikCredentials):
			hint = "the Traefik API credentials: --traefik-user and --traefik-password (DEPLOYCTL_TRAEFIK_USER, DEPLOYCTL_TRAEFIK_PASSWORD), or --traefik-header"
		case errors.Is(err, ErrTraefikTLS):
			hint = "--traefik-ca <PEM file> to trust the CA that signed Traefik's certificate (or --traefik-insecure to skip verification)"
		default:
			hint = "--traefik-url (or DEPLOYCTL_TRAEFIK_URL), with the API's base path if any, and that Traefik's API is enabled (api.insecure, or a router to api@internal)"
		}
		if strings.HasPrefix(strings.ToLower(err.Error()), "traefik") {
			// The error names Traefik already.
			return &Error{Kind: KindUnreachable, Err: err, Hint: hint}
		}
	}
	return &Error{Kind: KindUnreachable, Err: fmt.Errorf("%s: %w", what, err), Hint: hint}
}

func wrapDocker(err error) error {
	if err == nil {
		return nil
	}
	return unreachable("Docker", err)
}

// dockerErrorHint is what to check when the Docker engine answered a call
// with an error.
const dockerErrorHint = "the Docker engine's error above, on the Docker host: free disk space (docker system df), and that this user may manage containers (docker info)"

// classifyDocker marks Docker connection failures as such.
func classifyDocker(err error) error {
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	if errors.Is(err, ErrUnreachable) {
		return &Error{Kind: KindUnreachable, Err: err, Hint: "that the Docker engine is running and DOCKER_HOST points at it"}
	}
	return err
}

func allVersion(cs []Container, v string) bool {
	for _, c := range cs {
		if c.Labels[LabelVersion] != v {
			return false
		}
	}
	return len(cs) > 0
}

func names(cs []Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Short())
	}
	return strings.Join(out, ", ")
}

func containersOf(olds []*oldContainer) []Container {
	cs := make([]Container, len(olds))
	for i, o := range olds {
		cs[i] = o.Container
	}
	return cs
}

func describeCurrent(olds []*oldContainer) string {
	if len(olds) == 0 {
		return "(first deploy)"
	}
	var vs []string
	for _, o := range olds {
		v := o.Labels[LabelVersion]
		if v == "" {
			v = o.Image
		}
		if !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return strings.Join(vs, ", ")
}

func sameService(a, b string) bool {
	if a == b {
		return true
	}
	// A router's service may be written unqualified: web == web@docker.
	an, _, _ := strings.Cut(a, "@")
	bn, _, _ := strings.Cut(b, "@")
	return an == bn && (!strings.Contains(a, "@") || !strings.Contains(b, "@"))
}

func serviceScope(s string) string {
	if s == "" {
		return "any Traefik service"
	}
	return "service " + s
}

func sortedValues(m map[string]string) []string {
	var vs []string
	for _, k := range sortedKeys(m) {
		vs = append(vs, m[k])
	}
	return vs
}

func statusSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

// lastProbe is the raw output of c's last health probe: show it only
// through probeOutput.
func lastProbe(c Container) string {
	if len(c.HealthLog) == 0 {
		return "(none)"
	}
	return strings.TrimSpace(c.HealthLog[len(c.HealthLog)-1].Output)
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
