package cmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/compose"
	"github.com/deployctl/deployctl/deploy"
)

// composeFlags are `docker compose`'s own flags that choose the project
// (-f, -p, --project-directory, --profile); --env-file is shared with the
// container's flag and means compose's in a compose rollout.
type composeFlags struct {
	files      []string
	project    string
	projectDir string
	profiles   []string
	// service is the SERVICE argument; "" outside a compose rollout.
	service string
	// envFiles is compose's --env-file (rollback's and check's own flag;
	// a rollout's --env-file, set by completeCompose).
	envFiles []string
	// warnings are what the file asks for that deployctl does not honour
	// (update_config settings), shown before the run.
	warnings []deploy.Warning
}

func (cf *composeFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVarP(&cf.files, "file", "f", nil, "compose `file` of the project whose SERVICE to roll out, as docker compose -f (repeatable; default: compose.yaml as docker compose finds it)")
	fl.StringVarP(&cf.project, "project-name", "p", "", "compose project name, as docker compose -p (default: COMPOSE_PROJECT_NAME, the file's name:, the directory's name)")
	fl.StringVar(&cf.projectDir, "project-directory", "", "compose project directory, as docker compose --project-directory")
	fl.StringArrayVar(&cf.profiles, "profile", nil, "compose profile to enable, as docker compose --profile (repeatable)")
}

// rolloutArgs: no argument, or the compose SERVICE.
func rolloutArgs(c *cobra.Command, args []string) error {
	if err := cobra.MaximumNArgs(1)(c, args); err != nil {
		return flagError{fmt.Errorf("%w: the only argument is a compose service (deployctl rollout -f compose.yaml SERVICE --version TAG)", err)}
	}
	return nil
}

// flagsFromTheFile are rollout's flags whose value a compose rollout
// takes from the file, with the field that gives it there.
var flagsFromTheFile = []struct{ flag, field string }{
	{"image", "image:"}, {"app", "the project and service names"}, {"select", "the project and service names"},
	{"label", "labels:"}, {"env", "environment:"}, {"volume", "volumes:"}, {"restart", "restart:"},
	{"health-cmd", "healthcheck:"}, {"health-interval", "healthcheck:"}, {"health-timeout", "healthcheck:"},
	{"health-start-period", "healthcheck:"}, {"health-retries", "healthcheck:"}, {"no-healthcheck", "healthcheck: disable: true"},
	{"replicas", "deploy.replicas or scale:"}, {"network", "networks: and the traefik.docker.network label"},
}

// completeCompose loads the compose service and sets the rollout's
// options from it. Every error is a usage error: nothing was contacted.
func (o *rolloutOptions) completeCompose(c *cobra.Command) error {
	cf := &o.compose
	fl := c.Flags()
	for _, f := range flagsFromTheFile {
		if fl.Changed(f.flag) {
			return usagef("--%s cannot be given with a compose service: its value is the file's (%s)", f.flag, f.field)
		}
	}
	if o.Version == "" {
		return usagef("--version is required: the image tag to deploy, e.g. deployctl rollout -f compose.yaml %s --version 3f9ace5", cf.service)
	}
	cf.envFiles = o.envFiles // rollout's --env-file is compose's here
	s, err := cf.loadService(c, o.Version)
	if err != nil {
		return err
	}
	if err := compose.Refuse(s); err != nil {
		return usageErr{err}
	}
	repo, err := compose.ImageRepo(s, o.Version)
	if err != nil {
		return usageErr{err}
	}
	target, err := s.Target(o.envFiles)
	if err != nil {
		var ue *compose.UnsupportedError
		if errors.As(err, &ue) {
			return usageErr{err}
		}
		return err
	}
	network, err := s.TraefikNetwork()
	if err != nil {
		return usageErr{err}
	}
	u, err := s.Update()
	if err != nil {
		return usageErr{err}
	}
	if s.Replicas() < 1 {
		return usagef("compose service %s runs no replica (scale: 0): there is nothing to roll out", s.Name())
	}
	pre, post, err := s.Release()
	if err != nil {
		return usageErr{err}
	}
	if !fl.Changed("pre-deploy") {
		o.PreDeploy = pre
	}
	if !fl.Changed("post-deploy") {
		o.PostDeploy = post
	}
	o.Image, o.App, o.Select, o.Network, o.Target = repo, s.App(), s.Selector(), network, target
	o.Replicas = s.Replicas()
	for _, w := range u.Ignored {
		cf.warnings = append(cf.warnings, deploy.Warning{Code: deploy.WarnComposeIgnored, Message: "ignored: " + w})
	}
	// update_config gives the steps where the flags do not.
	if u.Parallelism > 0 || u.StopFirst {
		if !fl.Changed("switch") {
			o.Switch, o.StepsNeedProbes = deploy.SwitchGradual, !u.StopFirst
		}
		n := max(u.Parallelism, 1)
		surge, unavailable := deploy.Amount{N: n}, deploy.Amount{N: 0}
		if u.StopFirst {
			surge, unavailable = deploy.Amount{N: 0}, deploy.Amount{N: n}
			cf.warnings = append(cf.warnings, deploy.Warning{Code: deploy.WarnComposeIgnored, Message: fmt.Sprintf(
				"deploy.update_config.order is stop-first: %d replica(s) at a time leave Traefik before their replacements run; with %d replica(s) that is less capacity%s",
				n, o.Replicas, map[bool]string{true: ", and downtime", false: ""}[n >= o.Replicas])})
		}
		if !fl.Changed("max-surge") {
			o.MaxSurge = &surge
		}
		if !fl.Changed("max-unavailable") {
			o.MaxUnavailable = &unavailable
		}
	}
	if u.Monitor > 0 && !fl.Changed("watch") {
		o.Watch = u.Monitor
	}
	o.StepDelay = u.Delay
	return nil
}

// composeUsage is the compose form of rollout, for its help.
const composeUsage = `
Compose: deployctl rollout -f compose.yaml [-p PROJECT] SERVICE --version TAG
rolls SERVICE of the compose project out: its configuration, replicas and
update_config come from the file, loaded as docker compose loads it (the
image's tag variable, image: web:${TAG}, takes the version), and the new
containers carry compose's labels, so that docker compose ps lists them
and a later TAG=<version> docker compose up -d recreates nothing.`

// given reports whether a compose flag was given.
func (cf *composeFlags) given(fl *pflag.FlagSet) bool {
	for _, f := range []string{"file", "project-name", "project-directory", "profile"} {
		if fl.Changed(f) {
			return true
		}
	}
	return false
}

// loadService loads the compose SERVICE with version in the image's tag
// variable; a command not given its version (rollback, check) gets a
// placeholder that names nothing it uses.
func (cf *composeFlags) loadService(c *cobra.Command, version string) (*compose.Service, error) {
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := compose.Load(ctx, compose.LoadOptions{
		Files: cf.files, Project: cf.project, ProjectDir: cf.projectDir, EnvFiles: cf.envFiles, Profiles: cf.profiles,
	}, cf.service, cmp.Or(version, "unknown"))
	if err != nil {
		return nil, usageErr{err}
	}
	return s, nil
}

// checkArgs refuses the compose flags without a SERVICE, and
// --app with one; it reports whether a SERVICE was given.
func (cf *composeFlags) checkArgs(c *cobra.Command, verb string) (bool, error) {
	if cf.service == "" {
		// Not --env-file: DEPLOYCTL_ENV_FILE, set for the rollout's
		// container env, reaches every command.
		if cf.given(c.Flags()) {
			return false, usagef("-f, -p, --project-directory and --profile choose a compose project: name the service to %s, e.g. deployctl %s -f compose.yaml web", verb, c.Name())
		}
		return false, nil
	}
	if c.Flags().Changed("app") {
		return false, usagef("--app cannot be given with a compose service: its app is <project>-<service>")
	}
	return true, nil
}

// completeCompose names the app of a compose service (rollback -f FILE
// SERVICE): <project>-<service>, as its rollout does.
func (o *rollbackOptions) completeCompose(c *cobra.Command) error {
	if ok, err := o.compose.checkArgs(c, "roll back"); !ok || err != nil {
		return err
	}
	s, err := o.compose.loadService(c, o.Version)
	if err != nil {
		return err
	}
	o.App, o.Select = s.App(), s.Selector()
	// A container the rollback makes (beyond the retained ones) is a
	// copy of one: it needs a number of its own.
	o.Target = &deploy.Target{NumberLabel: compose.LabelNumber}
	return nil
}

// completeCompose sets the app, its selector and network from a compose
// SERVICE (check -f FILE SERVICE); a service a rollout would refuse is
// refused as there.
func (o *checkOptions) completeCompose(c *cobra.Command) error {
	if ok, err := o.compose.checkArgs(c, "check"); !ok || err != nil {
		return err
	}
	s, err := o.compose.loadService(c, "")
	if err != nil {
		return err
	}
	if err := compose.Refuse(s); err != nil {
		return usageErr{err}
	}
	network, err := s.TraefikNetwork()
	if err != nil {
		return usageErr{err}
	}
	if !c.Flags().Changed("network") {
		o.Network = network
	}
	o.App, o.Select = s.App(), s.Selector()
	return nil
}
