package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Linux sock_diag (linux/sock_diag.h, linux/inet_diag.h, linux/tcp.h).
const (
	sockDiagByFamily = 20
	inetDiagInfo     = 2 // attribute carrying struct tcp_info
	tcpEstablished   = 1
	diagReqLen       = 56 // struct inet_diag_req_v2
	diagMsgLen       = 72 // struct inet_diag_msg
	// Offsets in struct tcp_info.
	tcpiLastDataSent = 44
	tcpiLastDataRecv = 52
	tcpiDataSegsIn   = 152 // Linux 4.6+
	tcpiDataSegsOut  = 156
)

// listConns asks the kernel for the established TCP sockets whose local
// port is port, with their queues and tcp_info, over NETLINK_SOCK_DIAG (the
// interface ss uses; no privilege needed in one's own network namespace).
func listConns(port int) ([]Conn, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	var out []Conn
	for seq, family := range []uint8{syscall.AF_INET, syscall.AF_INET6} {
		req := make([]byte, syscall.NLMSG_HDRLEN+diagReqLen)
		binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
		binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
		binary.NativeEndian.PutUint16(req[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
		binary.NativeEndian.PutUint32(req[8:], uint32(seq+1))
		body := req[syscall.NLMSG_HDRLEN:]
		body[0] = family
		body[1] = syscall.IPPROTO_TCP
		body[2] = 1 << (inetDiagInfo - 1)
		binary.NativeEndian.PutUint32(body[4:], 1<<tcpEstablished)
		if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("netlink send: %w", err)
		}
		conns, err := readDiag(fd, uint32(seq+1), port)
		if err != nil {
			return nil, err
		}
		out = append(out, conns...)
	}
	return out, nil
}

// readDiag reads the dump answering request seq.
func readDiag(fd int, seq uint32, port int) ([]Conn, error) {
	var out []Conn
	buf := make([]byte, 1<<16)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink message: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return out, nil
			case syscall.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("netlink", syscall.Errno(errno)))
					}
				}
				return out, nil
			case sockDiagByFamily:
				if c, ok := parseDiag(m.Data, port); ok {
					out = append(out, c)
				}
			}
		}
	}
}

// parseDiag reads one struct inet_diag_msg and its attributes; ok is false
// for a socket whose local port is not port.
func parseDiag(b []byte, port int) (Conn, bool) {
	if len(b) < diagMsgLen || int(binary.BigEndian.Uint16(b[4:6])) != port {
		return Conn{}, false
	}
	c := Conn{
		RecvQueue: binary.NativeEndian.Uint32(b[56:]),
		SendQueue: binary.NativeEndian.Uint32(b[60:]),
	}
	for attrs := b[diagMsgLen:]; len(attrs) >= 4; {
		l := int(binary.NativeEndian.Uint16(attrs[0:]))
		typ := binary.NativeEndian.Uint16(attrs[2:])
		if l < 4 || l > len(attrs) {
			break
		}
		if data := attrs[4:l]; typ == inetDiagInfo && len(data) >= tcpiLastDataRecv+4 {
			c.SinceSent = time.Duration(binary.NativeEndian.Uint32(data[tcpiLastDataSent:])) * time.Millisecond
			c.SinceRecv = time.Duration(binary.NativeEndian.Uint32(data[tcpiLastDataRecv:])) * time.Millisecond
			if len(data) >= tcpiDataSegsOut+4 {
				c.DataSegsIn = binary.NativeEndian.Uint32(data[tcpiDataSegsIn:])
				c.DataSegsOut = binary.NativeEndian.Uint32(data[tcpiDataSegsOut:])
			}
		}
		l = (l + 3) &^ 3
		if l > len(attrs) {
			break
		}
		attrs = attrs[l:]
	}
	return c, true
}
