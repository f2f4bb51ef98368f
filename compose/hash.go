package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/compose-spec/compose-go/v2/types"
)

// ServiceHash is the config hash compose puts on a service's containers
// (label com.docker.compose.config-hash) and compares at every `up` to
// decide whether to recreate them: the sha256 of the JSON of the service's
// configuration without what does not concern one container (build, pull
// policy, scale, replicas, depends_on, profiles). compose's
// pkg/compose/hash.go ServiceHash, v2.40.3.
func ServiceHash(s types.ServiceConfig) (string, error) {
	b, err := hashInput(s)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// hashInput is what ServiceHash hashes.
func hashInput(s types.ServiceConfig) ([]byte, error) {
	o := s
	o.Build = nil
	o.PullPolicy = ""
	o.Scale = nil
	if o.Deploy != nil {
		d := *o.Deploy // compose clears it through the pointer; not ours to change
		d.Replicas = nil
		o.Deploy = &d
	}
	o.DependsOn = nil
	o.Profiles = nil
	return json.Marshal(o)
}
