//go:build tools

// Package tools records the dependency on the Traefik command so that
// "go mod tidy" keeps it; the file is never compiled.
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
