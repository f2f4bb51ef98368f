package dockerutil

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/cli/cli/connhelper"
	"github.com/moby/moby/client"
)

// hostOptions works out how to reach the Docker engine the way the docker
// CLI does: DOCKER_HOST (including ssh://user@host, through `ssh ... docker
// system dial-stdio` on the remote host, with docker/cli's connection
// helper), else the Docker context named by DOCKER_CONTEXT or the CLI
// config's currentContext, else the default socket. It also returns the
// host it chose, for messages.
func hostOptions(getenv func(string) string) ([]client.Opt, string, error) {
	host := getenv("DOCKER_HOST")
	source := "DOCKER_HOST"
	if host == "" {
		name, h, err := contextHost(getenv)
		if err != nil {
			return nil, "", err
		}
		if h != "" {
			host, source = h, "Docker context "+name
		}
	}
	if strings.HasPrefix(host, "ssh://") {
		helper, err := connhelper.GetConnectionHelper(host)
		if err != nil {
			return nil, "", fmt.Errorf("%s=%s: %w", source, host, err)
		}
		return []client.Opt{
			client.WithHTTPClient(&http.Client{Transport: &http.Transport{DialContext: helper.Dialer}}),
			client.WithHost(helper.Host),
			client.WithDialContext(helper.Dialer),
		}, host + " (over ssh)", nil
	}
	opts := []client.Opt{client.FromEnv}
	if host != "" && source != "DOCKER_HOST" {
		opts = append(opts, client.WithHost(host))
	}
	return opts, host, nil
}

// contextHost returns the current Docker context's name and engine host, ""
// for the default context. Contexts with TLS material are not supported:
// for those, set DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
func contextHost(getenv func(string) string) (string, string, error) {
	dir := getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", nil
		}
		dir = filepath.Join(home, ".docker")
	}
	name := getenv("DOCKER_CONTEXT")
	if name == "" {
		var cfg struct {
			CurrentContext string `json:"currentContext"`
		}
		if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil {
			_ = json.Unmarshal(b, &cfg)
		}
		name = cfg.CurrentContext
	}
	if name == "" || name == "default" {
		return name, "", nil
	}
	sum := sha256.Sum256([]byte(name))
	id := hex.EncodeToString(sum[:])
	b, err := os.ReadFile(filepath.Join(dir, "contexts", "meta", id, "meta.json"))
	if err != nil {
		return name, "", fmt.Errorf("Docker context %q: %w (docker context ls lists them)", name, err)
	}
	var meta struct {
		Endpoints map[string]struct {
			Host string
		}
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return name, "", fmt.Errorf("Docker context %q: %w", name, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "contexts", "tls", id, "docker")); err == nil {
		return name, "", fmt.Errorf("Docker context %q uses TLS certificates, which deployctl does not read from contexts: set DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH instead", name)
	}
	return name, meta.Endpoints["docker"].Host, nil
}
