package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// Healthcheck is the HEALTHCHECK of an app image. The check runs
// "/app probe" (exec form), which GETs http://127.0.0.1:$PORT/health.
// Zero durations and retries leave Docker's defaults (30s, 30s, 0s, 3).
// The engine here speaks API 1.41: there is no --start-interval, and the
// first check runs one Interval after the container starts.
type Healthcheck struct {
	Interval    time.Duration
	Timeout     time.Duration
	StartPeriod time.Duration
	Retries     int
}

// AppImageOptions describes an image of the test app (testdata/app).
type AppImageOptions struct {
	// Tag of the image; default "latest". Only testenv's AppImage reads it
	// ([BuildAppImage] takes the whole reference).
	Tag string
	// Version sets ENV APP_VERSION (what GET / reports).
	Version string
	// Healthcheck, if not nil, adds a HEALTHCHECK.
	Healthcheck *Healthcheck
	// Port sets ENV PORT and EXPOSE (default 8080).
	Port int
	// NoExpose leaves EXPOSE out.
	NoExpose bool
	// Env adds ENV lines (e.g. SHUTDOWN, DRAIN, NEVER_HEALTHY).
	Env map[string]string
	// Labels adds LABEL lines (e.g. Traefik labels baked into the image).
	Labels map[string]string
}

var (
	appBinOnce sync.Once
	appBin     []byte
	appBinErr  error
)

// AppBinary returns the static Linux binary of testdata/app, built once per
// process.
func AppBinary() ([]byte, error) {
	appBinOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			appBinErr = err
			return
		}
		dir, err := os.MkdirTemp("", "deployctl-testapp-")
		if err != nil {
			appBinErr = err
			return
		}
		defer os.RemoveAll(dir)
		RemoveAtExit(dir)
		out := filepath.Join(dir, "app")
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", out, "./testdata/app")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := runBuild(cmd, dir); err != nil {
			appBinErr = fmt.Errorf("go build ./testdata/app: %v\n%s", err, b.String())
			return
		}
		appBin, appBinErr = os.ReadFile(out)
	})
	if appBinErr != nil {
		return nil, fmt.Errorf("building the test app: %w", appBinErr)
	}
	return appBin, nil
}

// Dockerfile returns the Dockerfile AppImage builds for opts. The legacy
// builder commits one intermediate image per instruction (about a second
// each here), so there is one instruction per kind, ordered from the most
// to the least shared, to make the most of the build cache: a second image
// differing only in ENV costs one step.
func Dockerfile(opts AppImageOptions) string {
	port := opts.Port
	if port == 0 {
		port = 8080
	}
	var b strings.Builder
	b.WriteString("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n")
	if !opts.NoExpose {
		fmt.Fprintf(&b, "EXPOSE %d\n", port)
	}
	if h := opts.Healthcheck; h != nil {
		b.WriteString("HEALTHCHECK")
		if h.Interval > 0 {
			fmt.Fprintf(&b, " --interval=%s", h.Interval)
		}
		if h.Timeout > 0 {
			fmt.Fprintf(&b, " --timeout=%s", h.Timeout)
		}
		if h.StartPeriod > 0 {
			fmt.Fprintf(&b, " --start-period=%s", h.StartPeriod)
		}
		if h.Retries > 0 {
			fmt.Fprintf(&b, " --retries=%d", h.Retries)
		}
		b.WriteString(` CMD ["/app", "probe"]` + "\n")
	}
	labels := map[string]string{LabelKey: runID}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	b.WriteString("LABEL")
	for _, k := range SortedKeys(labels) {
		fmt.Fprintf(&b, " %s=%s", quote(k), quote(labels[k]))
	}
	fmt.Fprintf(&b, "\nENV PORT=%d", port)
	if opts.Version != "" {
		fmt.Fprintf(&b, " APP_VERSION=%s", quote(opts.Version))
	}
	for _, k := range SortedKeys(opts.Env) {
		fmt.Fprintf(&b, " %s=%s", k, quote(opts.Env[k]))
	}
	b.WriteString("\n")
	return b.String()
}

// quote returns s as a Dockerfile double-quoted word (no variable
// expansion).
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// SortedKeys returns the keys of m in order.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// BuildAppImage builds an image of the test app (FROM scratch, the static
// binary as /app, ENTRYPOINT ["/app"], see [Dockerfile]) with the engine's
// legacy builder and tags it ref ("repository:tag"). Remove it with
// [RemoveImage].
func BuildAppImage(cli *client.Client, ref string, opts AppImageOptions) error {
	bin, err := AppBinary()
	if err != nil {
		return err
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("Dockerfile", 0o644, []byte(Dockerfile(opts))); err != nil {
		return err
	}
	if err := add("app", 0o755, bin); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The legacy builder reuses the intermediate image of a cached step
	// ("Using cache") and commits the next step on top of it. Another
	// test, package or run removing its own image in between (RemoveImage
	// prunes untagged parents without other children) deletes that
	// intermediate, and the build fails with "failed to get digest
	// sha256:…: … no such file or directory". The next try finds no cache
	// for the step and builds it again.
	const tries = 4
	for try := 1; ; try++ {
		res, err := cli.ImageBuild(ctx, bytes.NewReader(ctxTar.Bytes()), client.ImageBuildOptions{
			Tags:        []string{ref},
			Remove:      true,
			ForceRemove: true,
			Version:     build.BuilderV1,
		})
		if err != nil {
			return fmt.Errorf("build image %s: %w", ref, err)
		}
		out, err := readBuildStream(res.Body)
		res.Body.Close()
		if err == nil {
			return nil
		}
		if try < tries && LostBuildCache(err) {
			continue
		}
		return fmt.Errorf("build image %s (try %d): %w\nDockerfile:\n%s\nbuild output:\n%s", ref, try, err, Dockerfile(opts), out)
	}
}

// LostBuildCache reports whether a build failed because an image it was
// building on (a cached intermediate) was removed while it ran.
func LostBuildCache(err error) bool {
	msg := err.Error()
	if !strings.Contains(msg, "sha256:") {
		return false
	}
	for _, s := range []string{"failed to get digest", "No such image", "no such file or directory"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// RemoveImage force-removes the containers, running or not, created from
// ref or from any other tag of its repository, then the image ref.
func RemoveImage(cli *client.Client, ref string) error {
	repo := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo = ref[:i]
	}
	ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
	defer cancel()
	var errs []error
	if l, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true}); err == nil {
		for _, c := range l.Items {
			if c.Image == ref || strings.HasPrefix(c.Image, repo+":") {
				if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !IsNotFound(err) {
					errs = append(errs, fmt.Errorf("remove container %.12s of %s: %w", c.ID, ref, err))
				}
			}
		}
	}
	if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !IsNotFound(err) {
		errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
	}
	return errors.Join(errs...)
}

// readBuildStream consumes the JSON message stream of an image build and
// returns the text output and the first error message.
func readBuildStream(r io.Reader) (string, error) {
	var out strings.Builder
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return out.String(), nil
		} else if err != nil {
			return out.String(), fmt.Errorf("reading build output: %v", err)
		}
		out.WriteString(m.Stream)
		if m.Status != "" {
			out.WriteString(m.Status + "\n")
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return out.String(), fmt.Errorf("%s", m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return out.String(), fmt.Errorf("%s", m.Error)
		}
	}
}
