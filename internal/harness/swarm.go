package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// A Swarm is a Docker Swarm of its own: one dockerd per node, each in a
// network namespace (and UTS namespace, for its hostname) of its own, with
// its own data and exec roots. The nodes are joined by a bridge in one more
// namespace (the "switch"), and this machine reaches them through a veth
// on that switch: Addr of each node, from the machine's own network
// namespace. Nothing of it is in the machine's own engine or in the
// machine's network namespace but that one veth, so tests of the machine's
// engine never see it (Swarm mode, the ingress and docker_gwbridge
// networks, iptables rules, overlay VXLAN all stay in the nodes'
// namespaces).
//
// Node 1 is the manager (Swarm leader); the others join as workers.
// Overlay networks work across nodes (VXLAN over the switch). This kernel
// has no IPVS, so a service's virtual IP does not balance: tests use the
// tasks' own IPs, which is what Traefik's swarm provider does by default.
type Swarm struct {
	Nodes []*SwarmNode
	// HostAddr is this machine's address on the switch.
	HostAddr string

	dir      string // data roots, logs
	run      string // exec roots and sockets (short paths)
	switchNS string
	hostLink string
}

// SwarmNode is one dockerd of a [Swarm].
type SwarmNode struct {
	// Name is the node's hostname (node1, node2, ...).
	Name string
	// Addr is its address on the switch, reachable from this machine:
	// ports a container publishes on the node are at Addr:port.
	Addr string
	// Host is the DOCKER_HOST of its engine (unix://...).
	Host string
	// Socket is the path of its engine's socket.
	Socket string
	// NetNS is the name of its network namespace (ip netns).
	NetNS string
	// Client is a client of its engine.
	Client *client.Client
	// ID is its Swarm node ID.
	ID string

	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// swarmSubnet is the switch's /24: 10.215.<k>.0/24, k chosen free on this
// machine under a file lock (several test processes run at once).
const swarmSubnetPrefix = "10.215."

// StartSwarm starts a Swarm of n nodes (n >= 1) and returns it once every
// node is Ready. logf, if not nil, reports the steps. The caller ends it with
// [Swarm.Close]; if this process dies first, each dockerd gets SIGTERM and
// the janitor removes the namespaces, the veth and the directories.
func StartSwarm(n int, logf func(string, ...any)) (_ *Swarm, err error) {
	if n < 1 {
		return nil, fmt.Errorf("a swarm needs at least one node, not %d", n)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	for _, bin := range []string{"dockerd", "ip", "nsenter", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("a swarm of its own needs %s: %w", bin, err)
		}
	}
	id := RunID()
	s := &Swarm{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "deployctl-swarm-"); err != nil {
		return nil, err
	}
	RemoveAtExit(s.dir)
	// containerd's socket goes under the exec root: at most 108 bytes.
	if s.run, err = os.MkdirTemp("/tmp", "dsw-"); err != nil {
		return nil, err
	}
	RemoveAtExit(s.run)

	unlock, err := lockFile(filepath.Join(os.TempDir(), "deployctl-swarm-subnet.lock"))
	if err != nil {
		return nil, err
	}
	k, err := freeSwarmSubnet()
	if err != nil {
		unlock()
		return nil, err
	}
	prefix := fmt.Sprintf("%s%d.", swarmSubnetPrefix, k)
	s.HostAddr = prefix + "1"
	s.switchNS = "dctl-" + id + "-sw"
	s.hostLink = ("dsw" + id)[:min(len("dsw"+id), 15)]
	NetnsDeleteAtExit(s.switchNS)
	DeleteLinkAtExit(s.hostLink)
	err = ipAll(
		[]string{"netns", "add", s.switchNS},
		[]string{"-n", s.switchNS, "link", "set", "lo", "up"},
		[]string{"-n", s.switchNS, "link", "add", "br0", "type", "bridge"},
		[]string{"-n", s.switchNS, "link", "set", "br0", "up"},
		[]string{"link", "add", s.hostLink, "type", "veth", "peer", "name", "uplink", "netns", s.switchNS},
		[]string{"-n", s.switchNS, "link", "set", "uplink", "master", "br0"},
		[]string{"-n", s.switchNS, "link", "set", "uplink", "up"},
		[]string{"addr", "add", s.HostAddr + "/24", "dev", s.hostLink},
		[]string{"link", "set", s.hostLink, "up"},
	)
	unlock()
	if err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		node, err := s.startNode(i, prefix)
		if err != nil {
			return nil, err
		}
		logf("swarm: %s (%s) answers at %s", node.Name, node.Addr, node.Host)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mgr := s.Nodes[0]
	res, err := mgr.Client.SwarmInit(ctx, client.SwarmInitOptions{
		ListenAddr:      mgr.Addr + ":2377",
		AdvertiseAddr:   mgr.Addr,
		DefaultAddrPool: []netip.Prefix{netip.MustParsePrefix("10.216.0.0/16")},
		SubnetSize:      24,
		Spec: swarm.Spec{
			// The default keeps 5 old tasks per slot: a test's history.
			Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: ptr(int64(2))},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("swarm init on %s: %w", mgr.Name, err)
	}
	mgr.ID = res.NodeID
	insp, err := mgr.Client.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return nil, err
	}
	for _, node := range s.Nodes[1:] {
		if _, err := node.Client.SwarmJoin(ctx, client.SwarmJoinOptions{
			ListenAddr:    node.Addr + ":2377",
			AdvertiseAddr: node.Addr,
			RemoteAddrs:   []string{mgr.Addr + ":2377"},
			JoinToken:     insp.Swarm.JoinTokens.Worker,
		}); err != nil {
			return nil, fmt.Errorf("swarm join of %s: %w", node.Name, err)
		}
		info, err := node.Client.Info(ctx, client.InfoOptions{})
		if err != nil {
			return nil, err
		}
		node.ID = info.Info.Swarm.NodeID
	}
	// Ready: every node listed Ready by the manager.
	for {
		l, err := mgr.Client.NodeList(ctx, client.NodeListOptions{})
		ready := 0
		if err == nil {
			for _, nd := range l.Items {
				if nd.Status.State == swarm.NodeStateReady {
					ready++
				}
			}
		}
		if ready == n {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d swarm nodes ready after 2m (%v)", ready, n, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	logf("swarm: %d node(s) ready, manager %s", n, mgr.Addr)
	return s, nil
}

func ptr[T any](v T) *T { return &v }

// freeSwarmSubnet returns a k for which no address of this machine is in
// 10.215.k.0/24.
func freeSwarmSubnet() (int, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip := ipn.IP.To4()
		if ip[0] == 10 && ip[1] == 215 {
			used[int(ip[2])] = true
		}
	}
	for k := 1; k < 255; k++ {
		if !used[k] {
			return k, nil
		}
	}
	return 0, errors.New("no free /24 in 10.215.0.0/16 for a swarm's switch")
}

func ipAll(cmds ...[]string) error {
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func (s *Swarm) startNode(i int, prefix string) (*SwarmNode, error) {
	id := RunID()
	node := &SwarmNode{
		Name:   fmt.Sprintf("node%d", i),
		Addr:   fmt.Sprintf("%s%d", prefix, 10+i),
		NetNS:  fmt.Sprintf("dctl-%s-n%d", id, i),
		exited: make(chan struct{}),
	}
	s.Nodes = append(s.Nodes, node)
	NetnsDeleteAtExit(node.NetNS)
	veth := fmt.Sprintf("n%d", i)
	if err := ipAll(
		[]string{"netns", "add", node.NetNS},
		[]string{"-n", node.NetNS, "link", "set", "lo", "up"},
		[]string{"-n", s.switchNS, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", node.NetNS},
		[]string{"-n", s.switchNS, "link", "set", veth, "master", "br0"},
		[]string{"-n", s.switchNS, "link", "set", veth, "up"},
		[]string{"-n", node.NetNS, "addr", "add", node.Addr + "/24", "dev", "eth0"},
		[]string{"-n", node.NetNS, "link", "set", "eth0", "up"},
		[]string{"-n", node.NetNS, "route", "add", "default", "via", s.HostAddr},
	); err != nil {
		return nil, err
	}
	data := filepath.Join(s.dir, node.Name)
	run := filepath.Join(s.run, fmt.Sprint(i))
	for _, d := range []string{data, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	config := filepath.Join(data, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o644); err != nil {
		return nil, err
	}
	node.Socket = filepath.Join(run, "docker.sock")
	node.Host = "unix://" + node.Socket
	node.logPath = filepath.Join(data, "dockerd.log")
	logFile, err := os.Create(node.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// nsenter (not "ip netns exec", which remounts /sys and hides the
	// cgroup hierarchy dockerd needs) into the node's network namespace,
	// unshare a UTS namespace for its hostname, then exec dockerd: one
	// process, so that Pdeathsig reaches dockerd itself.
	script := fmt.Sprintf("hostname %s && exec dockerd --config-file %s --data-root %s --exec-root %s --pidfile %s --host %s --storage-driver vfs",
		node.Name, config, filepath.Join(data, "root"), filepath.Join(run, "exec"), filepath.Join(run, "docker.pid"), node.Host)
	cmd := exec.Command("nsenter", "--net=/run/netns/"+node.NetNS, "unshare", "--uts", "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// No registry here: a Swarm agent pulls a task's image before using
	// its own copy, and the pull waits for DNS that no one answers (about
	// 20 s a task). This makes it use the image it has, as with a
	// registry that answers at once.
	cmd.Env = append(os.Environ(), "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	node.cmd = cmd
	go func() { cmd.Wait(); close(node.exited) }()
	registerDockerHost(node.Host)
	cli, err := client.New(client.WithHost(node.Host))
	if err != nil {
		return nil, err
	}
	node.Client = cli
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			return node, nil
		}
		select {
		case <-node.exited:
			return nil, fmt.Errorf("dockerd of %s exited (%v):\n%s", node.Name, cmd.ProcessState, Tail(node.Log(), 4<<10))
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dockerd of %s did not answer within 90s: %v", node.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Manager is the node that initialised the swarm.
func (s *Swarm) Manager() *SwarmNode { return s.Nodes[0] }

// Log returns what the node's dockerd has logged.
func (n *SwarmNode) Log() string {
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// Stop stops the node's dockerd (SIGTERM; SIGKILL after 30 s): the node
// goes Down for the manager. Its tasks stop with it.
func (n *SwarmNode) Stop() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

// Close stops every node, then removes the namespaces, the veth and the
// directories. It may be called on a half-started swarm.
func (s *Swarm) Close() error {
	var errs []error
	for i := len(s.Nodes) - 1; i >= 0; i-- {
		n := s.Nodes[i]
		if n.Client != nil {
			n.Client.Close()
		}
		n.Stop()
	}
	for _, n := range s.Nodes {
		if err := ipAll([]string{"netns", "del", n.NetNS}); err != nil {
			errs = append(errs, err)
		}
	}
	if s.switchNS != "" {
		// Deleting the switch's namespace deletes its ends of the veths,
		// and with them the machine's end.
		if err := ipAll([]string{"netns", "del", s.switchNS}); err != nil {
			errs = append(errs, err)
		}
	}
	if s.hostLink != "" {
		if _, err := net.InterfaceByName(s.hostLink); err == nil {
			errs = append(errs, ipAll([]string{"link", "del", s.hostLink}))
		}
	}
	for _, d := range []string{s.run, s.dir} {
		if d != "" {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
