// Package marker defines the lines the guest init prints on the serial
// console and the host runner parses. Keeping both sides in one package
// keeps the format from drifting.
package marker

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
)

// Lines printed by the guest, each on its own line.
const (
	Init       = "VMTEST-INIT"        // init started (end of kernel boot)
	Done       = "VMTEST-DONE"        // every payload ran; init powers off next
	SetupError = "VMTEST-SETUP-ERROR" // harness problem inside the guest (mount, module)
)

// Result is the outcome of one test binary. The counts include subtests:
// every "--- PASS/FAIL/SKIP" line of -test.v output, at any indentation.
type Result struct {
	Name string
	Exit int
	Pass int
	Fail int
	Skip int
}

// String renders the marker line for r.
func (r Result) String() string {
	return fmt.Sprintf("VMTEST-RESULT %s exit=%d pass=%d fail=%d skip=%d", r.Name, r.Exit, r.Pass, r.Fail, r.Skip)
}

// The console is shared with kernel messages, which can be printed in the
// middle of a line, so the marker is searched anywhere in a line.
var resultRE = regexp.MustCompile(`VMTEST-RESULT (\S+) exit=(-?\d+) pass=(\d+) fail=(\d+) skip=(\d+)`)

// ParseResult extracts a Result marker from a console line.
func ParseResult(line string) (Result, bool) {
	m := resultRE.FindStringSubmatch(line)
	if m == nil {
		return Result{}, false
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return Result{Name: m[1], Exit: n(m[2]), Pass: n(m[3]), Fail: n(m[4]), Skip: n(m[5])}, true
}

// testLineRE matches the verdict lines of `go test -test.v`; subtests are
// indented by four spaces per level.
var testLineRE = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): `)

// Counter tallies verdict lines from a stream of test output. It is an
// io.Writer so it can sit next to the console in an io.MultiWriter.
type Counter struct {
	Pass, Fail, Skip int
	partial          []byte
}

// Write consumes output, counting complete lines.
func (c *Counter) Write(p []byte) (int, error) {
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.line(string(c.partial[:i]))
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

// Flush counts a trailing line without a newline.
func (c *Counter) Flush() {
	if len(c.partial) > 0 {
		c.line(string(c.partial))
		c.partial = nil
	}
}

func (c *Counter) line(s string) {
	m := testLineRE.FindStringSubmatch(s)
	if m == nil {
		return
	}
	switch m[1] {
	case "PASS":
		c.Pass++
	case "FAIL":
		c.Fail++
	case "SKIP":
		c.Skip++
	}
}
