package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deployctl/deployctl/deploy"
)

// fromEnvAnnotation marks a flag that flagsFromEnv set from DEPLOYCTL_<FLAG>,
// so that a message about its value can name the variable.
const fromEnvAnnotation = "deployctl/from-env"

// secretFlags may carry secrets: flagsFromEnv never echoes their value.
var secretFlags = map[string]bool{"env": true, "env-file": true, "label": true, "select": true, "traefik-password": true, "traefik-header": true, "traefik-user": true, "traefik-url": true}

// checkKeyValues checks that every value of a repeatable KEY=VALUE flag has
// a key and an '='. A malformed value is never shown: a token pasted alone
// (-e "$TOKEN") would otherwise be printed in a CI log. The error says which
// occurrence it was, its shape, and what to do instead.
func checkKeyValues(c *cobra.Command, flag string, items []string) error {
	for i, it := range items {
		if k, _, ok := strings.Cut(it, "="); ok && k != "" {
			continue
		}
		name := "--" + flag
		if f := c.Flags().Lookup(flag); f != nil && f.Shorthand != "" {
			name = "-" + f.Shorthand + "/--" + flag
		}
		where := fmt.Sprintf("the %s %s value", ordinal(i+1), name)
		fromEnv := false
		if f := c.Flags().Lookup(flag); f != nil && len(f.Annotations[fromEnvAnnotation]) > 0 {
			where, fromEnv = fmt.Sprintf("the %s line of %s", ordinal(i+1), envName(flag)), true
		}
		msg := fmt.Sprintf("%s is %s: it must be KEY=VALUE (the value is not shown: it may be a secret)", where, deploy.EntryShape(it))
		switch {
		case flag == "env" && fromEnv:
			msg += "; give each variable a name, one NAME=VALUE per line"
		case flag == "env":
			msg += "; give the variable a name, e.g. -e API_TOKEN=..., and keep secrets off the command line (it shows in ps and shell history): use --env-file, or DEPLOYCTL_ENV"
		}
		return usagef("%s", msg)
	}
	return nil
}

// ordinal is 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, ...
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

// markFromEnv records that f was set from the environment.
func markFromEnv(f *pflag.Flag) {
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[fromEnvAnnotation] = []string{"true"}
}
