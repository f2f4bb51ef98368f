// Package compose reads a compose project the way `docker compose` (v2)
// reads it, with the compose specification's own Go library
// (github.com/compose-spec/compose-go/v2), and gives deployctl what it needs
// to roll one of its services out in place: the service's configuration
// with the version given, the labels compose puts on the containers it
// makes (its config hash among them), and the refusals of configurations
// that cannot run twice side by side. docs/research/compose.md has the
// facts this follows, with the compose sources they come from.
//
// compose-go is pinned to v2.9.1, the version compose v2.40.3 links: the
// config hash is the JSON of its ServiceConfig, and another version lays
// it out differently (TestServiceHashGolden fails then).
package compose

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadOptions are the `docker compose` flags and environment that decide
// which project is loaded and how.
type LoadOptions struct {
	Files      []string // -f, in order; none: compose.yaml (and its override) found as compose finds it
	Project    string   // -p; else COMPOSE_PROJECT_NAME, the file's name:, the directory's name
	ProjectDir string   // --project-directory; else the first file's directory
	EnvFiles   []string // --env-file; else .env in the project directory
	Profiles   []string // --profile; else COMPOSE_PROFILES
	// Env is the environment compose reads (interpolation, COMPOSE_*
	// variables); nil: this process's.
	Env []string
}

// Service is one service of a loaded project, as `docker compose up`
// would create its containers.
type Service struct {
	Project *types.Project
	Config  types.ServiceConfig
	// VersionVars are the variables of the image's tag that were set to
	// the version (image: web:${TAG}): `docker compose up` recreates
	// nothing only when they hold the version then too.
	VersionVars []string
}

// Name is the service's name in the project.
func (s *Service) Name() string { return s.Config.Name }

// Replicas is the number of containers compose runs of the service
// (scale, else deploy.replicas, else 1).
func (s *Service) Replicas() int { return s.Config.GetScale() }

// Load loads the project and returns its service named service, with
// its image at version: the variables of the image's tag are set to the
// version for interpolation (web:${TAG} becomes web:<version>, and the
// config hash is then the one `TAG=<version> docker compose up` computes);
// an image whose tag names no variable gets the version as its tag (and a
// later `docker compose up` with the file unchanged sees another image).
func Load(ctx context.Context, o LoadOptions, service, version string) (*Service, error) {
	env := o.Env
	if env == nil {
		env = os.Environ()
	}
	raw, err := rawImage(ctx, o, env, service)
	if err != nil {
		return nil, err
	}
	vars := tagVariables(raw)
	if len(vars) > 0 {
		env = slices.Clone(env)
		for _, v := range vars {
			env = append(env, v+"="+version)
		}
	}
	p, err := load(ctx, o, env)
	if err != nil {
		return nil, err
	}
	if p, err = p.WithServicesEnabled(service); err != nil {
		return nil, notFound(p, service, err)
	}
	if p, err = p.WithServicesEnvironmentResolved(true); err != nil {
		return nil, fmt.Errorf("compose: resolving the environment of %s: %w", service, err)
	}
	cfg, err := p.GetService(service)
	if err != nil {
		return nil, notFound(p, service, err)
	}
	if len(vars) == 0 && cfg.Image != "" {
		cfg.Image = withTag(cfg.Image, version)
	}
	return &Service{Project: p, Config: cfg, VersionVars: vars}, nil
}

// load loads the project as `docker compose up` does (compose's
// cmd/compose ProjectOptions.ToProject with the options of up and create:
// paths resolved, the environment not yet resolved).
func load(ctx context.Context, o LoadOptions, env []string) (*types.Project, error) {
	po, err := options(o, env, true)
	if err != nil {
		return nil, err
	}
	p, err := po.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("compose: loading %s: %w", describeFiles(o.Files), err)
	}
	if p.Name == "" {
		return nil, errors.New("compose: the project has no name: give -p, COMPOSE_PROJECT_NAME or a top-level name:")
	}
	return p, nil
}

// options are compose-go's options for o, as `docker compose up` sets
// them.
func options(o LoadOptions, env []string, interpolate bool) (*cli.ProjectOptions, error) {
	opts := []cli.ProjectOptionsFn{
		cli.WithResolvedPaths(true), cli.WithoutEnvironmentResolution,
		cli.WithWorkingDirectory(o.ProjectDir),
		cli.WithEnv(env), // what compose's WithOsEnv reads, given
		cli.WithEnvFiles(o.EnvFiles...), cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithEnvFiles(o.EnvFiles...), cli.WithDotEnv, // again: the working directory may have moved
		cli.WithDefaultProfiles(o.Profiles...),
		cli.WithName(o.Project),
	}
	if !interpolate {
		opts = append(opts, cli.WithInterpolation(false), cli.WithLoadOptions(func(lo *loader.Options) {
			lo.SkipValidation, lo.SkipConsistencyCheck = true, true
		}))
	}
	po, err := cli.NewProjectOptions(o.Files, opts...)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	return po, nil
}

// rawImage is the service's image as the files write it, before
// interpolation ("" when it has none): read from the merged model
// (extends and include applied), which is not decoded, so that a
// variable where the schema wants a number (replicas: ${N}) is no error
// yet.
func rawImage(ctx context.Context, o LoadOptions, env []string, service string) (string, error) {
	po, err := options(o, env, false)
	if err != nil {
		return "", err
	}
	model, err := po.LoadModel(ctx)
	if err != nil {
		return "", fmt.Errorf("compose: loading %s: %w", describeFiles(o.Files), err)
	}
	services, _ := model["services"].(map[string]any)
	svc, ok := services[service].(map[string]any)
	if !ok {
		names := slices.Sorted(maps.Keys(services))
		return "", fmt.Errorf("compose: the project has no service %q (its services: %s)", service, strings.Join(names, ", "))
	}
	image, _ := svc["image"].(string)
	return image, nil
}

// variable is a compose variable reference: $VAR, ${VAR}, ${VAR:-x},
// ${VAR-x}, ${VAR:?x}, ${VAR?x}, ${VAR:+x}, ${VAR+x}.
var variable = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-?+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))`)

// tagVariables are the variables in the tag of image reference raw (after
// the last ':' that follows the last '/'), in order, without repeats.
func tagVariables(raw string) []string {
	_, tag := splitTag(raw)
	var out []string
	for _, m := range variable.FindAllStringSubmatch(tag, -1) {
		name := m[1] + m[2]
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// splitTag splits an image reference into its name and its tag ("" when
// it has none); a digest stays with the name.
func splitTag(ref string) (name, tag string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref, ""
	}
	// The tag starts at the first ':' of the last path component that is
	// not inside a ${...} (web:${TAG:-latest}); a registry's port is in an
	// earlier component.
	slash := strings.LastIndex(ref, "/")
	rest := ref[slash+1:]
	depth := 0
	for i, r := range rest {
		switch {
		case r == '{':
			depth++
		case r == '}':
			depth--
		case r == ':' && depth == 0:
			return ref[:slash+1+i], rest[i+1:]
		}
	}
	return ref, ""
}

// withTag is image ref with its tag replaced by tag.
func withTag(ref, tag string) string {
	name, _ := splitTag(ref)
	if strings.Contains(name, "@") {
		return ref // pinned by digest: the version cannot change it
	}
	return name + ":" + tag
}

func notFound(p *types.Project, service string, err error) error {
	if p == nil {
		return fmt.Errorf("compose: %w", err)
	}
	names := p.ServiceNames()
	for name := range p.DisabledServices {
		names = append(names, name)
	}
	slices.Sort(names)
	return fmt.Errorf("compose: project %s has no service %q (its services: %s)", p.Name, service, strings.Join(names, ", "))
}

func describeFiles(files []string) string {
	if len(files) == 0 {
		return "the compose file"
	}
	return strings.Join(files, ", ")
}
