package dockerutil

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/registry"
)

func dockerConfigPath() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// registryHost is the registry part of an image reference, as Docker
// decides it: the first path component when it looks like a host.
func registryHost(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "https://index.docker.io/v1/"
}

// lookupAuth returns the X-Registry-Auth value for ref from the config file
// at path, or "".
func lookupAuth(ref, path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if json.Unmarshal(b, &cfg) != nil {
		return ""
	}
	host := registryHost(ref)
	for key, a := range cfg.Auths {
		k := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://"), "/")
		h := strings.TrimSuffix(strings.TrimPrefix(host, "https://"), "/")
		if k != h || a.Auth == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return ""
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		enc, err := json.Marshal(registry.AuthConfig{Username: user, Password: pass, ServerAddress: key})
		if err != nil {
			return ""
		}
		return base64.URLEncoding.EncodeToString(enc)
	}
	return ""
}
