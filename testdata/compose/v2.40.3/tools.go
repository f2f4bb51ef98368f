//go:build tools

// Package tools records the dependency on the compose command so that
// "go mod tidy" keeps it; the file is never compiled.
package tools

import _ "github.com/docker/compose/v2/cmd"
