package dockerutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestHostFromSSHDockerHost(t *testing.T) {
	opts, host, err := hostOptions(env(map[string]string{"DOCKER_HOST": "ssh://deploy@example.com:2222", "DOCKER_CONFIG": t.TempDir()}))
	if err != nil || len(opts) != 3 || host != "ssh://deploy@example.com:2222 (over ssh)" {
		t.Errorf("opts %d host %q err %v", len(opts), host, err)
	}
	if _, _, err := hostOptions(env(map[string]string{"DOCKER_HOST": "ssh://"})); err == nil {
		t.Errorf("empty ssh host accepted")
	}
}

func writeContext(t *testing.T, dir, name, host string, tls bool) {
	t.Helper()
	sum := sha256.Sum256([]byte(name))
	id := hex.EncodeToString(sum[:])
	meta := filepath.Join(dir, "contexts", "meta", id)
	os.MkdirAll(meta, 0o755)
	os.WriteFile(filepath.Join(meta, "meta.json"), []byte(`{"Name":"`+name+`","Endpoints":{"docker":{"Host":"`+host+`","SkipTLSVerify":false}}}`), 0o644)
	if tls {
		os.MkdirAll(filepath.Join(dir, "contexts", "tls", id, "docker"), 0o755)
	}
}

func TestHostFromDockerContext(t *testing.T) {
	dir := t.TempDir()
	writeContext(t, dir, "prod", "ssh://deploy@prod.example.com", false)
	writeContext(t, dir, "tls", "tcp://10.0.0.1:2376", true)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"currentContext":"prod"}`), 0o644)

	_, host, err := hostOptions(env(map[string]string{"DOCKER_CONFIG": dir}))
	if err != nil || host != "ssh://deploy@prod.example.com (over ssh)" {
		t.Errorf("currentContext: host %q err %v", host, err)
	}
	// DOCKER_HOST wins over contexts, as in the docker CLI.
	if _, host, _ := hostOptions(env(map[string]string{"DOCKER_CONFIG": dir, "DOCKER_HOST": "unix:///run/other.sock"})); host != "unix:///run/other.sock" {
		t.Errorf("DOCKER_HOST: %q", host)
	}
	if _, _, err := hostOptions(env(map[string]string{"DOCKER_CONFIG": dir, "DOCKER_CONTEXT": "tls"})); err == nil || !strings.Contains(err.Error(), "DOCKER_CERT_PATH") {
		t.Errorf("TLS context: %v", err)
	}
	if _, _, err := hostOptions(env(map[string]string{"DOCKER_CONFIG": dir, "DOCKER_CONTEXT": "nope"})); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing context: %v", err)
	}
	if _, host, err := hostOptions(env(map[string]string{"DOCKER_CONFIG": dir, "DOCKER_CONTEXT": "default"})); err != nil || host != "" {
		t.Errorf("default context: %q %v", host, err)
	}
}
