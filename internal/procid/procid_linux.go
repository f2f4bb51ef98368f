package procid

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/deployctl/deployctl/deploy"
)

// proc is where procfs is mounted (a test may point it elsewhere).
var proc = "/proc"

// Self implements deploy.Processes. It establishes nothing when /proc is
// not of this process's PID namespace (a process in a new PID namespace
// that did not mount its own /proc sees the parent's): PIDs read there
// would name other processes.
func (Local) Self() deploy.ProcessID {
	if !ownProc() {
		return deploy.ProcessID{}
	}
	var id deploy.ProcessID
	if b, err := os.ReadFile(proc + "/sys/kernel/random/boot_id"); err == nil {
		id.BootID = strings.TrimSpace(string(b))
	}
	if fi, err := os.Stat(proc + "/self/ns/pid"); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			id.PIDNS = fmt.Sprintf("%d:%d", st.Dev, st.Ino)
		}
	}
	if start, _, err := readStat(os.Getpid()); err == nil {
		id.Start = start
	}
	if id.BootID == "" || id.PIDNS == "" {
		return deploy.ProcessID{} // half an identity proves nothing
	}
	return id
}

// Lookup implements deploy.Processes.
func (Local) Lookup(pid int) (uint64, bool, error) {
	if pid <= 0 {
		return 0, false, fmt.Errorf("no such PID %d", pid)
	}
	if !ownProc() {
		return 0, false, errors.New(proc + " is not of this PID namespace")
	}
	start, zombie, err := readStat(pid)
	if err == nil {
		return start, !zombie, nil
	}
	// Unreadable is not gone: /proc mounted with hidepid hides other
	// users' processes. Only the kernel saying there is no such process
	// is certain.
	if kerr := syscall.Kill(pid, 0); errors.Is(kerr, syscall.ESRCH) {
		return 0, false, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return 0, true, nil // exists, hidden: start unknown
	}
	return 0, false, err
}

// ownProc tells whether /proc shows this process's PID namespace: its
// "self" is our own PID there.
func ownProc() bool {
	self, err := os.Readlink(proc + "/self")
	return err == nil && self == strconv.Itoa(os.Getpid())
}

// readStat reads the start time of pid (field 22 of /proc/<pid>/stat) and
// whether it is a zombie (state Z or X: exited, not yet reaped).
func readStat(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", proc, pid))
	if err != nil {
		return 0, false, err
	}
	return parseStat(b)
}

// parseStat parses /proc/<pid>/stat: "pid (comm) state ppid ...". The
// command name may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStat(b []byte) (start uint64, zombie bool, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("unreadable /proc stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 {
		return 0, false, fmt.Errorf("unreadable /proc stat %q", b)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("unreadable /proc stat start time %q: %w", f[19], err)
	}
	return start, f[0] == "Z" || f[0] == "X", nil
}
