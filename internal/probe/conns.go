package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Conn is one TCP connection the kernel reports on the app's port, as the
// server side sees it.
type Conn struct {
	RecvQueue uint32        // bytes received, not yet read by the app
	SendQueue uint32        // bytes written, not yet acknowledged by the peer
	SinceRecv time.Duration // since data last arrived
	SinceSent time.Duration // since data was last sent
	// DataSegsIn and DataSegsOut count the segments with data received and
	// sent (Linux 4.6+; both 0 when the kernel does not say).
	DataSegsIn, DataSegsOut uint32
}

// InFlight reports whether c carries work: a request the app has not
// answered (data arrived and nothing was ever sent back, data arrived
// after the app last sent, or is still unread), a response still on its
// way, or a stream that sent within quiet. An idle keep-alive connection,
// whose last act was a whole response, is not in flight: the app's own
// graceful stop closes it.
//
// The kernel keeps the times in ticks (1-10 ms): a request that arrived in
// the same tick as the previous response on its connection, and is not
// answered yet, looks idle.
func (c Conn) InFlight(quiet time.Duration) bool {
	unanswered := c.DataSegsIn > 0 && c.DataSegsOut == 0
	return c.RecvQueue > 0 || c.SendQueue > 0 || unanswered || c.SinceRecv < c.SinceSent || c.SinceSent < quiet
}

// ConnCount is what `conns` prints, one JSON line.
type ConnCount struct {
	Port        int `json:"port"`
	Established int `json:"established"`
	InFlight    int `json:"in_flight"`
}

// CountConns counts the established TCP connections (IPv4 and IPv6) whose
// local port is port in the caller's network namespace, and those of them
// in flight.
func CountConns(port int, quiet time.Duration) (ConnCount, error) {
	conns, err := listConns(port)
	if err != nil {
		return ConnCount{}, err
	}
	n := ConnCount{Port: port, Established: len(conns)}
	for _, c := range conns {
		if c.InFlight(quiet) {
			n.InFlight++
		}
	}
	return n, nil
}

// conns is the `conns` mode: print CountConns as JSON; exit 0, or 1 when
// the kernel could not be asked.
func conns(port int, quiet time.Duration, stdout, stderr io.Writer) int {
	n, err := CountConns(port, quiet)
	if err != nil {
		fmt.Fprintf(stderr, "deployctl-probe conns: %v\n", err)
		return 1
	}
	b, _ := json.Marshal(n)
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}

// hold is the `hold` mode, the process of a route container and of the
// helper that counts another container's connections from its network
// namespace: it waits for SIGTERM or SIGINT and exits 0. It says so once
// it is ready for the signal.
func hold(stdout io.Writer) int {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	fmt.Fprintln(stdout, "deployctl-probe: holding until SIGTERM")
	<-ch
	return 0
}
