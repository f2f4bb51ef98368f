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
}

// InFlight reports whether c carries work: a request the app has not
// answered (data arrived after it last sent, or is still unread), a
// response still on its way, or a stream that sent within quiet. An idle
// keep-alive connection, whose last act was a whole response, is not in
// flight: the app's own graceful stop closes it.
func (c Conn) InFlight(quiet time.Duration) bool {
	return c.RecvQueue > 0 || c.SendQueue > 0 || c.SinceRecv < c.SinceSent || c.SinceSent < quiet
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
// namespace: it waits for SIGTERM or SIGINT and exits 0.
func hold() int {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	return 0
}
