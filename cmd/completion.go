package cmd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/deploy"
)

// completionTimeout bounds the Docker calls behind one dynamic completion: a
// shell waits for them on every <Tab>.
const completionTimeout = 3 * time.Second

// completionOptions are the completion command's: the shell, and whether
// to leave out the descriptions.
type completionOptions struct {
	io     ioStreams
	shell  string
	noDesc bool
	root   *cobra.Command // the command tree to complete
}

// newCompletionCmd replaces cobra's default completion command, to give
// every shell an example and to make an extra argument a usage error. Each
// shell is a subcommand; they call runF, or runCompletion when runF is nil.
func newCompletionCmd(runF func(*completionOptions) error) *cobra.Command {
	o := &completionOptions{}
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
	c.PersistentFlags().BoolVar(&o.noDesc, "no-descriptions", false, "leave out completion descriptions")
	for _, sh := range completionShells {
		c.AddCommand(&cobra.Command{
			Use:               sh.name,
			Short:             fmt.Sprintf("Print the %s completion script", sh.name),
			Example:           "  " + sh.example,
			Args:              noArgs,
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE: func(c *cobra.Command, _ []string) error {
				o.io, o.shell, o.root = streamsOf(c), sh.name, c.Root()
				if runF != nil {
					return runF(o)
				}
				return runCompletion(o)
			},
		})
	}
	return c
}

// completionShells are the shells deployctl writes completion scripts for.
var completionShells = []struct{ name, example string }{
	{"bash", "source <(deployctl completion bash)"},
	{"zsh", `deployctl completion zsh > "${fpath[1]}/_deployctl"`},
	{"fish", "deployctl completion fish > ~/.config/fish/completions/deployctl.fish"},
	{"powershell", "deployctl completion powershell | Out-String | Invoke-Expression"},
}

// runCompletion writes o.shell's completion script for o.root.
func runCompletion(o *completionOptions) error {
	w, desc := o.io.out, !o.noDesc
	switch o.shell {
	case "bash":
		return o.root.GenBashCompletionV2(w, desc)
	case "zsh":
		if !desc {
			return o.root.GenZshCompletionNoDesc(w)
		}
		return o.root.GenZshCompletion(w)
	case "fish":
		return o.root.GenFishCompletion(w, desc)
	case "powershell":
		if !desc {
			return o.root.GenPowerShellCompletion(w)
		}
		return o.root.GenPowerShellCompletionWithDesc(w)
	}
	return usagef("no completion for shell %q: bash, zsh, fish or powershell", o.shell)
}

// registerCompletions adds dynamic completion of --app, --version and --to to
// every command below root that has those flags (the value completion of
// --progress is registered with the flag); they ask Docker through f.
func registerCompletions(root *cobra.Command, f *factory) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			register(sub, "app", f.completeApps)
			register(sub, "version", f.completeVersions)
			register(sub, "to", f.completeVersions) // rollback --to
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
func (f *factory) completeApps(c *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	docker, ctx, done, ok := f.completionDocker(c)
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	apps, _ := docker.LabelValues(ctx, deploy.LabelApp, deploy.LabelApp)
	return withPrefix(apps, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeVersions lists the local tags of --image and the versions
// (deployctl.version labels) of the app's containers.
func (f *factory) completeVersions(c *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	image, app := flagValue(c, "image"), flagValue(c, "app")
	if app == "" && image != "" {
		app = image[strings.LastIndex(image, "/")+1:]
	}
	if image == "" && app == "" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	docker, ctx, done, ok := f.completionDocker(c)
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	var versions []string
	if image != "" {
		refs, _ := docker.RepoTags(ctx, image)
		for _, ref := range refs {
			if tag, ok := tagOf(ref, image); ok {
				versions = append(versions, tag)
			}
		}
	}
	if app != "" {
		labelled, _ := docker.LabelValues(ctx, deploy.LabelApp+"="+app, deploy.LabelVersion)
		versions = append(versions, labelled...)
	}
	return withPrefix(versions, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completionDocker connects to Docker for a completion; ok is false, and
// nothing is printed, when it cannot be reached. An error of a list call
// completes to nothing too: a shell is waiting.
func (f *factory) completionDocker(c *cobra.Command) (docker completer, ctx context.Context, done func(), ok bool) {
	// A completion does not run the PersistentPreRunE that reads
	// DEPLOYCTL_*; read it here so DEPLOYCTL_IMAGE and DEPLOYCTL_APP count.
	_ = flagsFromEnv(c)
	parent := c.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, completionTimeout)
	docker, err := f.Completer(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, false
	}
	return docker, ctx, func() { docker.Close(); cancel() }, true
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
