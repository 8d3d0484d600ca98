package loader

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DaemonStatus says whether the `ftpgate run` that attached a pin directory
// is still running. The dataplane works without it; what stops with it is
// the ager, metrics and the re-attachment of re-created interfaces.
type DaemonStatus struct {
	Running bool   `json:"running"`
	PID     int    `json:"pid,omitempty"`
	Reason  string `json:"reason,omitempty"` // why it is not running
}

// daemonStatus decides from the kernel, not the state file alone: a run
// holds the pin directory's flock for its whole life, so a lock on it
// (/proc/locks) is a live run; without one, the recorded pid and its start
// time tell an exited process from a reused pid.
func daemonStatus(pinDir string, st *State) DaemonStatus {
	if pid, ok := flockHolder(pinDir); ok {
		return DaemonStatus{Running: true, PID: pid}
	}
	d := DaemonStatus{PID: st.PID}
	start, err := processStart(st.PID)
	switch {
	case err != nil:
		d.Reason = fmt.Sprintf("pid %d exited", st.PID)
	case st.PIDStart != 0 && start != st.PIDStart:
		d.Reason = fmt.Sprintf("pid %d exited; the pid now belongs to another process", st.PID)
	default:
		d.Reason = fmt.Sprintf("pid %d stopped and released the pin directory", st.PID)
	}
	return d
}

// flockHolder returns the pid holding an flock on dir, from /proc/locks.
func flockHolder(dir string) (int, bool) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, false
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; waiters carry a "->"
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err == nil {
			return pid, true
		}
	}
	return 0, false
}

// processStart returns a process's start time in clock ticks after boot
// (field 22 of /proc/PID/stat), which a reused pid does not share.
func processStart(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// the command name (field 2) may hold spaces and parentheses: count
	// from the last ')'
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	const startField = 22 - 3 // fields after the command name start at 3
	if len(fields) <= startField {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[startField], 10, 64)
}

// RunHolding returns the pid of the `ftpgate run` that holds pinDir now, if
// one does.
func RunHolding(pinDir string) (int, bool) { return flockHolder(pinDir) }
