package natlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// ReportEnv names the file TestNATMatrix writes its markdown table to.
const ReportEnv = "FTPGATE_NAT_REPORT"

// ModesEnv, if set, is a comma-separated subset of the modes to run.
const ModesEnv = "FTPGATE_NAT_MODES"

// SerialEnv=1 runs one case at a time and reads the INVALID counter around
// each (the default runs cases concurrently and reads it per mode only).
const SerialEnv = "FTPGATE_NAT_SERIAL"

func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBuilt()
	os.Exit(code)
}

// outcome is one case run in one mode.
type outcome struct {
	pass bool
	// note says how it passed or why it failed.
	note string
	// invalid is how far the INVALID counter moved while the case ran
	// (read only when cases run one at a time).
	invalid uint64
	// log is the failing client's output.
	log  string
	took time.Duration
}

// modeRun is one mode's lab and results.
type modeRun struct {
	mode    Mode
	skip    string
	lab     *Lab
	results map[string]outcome
	invalid uint64 // over the whole mode
	elapsed time.Duration
	// counters are ftpgate's non-zero counters after the cases, for the
	// ftpgate modes.
	counters map[string]uint64
}

// TestNATMatrix runs every case through a NAT gateway in each helper mode,
// all modes at once (a lab each), and holds each mode to what it must do:
// the kernel's helper passes every plain and security case, no helper
// fails every case that needs one, every mode refuses the security cases,
// ftpgate-nat and ftpgate-nat-own pass all; nothing is INVALID to conntrack.
func TestNATMatrix(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the NAT lab creates network namespaces and loads BPF: need root")
	}
	lab.Require(t)
	start := time.Now()
	cases := matrix()
	runs := buildModes(t)
	t.Logf("labs built in %.1f s", time.Since(start).Seconds())
	logBefore, logErr := KernelLog()

	sem := make(chan struct{}, 24)
	if os.Getenv(SerialEnv) == "1" {
		sem = make(chan struct{}, 1)
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		if r.lab == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(cases, sem)
		}()
	}
	wg.Wait()
	t.Logf("cases run in %.1f s", time.Since(start).Seconds())

	for _, r := range runs {
		t.Run(string(r.mode), func(t *testing.T) {
			if r.skip != "" {
				t.Skip(r.skip)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { r.check(t, c) })
			}
			// numgen must really spread the VIP's sessions, or "data
			// follows control" would hold trivially
			seen, vips, passed := map[string]bool{}, 0, 0
			for _, c := range cases {
				if strings.HasPrefix(c.name, "vip_") {
					vips++
					if o := r.results[c.name]; o.pass {
						passed++
						seen[o.note] = true
					}
				}
			}
			if passed == vips && len(seen) < 2 {
				t.Errorf("all %d VIP sessions reached one backend (%v): the VIP does not balance", vips, seen)
			}
			// conntrack must find nothing INVALID: the helper's sequence
			// adjustment (or its absence) keeps both views consistent
			if r.invalid != 0 {
				t.Errorf("forward chain counted %d INVALID packets", r.invalid)
			}
		})
	}
	var newLines []string
	if logErr == nil {
		after, err := KernelLog()
		if err == nil {
			newLines = NetfilterLines(logBefore, after)
		}
		logErr = err
	}
	switch {
	case logErr != nil:
		t.Logf("kernel log not checked: %v", logErr)
	case len(newLines) > 0:
		t.Errorf("netfilter wrote to the kernel log:\n%s", strings.Join(newLines, "\n"))
	}
	if path := os.Getenv(ReportEnv); path != "" {
		if err := os.WriteFile(path, []byte(report(cases, runs, logErr, newLines, time.Since(start))), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
}

// buildModes makes a lab for each mode that can run here.
func buildModes(t *testing.T) []*modeRun {
	want := map[Mode]bool{}
	for _, m := range strings.Split(os.Getenv(ModesEnv), ",") {
		if m != "" {
			want[Mode(strings.TrimSpace(m))] = true
		}
	}
	var runs []*modeRun
	for _, m := range Modes {
		r := &modeRun{mode: m, results: map[string]outcome{}}
		runs = append(runs, r)
		if len(want) > 0 && !want[m] {
			r.skip = fmt.Sprintf("not in %s", ModesEnv)
			continue
		}
		opts := Options{Mode: m}
		if m.RunsFtpgate() {
			opts.Ftpgate = lab.FtpgateBinary(t)
		}
		r.lab = New(t, opts)
	}
	return runs
}

// run runs every case in this mode, at most cap(sem) at a time across
// all modes; one at a time, it also reads each case's INVALID count.
func (r *modeRun) run(cases []natCase, sem chan struct{}) {
	serial := cap(sem) == 1
	start := time.Now()
	ctx := context.Background()
	before, _ := r.lab.Invalid(ctx)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			var inv0, inv1 uint64
			if serial {
				inv0, _ = r.lab.Invalid(ctx)
			}
			st := time.Now()
			note, err := c.run(cctx, r.lab)
			took := time.Since(st)
			if serial {
				inv1, _ = r.lab.Invalid(ctx)
			}
			o := outcome{pass: err == nil, note: note, invalid: inv1 - inv0, took: took}
			if err != nil {
				o.note = err.Error()
				var ce *clientError
				if errors.As(err, &ce) {
					o.log = ce.log
				}
			}
			mu.Lock()
			r.results[c.name] = o
			mu.Unlock()
		}()
	}
	wg.Wait()
	after, _ := r.lab.Invalid(ctx)
	r.invalid = after - before
	r.elapsed = time.Since(start)
	if r.lab.Gate != nil {
		if c, err := r.lab.Gate.Counters(); err == nil {
			r.counters = map[string]uint64{}
			for k, v := range c {
				if v != 0 {
					r.counters[k] = v
				}
			}
		}
	}
}

// check holds one case's outcome in this mode to what the mode must do.
func (r *modeRun) check(t *testing.T, c natCase) {
	o := r.results[c.name]
	t.Logf("%s: pass=%v %s (INVALID +%d, %.1f s)", c.what, o.pass, o.note, o.invalid, o.took.Seconds())
	if o.log != "" && testing.Verbose() {
		t.Logf("client's log:\n%s", o.log)
	}
	switch {
	case c.kind == security && !o.pass:
		t.Errorf("security case failed (it must hold in every mode): %s", o.note)
	case (r.mode == FtpgateNAT || r.mode == FtpgateNATOwn) && !o.pass:
		t.Errorf("%s must carry every case: %s", r.mode, o.note)
	case r.mode == Kernel && c.kind == plain && !o.pass:
		t.Errorf("the kernel's helper is the baseline and must pass: %s", o.note)
	case r.mode == KernelFtpgate && c.kind == plain && !o.pass:
		t.Errorf("ftpgate's filter next to the kernel's helper must pass every case the kernel's passes: %s", o.note)
	case r.mode == KernelFtpgateNAT && c.kind == plain && !o.pass:
		t.Errorf("with both helpers every case the kernel's passes must pass (nothing rewritten twice): %s", o.note)
	case r.mode == None && c.needsHelper && o.pass:
		t.Errorf("passed with no FTP helper at all: the lab does not NAT this session")
	}
}
