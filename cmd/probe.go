package cmd

import (
	"errors"
	"fmt"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/internal/probe/embedded"
)

// embeddedProbes gives the engine the drain-aware probes embedded in this
// binary (static Linux executables, one per platform). They are the same
// whatever built deployctl: with cgo or without, on any OS or architecture.
type embeddedProbes struct{}

var _ deploy.ProbeSource = embeddedProbes{}

func (embeddedProbes) Platforms() []string { return embedded.Platforms() }

func (embeddedProbes) Probe(os, arch string) ([]byte, error) {
	bin, err := embedded.Binary(os, arch)
	if errors.Is(err, embedded.ErrNoProbe) {
		return nil, fmt.Errorf("%w: %v", deploy.ErrNoProbe, err)
	}
	return bin, err
}
