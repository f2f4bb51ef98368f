//go:build linux

package probe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConns opens real TCP connections to a listener, one in each state the
// drain tells apart, and counts them through the kernel's sock_diag.
func TestConns(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatalf("%s loopback: %v", network, err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			accepted := make(chan net.Conn, 8)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					accepted <- c
				}
			}()
			dial := func() (client, server net.Conn) {
				t.Helper()
				c, err := net.Dial(network, ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				s := <-accepted
				t.Cleanup(func() { s.Close() })
				return c, s
			}
			const quiet = 300 * time.Millisecond

			// idle keep-alive: a request, its whole response, then nothing.
			c, s := dial()
			io.WriteString(c, "GET / HTTP/1.1\r\n\r\n")
			bufio.NewReader(s).ReadString('\n')
			io.WriteString(s, "HTTP/1.1 200 OK\r\n\r\n")
			bufio.NewReader(c).ReadString('\n')

			// a request read by the app and not answered yet (a slow request).
			c, s = dial()
			time.Sleep(20 * time.Millisecond)
			io.WriteString(c, "GET /slow HTTP/1.1\r\n\r\n")
			bufio.NewReader(s).ReadString('\n')

			// a request the app has not even read.
			c, _ = dial()
			io.WriteString(c, "POST /upload HTTP/1.1\r\n\r\n")

			// a request sent at once on a new connection (in the kernel's
			// tick of its handshake), read, not answered.
			c, s = dial()
			io.WriteString(c, "GET /report HTTP/1.1\r\n\r\n")
			bufio.NewReader(s).ReadString('\n')

			// a stream: the server sent just now (and keeps the connection).
			_, stream := dial()

			time.Sleep(quiet + quiet/2) // the idle one has been quiet for longer than quiet
			// The stream is in flight only while its last send is less than
			// quiet old. On a loaded machine (CI runs this with -race beside
			// the end-to-end tests) this test can be descheduled for longer
			// than that between the send and the count: then the count says
			// nothing, and the stream sends again.
			var n ConnCount
			for try := 1; ; try++ {
				sent := time.Now()
				io.WriteString(stream, "data: tick\n\n")
				n, err = CountConns(port, quiet)
				if err != nil {
					t.Fatal(err)
				}
				if time.Since(sent) < quiet/2 || try == 20 {
					break
				}
			}
			if n.Established != 5 || n.InFlight != 4 {
				conns, _ := listConns(port)
				t.Errorf("CountConns = %+v, want 5 established, 4 in flight (all but the idle keep-alive one); the connections: %+v", n, conns)
			}
		})
	}
}

// TestConnsMode runs the conns mode's command line.
func TestConnsMode(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\n\r\n")
	time.Sleep(50 * time.Millisecond)

	var out, errOut bytes.Buffer
	port := ln.Addr().(*net.TCPAddr).Port
	if code := Main([]string{"conns", "--port", itoa(port)}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var n ConnCount
	if err := json.Unmarshal(out.Bytes(), &n); err != nil || n != (ConnCount{Port: port, Established: 1, InFlight: 1}) {
		t.Errorf("output %q (%v), want one established in flight", out.String(), err)
	}
	for _, bad := range [][]string{{"conns"}, {"conns", "--port", "0"}, {"conns", "--port", "80", "extra"}} {
		out.Reset()
		errOut.Reset()
		if code := Main(bad, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--port") {
			t.Errorf("%q: exit %d, stderr %q; want 2 naming --port", bad, code, errOut.String())
		}
	}
}

// TestHoldExitsOnSIGTERM runs hold in a child process (this test binary)
// and stops it as Docker stops a route container.
func TestHoldExitsOnSIGTERM(t *testing.T) {
	if os.Getenv("DEPLOYCTL_PROBE_HOLD") == "1" {
		os.Exit(Main([]string{"hold"}, os.Stdout, os.Stderr))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldExitsOnSIGTERM$")
	cmd.Env = append(os.Environ(), "DEPLOYCTL_PROBE_HOLD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Ready once it says so (the signal handler is installed).
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.Contains(line, "holding until SIGTERM") {
		cmd.Process.Kill()
		t.Fatalf("hold's first line %q (%v)", line, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("hold exited by itself: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("hold on SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("hold did not exit on SIGTERM")
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
