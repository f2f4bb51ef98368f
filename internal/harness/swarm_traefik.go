package harness

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// BuildAppImageOnNodes builds the app image ref on each node (no registry:
// every node needs its own copy, as Swarm runs what a node has). Nodes not
// listed lack it: a service whose task lands there is rejected ("No such
// image"), which is how the tests make an image missing on a node.
func (s *Swarm) BuildAppImageOnNodes(ref string, opts AppImageOptions, nodes ...*SwarmNode) error {
	if len(nodes) == 0 {
		nodes = s.Nodes
	}
	for _, n := range nodes {
		if err := BuildAppImage(n.Client, ref, opts); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	return nil
}

// NewOverlay creates an attachable overlay network on the swarm (through
// the manager) and returns its name.
func (s *Swarm) NewOverlay() (string, error) {
	name := UniqueName(NetworkPrefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Manager().Client.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver:     "overlay",
		Attachable: true,
		Labels:     map[string]string{LabelKey: runID},
	}); err != nil {
		return "", fmt.Errorf("create overlay network %s: %w", name, err)
	}
	return name, nil
}

// SwarmTraefikOptions says how [Swarm.StartTraefik] runs Traefik.
type SwarmTraefikOptions struct {
	// Refresh is the swarm provider's poll period (refreshSeconds); 0
	// leaves Traefik's default (15 s).
	Refresh time.Duration
	// Args are more command-line arguments.
	Args []string
}

// StartTraefik runs Traefik of the given version as a container on the
// manager, attached to the overlay network, with the swarm provider
// (v3: --providers.swarm; v2: --providers.docker.swarmMode) reading the
// manager's engine through its socket, exposedByDefault false, the API on
// entrypoint "traefik" and entrypoint "web", both published on the
// manager's address. Overlay networks are not reachable from the node
// itself: Traefik has to be a container on them, as in production.
func (s *Swarm) StartTraefik(version, overlay string, opts SwarmTraefikOptions) (*Traefik, error) {
	bin, err := TraefikBinary(version, nil)
	if err != nil {
		return nil, fmt.Errorf("Traefik %s: %w", version, err)
	}
	version = normVersion(version)
	mgr := s.Manager()
	ref := "deployctl-test-traefik:" + version
	if err := buildBinaryImage(mgr.Client, ref, bin, "traefik"); err != nil {
		return nil, err
	}
	args := []string{
		"--global.checknewversion=false",
		"--global.sendanonymoususage=false",
		"--entrypoints.web.address=:80",
		"--entrypoints.traefik.address=:8080",
		"--api.insecure=true",
		"--api.dashboard=false",
		"--log.level=DEBUG",
	}
	refresh := ""
	if opts.Refresh > 0 {
		refresh = strconv.Itoa(int(opts.Refresh.Round(time.Second) / time.Second))
	}
	if strings.HasPrefix(version, "v2.") {
		args = append(args,
			"--providers.docker=true",
			"--providers.docker.swarmMode=true",
			"--providers.docker.exposedbydefault=false",
			"--providers.docker.network="+overlay,
			"--providers.docker.endpoint=unix:///var/run/docker.sock")
		if refresh != "" {
			args = append(args, "--providers.docker.swarmModeRefreshSeconds="+refresh)
		}
	} else {
		args = append(args,
			"--log.nocolor=true",
			"--providers.swarm=true",
			"--providers.swarm.exposedbydefault=false",
			"--providers.swarm.network="+overlay,
			"--providers.swarm.endpoint=unix:///var/run/docker.sock")
		if refresh != "" {
			args = append(args, "--providers.swarm.refreshSeconds="+refresh)
		}
	}
	args = append(args, opts.Args...)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := UniqueName("deployctl-test-traefik-")
	create := func() (client.ContainerCreateResult, error) {
		return mgr.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: name,
			Config: &container.Config{
				Image:  ref,
				Cmd:    args,
				Labels: map[string]string{LabelKey: runID},
				ExposedPorts: network.PortSet{
					network.MustParsePort("80/tcp"):   {},
					network.MustParsePort("8080/tcp"): {},
				},
				// Traefik built with Go 1.24+ listens with MPTCP; harmless here.
			},
			HostConfig: &container.HostConfig{
				NetworkMode: container.NetworkMode(overlay),
				Binds:       []string{mgr.Socket + ":/var/run/docker.sock"},
				PortBindings: network.PortMap{
					network.MustParsePort("80/tcp"):   {{HostIP: netip.IPv4Unspecified()}},
					network.MustParsePort("8080/tcp"): {{HostIP: netip.IPv4Unspecified()}},
				},
			},
		})
	}
	var id string
	remove := func() {
		ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
		defer cancel()
		mgr.Client.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	}
	var start time.Time
	// An attachable overlay's instance on a node goes when its last
	// container there does, and for a moment a new container cannot
	// attach to it ("network ... not found"): try again.
	for try := 0; ; try++ {
		res, err := create()
		if err != nil {
			return nil, fmt.Errorf("create the Traefik container on %s: %w", mgr.Name, err)
		}
		id = res.ID
		start = time.Now()
		_, err = mgr.Client.ContainerStart(ctx, id, client.ContainerStartOptions{})
		if err == nil {
			break
		}
		remove()
		if try == 20 || !IsNotFound(err) || !strings.Contains(err.Error(), "network") {
			return nil, fmt.Errorf("start the Traefik container on %s: %w", mgr.Name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	insp, err := mgr.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		remove()
		return nil, err
	}
	hostPort := func(p string) string {
		for _, b := range insp.Container.NetworkSettings.Ports[network.MustParsePort(p)] {
			return b.HostPort
		}
		return ""
	}
	web, api := hostPort("80/tcp"), hostPort("8080/tcp")
	if web == "" || api == "" {
		remove()
		return nil, fmt.Errorf("the Traefik container on %s has no published ports: %v", mgr.Name, insp.Container.NetworkSettings.Ports)
	}
	tr := &Traefik{
		Version:  version,
		APIURL:   "http://" + mgr.Addr + ":" + api,
		EntryURL: "http://" + mgr.Addr + ":" + web,
		Network:  overlay,
		Binary:   bin,
		Args:     args,
		stopFn:   remove,
		logFn: func() string {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return ContainerLog(ctx, mgr.Client, id)
		},
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, _, err := Get(tr.APIURL+"/api/version", "")
		if err == nil && status == http.StatusOK {
			tr.Startup = time.Since(start)
			return tr, nil
		}
		if time.Now().After(deadline) {
			log := tr.Log()
			remove()
			return nil, fmt.Errorf("Traefik's API %s did not answer within 60s (last: %d %v):\n%s", tr.APIURL, status, err, Tail(log, 8<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// buildBinaryImage builds ref: FROM scratch, the file at bin as /name, its
// ENTRYPOINT. The context is streamed (Traefik's binary is 150+ MB).
func buildBinaryImage(cli *client.Client, ref, bin, name string) error {
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		df := fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT [\"/%s\"]\nLABEL %s=%s\n", name, name, name, LabelKey, quote(runID))
		err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df)), ModTime: time.Unix(0, 0)})
		if err == nil {
			_, err = tw.Write([]byte(df))
		}
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: st.Size(), ModTime: time.Unix(0, 0)})
		}
		if err == nil {
			var f *os.File
			if f, err = os.Open(bin); err == nil {
				_, err = io.Copy(tw, f)
				f.Close()
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := cli.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	defer res.Body.Close()
	if out, err := readBuildStream(res.Body); err != nil {
		return fmt.Errorf("build image %s: %w\n%s", ref, err, out)
	}
	return nil
}
