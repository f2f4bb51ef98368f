package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Traefik is a Traefik process started by [StartTraefik].
type Traefik struct {
	// Version is the Traefik version, e.g. "v3.0.0".
	Version string
	// APIURL is the base URL of the API entrypoint ("traefik"), without a
	// trailing slash: APIURL + "/api/version".
	APIURL string
	// EntryURL is the base URL of the "web" entrypoint that routes to the
	// containers, without a trailing slash.
	EntryURL string
	// Network is the Docker network Traefik takes container IPs from.
	Network string
	// Binary and Args are what was run; LogPath holds its stdout and stderr.
	Binary  string
	Args    []string
	LogPath string
	// Startup is how long the process took until /api/version answered.
	Startup time.Duration

	cmd    *exec.Cmd
	exited chan struct{}
	// For a Traefik that is not a process of ours (a container on a
	// swarm's manager, [Swarm.StartTraefik]): how to stop it and read its
	// log.
	stopFn func()
	logFn  func() string
	// removeDir, if set, removes the directory Traefik ran in (made by
	// StartTraefik when no WithDir was given).
	removeDir func()
}

// TraefikOption changes how [StartTraefik] runs Traefik.
type TraefikOption func(*traefikConfig)

type traefikConfig struct {
	constraints *string
	throttle    *time.Duration
	logLevel    string
	extraArgs   []string
	waitTimeout time.Duration
	dir         string
}

// WithDir runs Traefik in (sub-directories of) dir, which the caller
// removes; without it StartTraefik makes a temporary directory and Close
// removes it (with the log).
func WithDir(dir string) TraefikOption {
	return func(c *traefikConfig) { c.dir = dir }
}

// WithThrottle sets --providers.providersThrottleDuration (Traefik's
// default is 2s; 0 disables throttling).
func WithThrottle(d time.Duration) TraefikOption {
	return func(c *traefikConfig) { c.throttle = &d }
}

// WithConstraints replaces the default --providers.docker.constraints
// expression (see [StartTraefik]); "" removes it, so that Traefik sees every
// container of the engine with traefik.enable=true, including those of
// other test processes.
func WithConstraints(expr string) TraefikOption {
	return func(c *traefikConfig) { c.constraints = &expr }
}

// WithLogLevel sets --log.level (default DEBUG).
func WithLogLevel(level string) TraefikOption {
	return func(c *traefikConfig) { c.logLevel = level }
}

// WithArgs appends command-line arguments, e.g. an entrypoint lifecycle
// option. Arguments given here win over the defaults for the same option.
func WithArgs(args ...string) TraefikOption {
	return func(c *traefikConfig) { c.extraArgs = append(c.extraArgs, args...) }
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// traefikConfigFiles are the files Traefik reads instead of its flags when
// no --configFile is given (pkg/cli/loader_file.go); the working directory
// and HOME are fresh temporary directories, but /etc/traefik is global.
var traefikConfigFiles = []string{"/etc/traefik/traefik.toml", "/etc/traefik/traefik.yml", "/etc/traefik/traefik.yaml"}

// StartTraefik runs Traefik of the given version (see [TraefikBinary]) as a
// host process with the Docker provider watching network, the API on its own
// entrypoint ("traefik", insecure, no dashboard) and a "web" entrypoint, both
// on free 127.0.0.1 ports, and waits until /api/version answers. The caller
// ends it with [Traefik.Close] (or Stop).
//
// Isolation: Traefik's Docker provider sees every container of the engine,
// whatever its network (for a container not on network it logs a warning
// and takes the IP of a random network of the container). Processes run
// in parallel and commonly use the same service names ("web"), so
// by default Traefik only considers containers labelled
// deployctl-testenv=<RunID()> ([DefaultConstraints]). Images built by
// [BuildAppImage] carry that label, so every container made from them has
// it, also those the code under test creates; [StartContainer] adds it too.
// Containers made any other way need the label ([IsolationLabels]) or
// [WithConstraints].
//
// Traefik runs in an empty working directory with HOME and XDG_CONFIG_HOME
// set to empty directories and no TRAEFIK_* variables, so that no
// configuration file or variable overrides the flags. It uses
// --providers.docker.exposedbydefault=false, the endpoint from DOCKER_HOST
// when set, and --log.level=DEBUG (plus --log.nocolor=true from v3 on).
// On Linux the process is also killed if this process dies.
func StartTraefik(version, network string, opts ...TraefikOption) (*Traefik, error) {
	cfg := traefikConfig{logLevel: "DEBUG", waitTimeout: 60 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	for _, f := range traefikConfigFiles {
		if _, err := os.Stat(f); err == nil {
			return nil, fmt.Errorf("%s exists: Traefik would read it and ignore all flags", f)
		}
	}
	bin, err := TraefikBinary(version, nil)
	if err != nil {
		return nil, fmt.Errorf("Traefik %s: %w", version, err)
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		tr, err := startTraefik(bin, normVersion(version), network, cfg)
		if err == nil {
			return tr, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("starting Traefik %s: %w", version, lastErr)
}

func startTraefik(bin, version, network string, cfg traefikConfig) (_ *Traefik, err error) {
	webPort, err := freePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	for apiPort == webPort {
		if apiPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	args := []string{
		"--global.checknewversion=false",
		"--global.sendanonymoususage=false",
		"--entrypoints.web.address=127.0.0.1:" + strconv.Itoa(webPort),
		"--entrypoints.traefik.address=127.0.0.1:" + strconv.Itoa(apiPort),
		"--api.insecure=true",
		"--api.dashboard=false",
		"--providers.docker=true",
		"--providers.docker.exposedbydefault=false",
		"--providers.docker.network=" + network,
		"--log.level=" + cfg.logLevel,
	}
	constraints := DefaultConstraints()
	if cfg.constraints != nil {
		constraints = *cfg.constraints
	}
	if constraints != "" {
		args = append(args, "--providers.docker.constraints="+constraints)
	}
	if !strings.HasPrefix(version, "v2.") && !strings.HasPrefix(version, "v1.") {
		args = append(args, "--log.nocolor=true") // v3 colours its log even into a file
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		args = append(args, "--providers.docker.endpoint="+h)
	}
	if cfg.throttle != nil {
		args = append(args, "--providers.providersthrottleduration="+cfg.throttle.String())
	}
	args = append(args, cfg.extraArgs...)

	dir := cfg.dir
	var removeDir func()
	if dir == "" {
		if dir, err = os.MkdirTemp("", "deployctl-traefik-"); err != nil {
			return nil, err
		}
		removeDir = func() { os.RemoveAll(dir) }
		RemoveAtExit(dir)
		defer func() {
			if err != nil {
				removeDir()
			}
		}()
	} else if dir, err = os.MkdirTemp(dir, "traefik-"); err != nil {
		return nil, err
	}
	work := filepath.Join(dir, "work")
	home := filepath.Join(dir, "home")
	for _, d := range []string{work, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(dir, "traefik.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(bin, args...)
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = logFile, logFile
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(k), "TRAEFIK_") || k == "HOME" || k == "XDG_CONFIG_HOME" {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	setProcAttr(cmd)

	tr := &Traefik{
		Version:   version,
		APIURL:    "http://127.0.0.1:" + strconv.Itoa(apiPort),
		EntryURL:  "http://127.0.0.1:" + strconv.Itoa(webPort),
		Network:   network,
		Binary:    bin,
		Args:      args,
		LogPath:   logPath,
		cmd:       cmd,
		exited:    make(chan struct{}),
		removeDir: removeDir,
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		cmd.Wait()
		close(tr.exited)
	}()

	deadline := time.Now().Add(cfg.waitTimeout)
	for {
		status, _, err := Get(tr.APIURL+"/api/version", "")
		if err == nil && status == http.StatusOK {
			tr.Startup = time.Since(start)
			return tr, nil
		}
		select {
		case <-tr.exited:
			return nil, fmt.Errorf("traefik exited (%v) before its API answered:\n%s", cmd.ProcessState, Tail(tr.Log(), 8<<10))
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tr.stop()
			return nil, fmt.Errorf("API %s did not answer within %v (last: %d %v):\n%s", tr.APIURL, cfg.waitTimeout, status, err, Tail(tr.Log(), 8<<10))
		}
	}
}

func (tr *Traefik) stop() {
	if tr.cmd == nil {
		if tr.stopFn != nil {
			tr.stopFn()
		}
		return
	}
	select {
	case <-tr.exited:
		return
	default:
	}
	tr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tr.exited:
	case <-time.After(5 * time.Second):
		tr.cmd.Process.Kill()
		<-tr.exited
	}
}

// kill ends the process at once; a graceful stop takes about 2s.
func (tr *Traefik) kill() {
	if tr.cmd == nil {
		tr.stop()
		return
	}
	select {
	case <-tr.exited:
		return
	default:
	}
	tr.cmd.Process.Kill()
	<-tr.exited
}

// Stop stops Traefik gracefully now (SIGTERM, SIGKILL after 5s; about 2s
// when idle).
func (tr *Traefik) Stop() { tr.stop() }

// Kill ends the process at once, if it still runs.
func (tr *Traefik) Kill() { tr.kill() }

// Close kills the process if it still runs and removes the directory
// StartTraefik made for it (not one given by WithDir), with the log.
func (tr *Traefik) Close() {
	tr.kill()
	if tr.removeDir != nil {
		tr.removeDir()
		tr.removeDir = nil
	}
}

// Log returns what Traefik has written so far.
func (tr *Traefik) Log() string {
	if tr.logFn != nil {
		return tr.logFn()
	}
	b, err := os.ReadFile(tr.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// Tail returns the last n bytes of s, marked when cut.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}

// API GETs APIURL+path and returns the status and body.
func (tr *Traefik) API(path string) (status int, body string, err error) {
	return Get(tr.APIURL+path, "")
}

// Service is the part of a service of Traefik's API (/api/http/services/..)
// the tests look at.
type Service struct {
	Name         string `json:"name"`
	Provider     string `json:"provider"`
	Status       string `json:"status"`
	Type         string `json:"type"`
	LoadBalancer *struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	} `json:"loadBalancer"`
	ServerStatus map[string]string `json:"serverStatus"`
	UsedBy       []string          `json:"usedBy"`
}

// ServerURLs returns the URLs of the service's servers.
func (s *Service) ServerURLs() []string {
	if s == nil || s.LoadBalancer == nil {
		return nil
	}
	var urls []string
	for _, sv := range s.LoadBalancer.Servers {
		urls = append(urls, sv.URL)
	}
	return urls
}

// HTTPService fetches /api/http/services/<name> (name qualified, e.g.
// "web@docker"). It returns (nil, nil) when Traefik answers 404.
func (tr *Traefik) HTTPService(name string) (*Service, error) {
	status, body, err := tr.API("/api/http/services/" + url.PathEscape(name))
	if err != nil {
		return nil, err
	}
	if status == http.StatusNotFound {
		return nil, nil
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /api/http/services/%s: %d %s", name, status, body)
	}
	var s Service
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		return nil, fmt.Errorf("GET /api/http/services/%s: %v", name, err)
	}
	return &s, nil
}

var httpClient = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Get GETs url, with the Host header set to host unless host is empty, on a
// fresh connection (no keep-alive, no proxy, no redirects, 10s timeout), and
// returns the status and the body (at most 1 MiB).
func Get(url string, host string) (status int, body string, err error) {
	status, body, _, err = GetWithHeaders(url, host)
	return status, body, err
}

// GetWithHeaders is [Get] that also returns the response headers.
func GetWithHeaders(url string, host string) (status int, body string, header http.Header, err error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, buf.String(), resp.Header, err
}

// DefaultConstraints is the --providers.docker.constraints expression
// StartTraefik uses: only containers labelled deployctl-testenv=<RunID()>.
func DefaultConstraints() string {
	return "Label(`" + LabelKey + "`,`" + runID + "`)"
}

// IsolationLabels returns the label that makes a container visible to the
// Traefik instances of this test process ([DefaultConstraints]).
func IsolationLabels() map[string]string { return map[string]string{LabelKey: runID} }

// TraefikLabels returns the container labels that expose a container
// through Traefik v2/v3: router <name> with rule PathPrefix(`/`) on all
// entrypoints, service <name> on port (the router uses the container's only
// service).
func TraefikLabels(name string, port int) map[string]string {
	return map[string]string{
		"traefik.enable":                                              "true",
		"traefik.http.routers." + name + ".rule":                      "PathPrefix(`/`)",
		"traefik.http.services." + name + ".loadbalancer.server.port": strconv.Itoa(port),
	}
}
