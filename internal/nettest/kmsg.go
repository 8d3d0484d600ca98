package nettest

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// KmsgRecord is one record of the kernel log (/dev/kmsg).
type KmsgRecord struct {
	Seq   uint64
	Level int // 0 emergency … 4 warning … 7 debug
	Text  string
}

// Kmsg reads the kernel log's records with a sequence number above after
// (0: all the ring buffer holds) from /dev/kmsg: no dmesg binary, so it
// works in the VM guests too. Records overwritten while reading are
// skipped.
func Kmsg(after uint64) ([]KmsgRecord, error) {
	// raw system calls: os.File would park a non-blocking read of a
	// pollable device in the runtime's poller instead of returning EAGAIN
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("kernel log: open /dev/kmsg: %w", err)
	}
	defer unix.Close(fd)
	var recs []KmsgRecord
	buf := make([]byte, 8192) // a record is at most about 1 KiB of text
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // the ring buffer overwrote the next record
		}
		if errors.Is(err, unix.EAGAIN) {
			return recs, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return recs, fmt.Errorf("kernel log: read /dev/kmsg: %w", err)
		}
		r, ok := parseKmsg(string(buf[:n]))
		if ok && r.Seq > after {
			recs = append(recs, r)
		}
	}
}

// parseKmsg reads "prio,seq,usec,flags[,…];text\n[ KEY=value\n…]".
func parseKmsg(s string) (KmsgRecord, bool) {
	head, text, ok := strings.Cut(s, ";")
	if !ok {
		return KmsgRecord{}, false
	}
	f := strings.Split(head, ",")
	if len(f) < 3 {
		return KmsgRecord{}, false
	}
	prio, err1 := strconv.Atoi(f[0])
	seq, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return KmsgRecord{}, false
	}
	text, _, _ = strings.Cut(text, "\n") // continuation lines are dictionary entries
	return KmsgRecord{Seq: seq, Level: prio & 7, Text: text}, true
}

// KmsgLast is the sequence number of the newest kernel log record: pass it
// to Kmsg or KernelWarnings later to see what came after.
func KmsgLast() (uint64, error) {
	recs, err := Kmsg(0)
	if len(recs) == 0 {
		return 0, err
	}
	return recs[len(recs)-1].Seq, err
}

// kernelTrouble is text that is a kernel bug or a warning whatever its level.
var kernelTrouble = regexp.MustCompile(`BUG|WARNING|Call Trace|general protection|Oops|refcount_t|list_(add|del) corruption|RCU stall|soft lockup`)

// KernelWarnings returns the kernel log records after seq at warning level
// or worse, or that report a bug, one line each.
func KernelWarnings(after uint64) ([]string, error) {
	recs, err := Kmsg(after)
	var out []string
	for _, r := range recs {
		if r.trouble() {
			out = append(out, fmt.Sprintf("<%d> %s", r.Level, r.Text))
		}
	}
	return out, err
}

// trouble: a warning or worse, or a bug report at any level.
func (r KmsgRecord) trouble() bool { return r.Level <= 4 || kernelTrouble.MatchString(r.Text) }
