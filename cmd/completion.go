package cmd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/dockerutil"
)

// completionTimeout bounds the Docker calls behind one dynamic completion: a
// shell waits for them on every <Tab>.
const completionTimeout = 3 * time.Second

// newCompletionCmd replaces cobra's default completion command, to give
// every shell an example and to make an extra argument a usage error.
func newCompletionCmd() *cobra.Command {
	var noDesc bool
	c := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script for bash, zsh, fish or powershell",
		Long: `Print the script that makes the shell complete deployctl's commands and
flags. Besides commands and flag names it completes, from the Docker host
(DOCKER_HOST): --app with the apps deployctl manages (the deployctl.app
labels), and --version with the tags of the --image that exist locally plus
the versions the app's containers run. When Docker cannot be reached these
complete to nothing, silently.`,
		Example: `  # bash (needs the bash-completion package), current shell:
  source <(deployctl completion bash)
  # bash, every new shell:
  deployctl completion bash > /etc/bash_completion.d/deployctl

  # zsh (with compinit enabled):
  deployctl completion zsh > "${fpath[1]}/_deployctl"

  # fish:
  deployctl completion fish > ~/.config/fish/completions/deployctl.fish

  # PowerShell:
  deployctl completion powershell | Out-String | Invoke-Expression`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(*cobra.Command, []string) error {
			return flagError{fmt.Errorf("name the shell: bash, zsh, fish or powershell")}
		},
	}
	c.PersistentFlags().BoolVar(&noDesc, "no-descriptions", false, "leave out completion descriptions")
	shells := []struct {
		name, example string
		gen           func(root *cobra.Command, c *cobra.Command) error
	}{
		{"bash", "source <(deployctl completion bash)", func(root, c *cobra.Command) error {
			return root.GenBashCompletionV2(c.OutOrStdout(), !noDesc)
		}},
		{"zsh", `deployctl completion zsh > "${fpath[1]}/_deployctl"`, func(root, c *cobra.Command) error {
			if noDesc {
				return root.GenZshCompletionNoDesc(c.OutOrStdout())
			}
			return root.GenZshCompletion(c.OutOrStdout())
		}},
		{"fish", "deployctl completion fish > ~/.config/fish/completions/deployctl.fish", func(root, c *cobra.Command) error {
			return root.GenFishCompletion(c.OutOrStdout(), !noDesc)
		}},
		{"powershell", "deployctl completion powershell | Out-String | Invoke-Expression", func(root, c *cobra.Command) error {
			if noDesc {
				return root.GenPowerShellCompletion(c.OutOrStdout())
			}
			return root.GenPowerShellCompletionWithDesc(c.OutOrStdout())
		}},
	}
	for _, sh := range shells {
		c.AddCommand(&cobra.Command{
			Use:               sh.name,
			Short:             fmt.Sprintf("Print the %s completion script", sh.name),
			Example:           "  " + sh.example,
			Args:              noArgs,
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE: func(c *cobra.Command, _ []string) error {
				return sh.gen(c.Root(), c)
			},
		})
	}
	return c
}

// registerCompletions adds dynamic completion of --app, --version and --to to
// every command below root that has those flags (the value completion of
// --progress is registered with the flag).
func registerCompletions(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			register(sub, "app", completeApps)
			register(sub, "version", completeVersions)
			register(sub, "to", completeVersions) // rollback --to
			walk(sub)
		}
	}
	walk(root)
}

func register(c *cobra.Command, flag string, f cobra.CompletionFunc) {
	if c.LocalFlags().Lookup(flag) == nil && c.Flags().Lookup(flag) == nil {
		return
	}
	if _, ok := c.GetFlagCompletionFunc(flag); ok {
		return // the command registered its own
	}
	_ = c.RegisterFlagCompletionFunc(flag, f)
}

// completeApps lists the values of the deployctl.app label on the Docker
// host's containers.
func completeApps(c *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	rt, ctx, done, ok := completionRuntime(c)
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	return withPrefix(labelValues(ctx, rt, deploy.LabelApp, deploy.LabelApp), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// labelValues returns the values of label on the containers that have
// filter (key or key=value), running or not; nil on any error. One list
// call (Runtime.List would inspect every container): a shell is waiting.
func labelValues(ctx context.Context, rt *dockerutil.Runtime, filter, label string) []string {
	res, err := rt.Client().ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", filter)})
	if err != nil {
		return nil
	}
	var values []string
	for _, ct := range res.Items {
		values = append(values, ct.Labels[label])
	}
	return values
}

// completeVersions lists the local tags of --image and the versions
// (deployctl.version labels) of the app's containers.
func completeVersions(c *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	image, app := flagValue(c, "image"), flagValue(c, "app")
	if app == "" && image != "" {
		app = image[strings.LastIndex(image, "/")+1:]
	}
	if image == "" && app == "" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	rt, ctx, done, ok := completionRuntime(c)
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	var versions []string
	if image != "" {
		res, err := rt.Client().ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", image)})
		if err == nil {
			for _, img := range res.Items {
				for _, ref := range img.RepoTags {
					if tag, ok := tagOf(ref, image); ok {
						versions = append(versions, tag)
					}
				}
			}
		}
	}
	if app != "" {
		versions = append(versions, labelValues(ctx, rt, deploy.LabelApp+"="+app, deploy.LabelVersion)...)
	}
	return withPrefix(versions, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completionRuntime connects to Docker for a completion; ok is false, and
// nothing is printed, when it cannot be reached.
func completionRuntime(c *cobra.Command) (rt *dockerutil.Runtime, ctx context.Context, done func(), ok bool) {
	// A completion does not run the PersistentPreRunE that reads
	// DEPLOYCTL_*; read it here so DEPLOYCTL_IMAGE and DEPLOYCTL_APP count.
	_ = flagsFromEnv(c)
	parent := c.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, completionTimeout)
	rt, err := dockerutil.New(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, false
	}
	return rt, ctx, func() { rt.Close(); cancel() }, true
}

// flagValue is a flag's value from the command line or DEPLOYCTL_<FLAG>.
func flagValue(c *cobra.Command, name string) string {
	_ = flagsFromEnv(c)
	if f := c.Flags().Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// tagOf returns the tag of ref (repo:tag) when its repository is image,
// allowing for Docker Hub's short names (nginx = docker.io/library/nginx).
func tagOf(ref, image string) (string, bool) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return "", false
	}
	repo, tag := ref[:i], ref[i+1:]
	short := func(s string) string {
		s = strings.TrimPrefix(s, "docker.io/")
		return strings.TrimPrefix(s, "library/")
	}
	return tag, short(repo) == short(image)
}

// withPrefix returns the distinct non-empty values starting with prefix,
// sorted.
func withPrefix(values []string, prefix string) []string {
	var out []string
	for _, v := range values {
		if v != "" && strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
