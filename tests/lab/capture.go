package lab

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
)

// Capture is a running tcpdump writing a pcap file.
type Capture struct {
	// Path is the pcap file being written.
	Path string

	cmd     *exec.Cmd
	done    chan struct{}
	stderr  strings.Builder
	mu      sync.Mutex
	once    sync.Once
	stopErr error
}

// StartCapture runs tcpdump on interface iface inside namespace ns, writing
// every packet (optionally filtered by a pcap filter expression) to path.
// It returns once tcpdump reports it is listening, so packets sent after
// the call are captured. The capture is stopped in cleanup if not earlier.
func (l *Lab) StartCapture(ns, iface, path string, filter ...string) (*Capture, error) {
	// --immediate-mode hands each packet to tcpdump at once (otherwise the
	// kernel batches them for up to a second and SIGINT discards the batch);
	// -U then writes each packet to the file as it comes; -n avoids DNS.
	args := []string{"netns", "exec", ns, "tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-s", "0", "-w", path}
	args = append(args, filter...)
	c := &Capture{Path: path, cmd: exec.Command("ip", args...), done: make(chan struct{})}
	pr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("tcpdump stderr pipe: %w", err)
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tcpdump on %s/%s: %w", ns, iface, err)
	}
	ready := make(chan struct{})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.stderr.WriteString(line + "\n")
			c.mu.Unlock()
			if !signalled && strings.Contains(line, "listening on") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	l.t.Cleanup(func() { _ = c.Stop() })
	select {
	case <-ready:
		return c, nil
	case <-c.done:
		err := c.Stop()
		return nil, fmt.Errorf("tcpdump on %s/%s exited before listening: %w: %s", ns, iface, err, c.output())
	case <-time.After(10 * time.Second):
		_ = c.Stop()
		return nil, fmt.Errorf("tcpdump on %s/%s not listening after 10s: %s", ns, iface, c.output())
	}
}

func (c *Capture) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(c.stderr.String())
}

// Stop ends the capture (SIGINT, so tcpdump flushes and closes the file)
// and waits for tcpdump to exit. It is safe to call more than once.
func (c *Capture) Stop() error {
	c.once.Do(func() {
		Terminate(c.cmd.Process, syscall.SIGINT, c.done, 5*time.Second)
		err := c.cmd.Wait()
		var ee *exec.ExitError
		// tcpdump exits 0 on SIGINT; a signal death only after our SIGKILL.
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 0) {
			c.stopErr = fmt.Errorf("tcpdump: %w: %s", err, c.output())
		}
	})
	return c.stopErr
}

// WaitPackets polls the pcap file until it holds at least n packets or
// timeout passes, so a test can stop the capture only once the traffic it
// produced is on disk.
func (c *Capture) WaitPackets(n int, timeout time.Duration) error {
	return nettest.Poll(timeout, func() error {
		got, err := CountPcapPackets(c.Path)
		if err != nil {
			return err
		}
		if got < n {
			return fmt.Errorf("pcap %s holds %d packets, want %d", c.Path, got, n)
		}
		return nil
	})
}

// CountPcapPackets counts the complete packet records in a classic pcap
// file (as tcpdump -w writes); a record still being written is not counted.
func CountPcapPackets(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pcap: %w", err)
	}
	if len(b) < 24 {
		return 0, fmt.Errorf("pcap %s: header incomplete (%d bytes)", path, len(b))
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return 0, fmt.Errorf("pcap %s: bad magic %#x", path, binary.LittleEndian.Uint32(b))
	}
	n := 0
	for off := 24; off+16 <= len(b); n++ {
		next := off + 16 + int(bo.Uint32(b[off+8:]))
		if next > len(b) {
			break
		}
		off = next
	}
	return n, nil
}
