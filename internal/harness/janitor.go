package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
)

// The janitor removes what this process made when it exits, however it
// exits. Cleanups (t.Cleanup, Close and remove functions) do not run when
// a test binary is killed: by go test's -timeout (a panic), by SIGKILL, or
// by a Ctrl-C, which Go test binaries do not catch. Processes the harness
// starts die with it (Pdeathsig), but Docker objects, temporary
// directories and mounts would stay.
//
// So the first time something is registered ([Docker] registers the
// engine's host; [RemoveAtExit], [UnmountAtExit]), the harness starts a
// janitor: this same executable, run again with the environment variable
// janitorEnv set, which the init function below turns into [runJanitor]
// before main or the tests start. The janitor reads registrations from a
// pipe whose write end only this process holds, so it sees end of file
// when this process ends, however it ends; then it removes, on every
// registered engine, the containers, networks, volumes and images labelled
// [LabelKey]=[RunID] (and deploy history volumes of apps named
// "<name>-<RunID>"), unmounts the registered mounts and removes the
// registered paths. After a clean exit all that is already gone and the
// sweep finds nothing.
//
// It runs in a process group of its own, so that a Ctrl-C in the terminal,
// which signals the whole foreground group, does not end it before it has
// cleaned up, and with its output in a log file, not in this process's
// stdout, which go test waits on to close.
const janitorEnv = "DEPLOYCTL_HARNESS_JANITOR"

func init() {
	if id := os.Getenv(janitorEnv); id != "" {
		os.Exit(runJanitor(id, os.Stdin))
	}
}

var janitor struct {
	mu      sync.Mutex
	started bool
	w       *os.File // kept open (and referenced) for the life of the process
	err     error
	sent    map[string]bool
}

// register tells the janitor about one more thing to clean up at exit,
// starting it if needed. A janitor that cannot be started is reported on
// stderr once: the normal cleanups still run.
func register(kind, value string) {
	janitor.mu.Lock()
	defer janitor.mu.Unlock()
	line := kind + " " + value
	once := kind != "pgroup" && kind != "unpgroup" // a process id may come again
	if once && janitor.sent[line] {
		return
	}
	if !janitor.started {
		janitor.started = true
		janitor.err = startJanitor()
		if janitor.err != nil {
			fmt.Fprintf(os.Stderr, "harness: no janitor: what a killed run leaves behind stays (docker ps -a --filter label=%s=%s): %v\n", LabelKey, runID, janitor.err)
		}
		janitor.sent = map[string]bool{}
	}
	if janitor.err != nil {
		return
	}
	if _, err := fmt.Fprintln(janitor.w, line); err != nil {
		fmt.Fprintf(os.Stderr, "harness: telling the janitor about %s: %v\n", line, err)
		return
	}
	if once {
		janitor.sent[line] = true
	}
}

func startJanitor() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close() // the child has its own copy
	logPath := filepath.Join(os.TempDir(), "deployctl-janitor-"+runID+".log")
	cmd := exec.Command(exe, "deployctl-harness-janitor", runID)
	cmd.Env = append(os.Environ(), janitorEnv+"="+runID, "DEPLOYCTL_JANITOR_LOG="+logPath)
	cmd.Stdin = r
	cmd.Dir = "/"
	setJanitorProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	// Not waited for: it outlives this process by design. Release lets the
	// runtime forget it (it is reaped by whoever inherits it).
	cmd.Process.Release()
	janitor.w = w
	return nil
}

// RemoveAtExit has the janitor remove path (with everything under it) when
// this process ends, however it ends. For temporary directories a killed
// process would leave behind.
func RemoveAtExit(path string) { register("path", path) }

// UnmountAtExit has the janitor unmount dir (lazily) and remove it when
// this process ends, however it ends.
func UnmountAtExit(dir string) { register("mount", dir) }

// DeleteLinkAtExit has the janitor delete the network interface name (ip
// link del) when this process ends, however it ends, after the mounts: a
// bridge made for a second dockerd, which needs it until it has stopped.
func DeleteLinkAtExit(name string) { register("link", name) }

// NetnsDeleteAtExit has the janitor delete the network namespace name (ip
// netns del) when this process ends, however it ends: those of a swarm's
// nodes ([StartSwarm]), whose dockerds got SIGTERM as this process died.
func NetnsDeleteAtExit(name string) { register("netns", name) }

// runBuild runs a go command (a build) whose work directory goes under tmp
// (GOTMPDIR), in a process group of its own that the janitor kills if this
// process dies while it runs; the caller has tmp removed at exit
// ([RemoveAtExit]).
func runBuild(cmd *exec.Cmd, tmp string) error {
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "GOTMPDIR="+tmp)
	setBuildProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	pgid := fmt.Sprint(cmd.Process.Pid)
	register("pgroup", pgid)
	err := cmd.Wait()
	register("unpgroup", pgid)
	return err
}

// registerDockerHost has the janitor sweep the engine at host (a
// DOCKER_HOST value) for this process's objects when it ends.
func registerDockerHost(host string) { register("host", host) }

// runJanitor is the janitor process: it collects registrations from r
// until end of file, then cleans up. Its output goes to the file named by
// DEPLOYCTL_JANITOR_LOG when there was something to do, and nowhere
// otherwise.
func runJanitor(id string, r io.Reader) int {
	var hosts, paths, mounts, links, netns []string
	groups := map[int]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		kind, value, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "pgroup", "unpgroup":
			if pgid, err := strconv.Atoi(value); err == nil && pgid > 1 {
				groups[pgid] = kind == "pgroup"
			}
		case "host":
			hosts = append(hosts, value)
		case "path":
			paths = append(paths, value)
		case "mount":
			mounts = append(mounts, value)
		case "link":
			links = append(links, value)
		case "netns":
			netns = append(netns, value)
		}
	}
	var log strings.Builder
	logf := func(format string, args ...any) {
		fmt.Fprintf(&log, time.Now().Format(time.RFC3339)+" "+format+"\n", args...)
	}
	// Builds still running: their go command died with this process, the
	// compilers it started did not.
	for pgid, running := range groups {
		if running {
			logf("kill process group %d (a build): %v", pgid, errOrOK(killGroup(pgid)))
		}
	}
	// Helpers this process started get SIGTERM or SIGKILL as it dies
	// (Pdeathsig); a deployctl under test then cleans up after itself for a
	// moment. Sweep now and, if this process did not clean up (there was
	// something to remove), once more after that moment.
	for pass := 0; pass < 2; pass++ {
		if pass == 1 {
			if log.Len() == 0 {
				break
			}
			time.Sleep(10 * time.Second)
		}
		for _, h := range hosts {
			sweepEngine(h, id, logf)
		}
	}
	// Last the files: a second dockerd got SIGTERM as this process died
	// and needs its exec root and data root while it stops its containers
	// and its containerd (up to its 15 s shutdown timeout).
	if len(mounts) > 0 || len(netns) > 0 {
		time.Sleep(20 * time.Second)
	}
	for _, ns := range netns {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
			continue // deleted by its test
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			logf("ip netns del %s: %v: %s", ns, err, out)
		} else {
			logf("deleted network namespace %s", ns)
		}
	}
	for _, m := range mounts {
		if err := unmount(m); err == nil {
			logf("unmounted %s", m)
		}
		paths = append(paths, m)
	}
	for _, l := range links {
		if exec.Command("ip", "link", "show", l).Run() != nil {
			continue // deleted by its test
		}
		if out, err := exec.Command("ip", "link", "del", l).CombinedOutput(); err != nil {
			logf("ip link del %s: %v: %s", l, err, out)
		} else {
			logf("deleted network interface %s", l)
		}
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			logf("remove %s: %v", p, err)
		} else {
			logf("removed %s", p)
		}
	}
	if log.Len() > 0 {
		if lp := os.Getenv("DEPLOYCTL_JANITOR_LOG"); lp != "" {
			os.WriteFile(lp, []byte(fmt.Sprintf("janitor of run %s: the run ended without cleaning up:\n%s", id, log.String())), 0o644)
		}
	}
	return 0
}

// sweepEngine removes from the engine at host the objects of run id:
// containers, then networks, volumes and images.
func sweepEngine(host, id string, logf func(string, ...any)) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		logf("engine %s: %v", host, err)
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return // gone with the run (a second engine the test started)
	}
	label := LabelKey + "=" + id
	if l, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)}); err == nil {
		for _, c := range l.Items {
			_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			logf("engine %s: remove container %.12s %v: %v", host, c.ID, c.Names, errOrOK(err))
		}
	}
	if l, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", label)}); err == nil {
		for _, n := range l.Items {
			_, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
			logf("engine %s: remove network %s: %v", host, n.Name, errOrOK(err))
		}
	}
	// Deploy history of the apps the tests deployed: named "<name>-<run id>".
	if l, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", "deployctl.history")}); err == nil {
		for _, v := range l.Items {
			if strings.HasSuffix(v.Labels["deployctl.history"], "-"+id) || v.Labels[LabelKey] == id {
				_, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
				logf("engine %s: remove volume %s: %v", host, v.Name, errOrOK(err))
			}
		}
	}
	if l, err := cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("label", label)}); err == nil {
		for _, im := range l.Items {
			_, err := cli.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
			logf("engine %s: remove image %.19s %v: %v", host, im.ID, im.RepoTags, errOrOK(err))
		}
	}
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
