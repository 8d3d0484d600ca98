package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ftpgate/ftpgate/tests/vm/internal/marker"
)

type runConfig struct {
	repo      string
	kernels   []string
	binaries  []string
	testArgs  []string
	timeout   time.Duration
	parallel  int
	memory    string
	smp       int
	busybox   string
	appendArg string
	modules   string
	verbose   bool
	hostFiles []string // with their shared libraries
}

// vmResult is everything learned from one VM's console.
type vmResult struct {
	kernel   string
	pkg      string // Debian package and version
	release  string // uname -r reported by init
	results  []marker.Result
	setupErr []string
	done     bool
	timedOut bool
	qemuErr  error
	boot     time.Duration // qemu start to init start
	total    time.Duration
	logPath  string
	panicked bool
}

func cmdInitramfs(args []string) error {
	fs := flag.NewFlagSet("initramfs", flag.ContinueOnError)
	out := fs.String("o", "", "output cpio file")
	initBin := fs.String("init", "", "static init binary")
	mods := fs.String("modules", "", "directory of .ko files")
	bb := fs.String("busybox", "", "static busybox (debugging only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *initBin == "" {
		return errors.New("-o and -init are required")
	}
	return writeInitramfs(*out, initramfsSpec{Init: *initBin, Binaries: fs.Args(), ModulesDir: *mods, Busybox: *bb})
}

func cmdRun(args []string) (bool, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	kernels := fs.String("kernels", "5.10 6.1 6.12 7.x", "space-separated kernel versions (see fetch-kernel.sh)")
	binaries := fs.String("binaries", "", "space-separated static test binaries (CGO_ENABLED=0 go test -c)")
	testArgs := fs.String("test-args", "-test.v -test.count=1", "arguments passed to every test binary")
	timeout := fs.Duration("timeout", 10*time.Minute, "per-VM timeout; a VM still running is killed and fails")
	parallel := fs.Int("parallel", 2, "VMs booted at once")
	memory := fs.String("memory", "1G", "guest memory")
	smp := fs.Int("smp", 1, "guest CPUs (TCG runs them on one host thread)")
	busybox := fs.String("busybox", "", "include this static busybox in the initramfs, for debugging")
	appendArg := fs.String("append", "", "extra kernel command line words")
	modules := fs.String("modules", os.Getenv("VMTEST_MODULES"),
		"kernel modules to load in the guest, dependencies added automatically (default: fetch-kernel.sh's list)")
	hostFilesArg := fs.String("host-files", "",
		"space-separated host files or globs put into the guest at the same paths, executables with their shared libraries (ldd), e.g. /usr/sbin/xdp-loader")
	verbose := fs.Bool("v", false, "stream guest consoles to stdout, prefixed by kernel")
	repo := fs.String("repo", "", "repository root (default: found from the working directory)")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	cfg := runConfig{
		kernels:   strings.Fields(*kernels),
		binaries:  strings.Fields(*binaries),
		testArgs:  strings.Fields(*testArgs),
		timeout:   *timeout,
		parallel:  max(1, *parallel),
		memory:    *memory,
		smp:       max(1, *smp),
		busybox:   *busybox,
		appendArg: *appendArg,
		modules:   *modules,
		verbose:   *verbose,
		repo:      *repo,
	}
	var err error
	if cfg.hostFiles, err = hostFiles(strings.Fields(*hostFilesArg)); err != nil {
		return false, err
	}
	if len(cfg.binaries) == 0 || len(cfg.kernels) == 0 {
		return false, errors.New("--binaries and --kernels must not be empty")
	}
	if cfg.repo == "" {
		r, err := findRepo()
		if err != nil {
			return false, err
		}
		cfg.repo = r
	}
	for i, b := range cfg.binaries {
		abs, err := filepath.Abs(b)
		if err != nil {
			return false, err
		}
		cfg.binaries[i] = abs
		if err := checkStatic(abs); err != nil {
			return false, err
		}
	}
	return runMatrix(cfg)
}

// findRepo walks up to the directory holding this module's go.mod.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/ftpgate/ftpgate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the ftpgate repository; pass --repo")
		}
		dir = parent
	}
}

func runMatrix(cfg runConfig) (bool, error) {
	cache := filepath.Join(cfg.repo, ".cache", "vm")
	outDir := filepath.Join(cfg.repo, "out", "vm", "bin")
	for _, d := range []string{filepath.Join(cache, "logs"), filepath.Join(cache, "initramfs"), outDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return false, fmt.Errorf("create %s: %w", d, err)
		}
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return false, errors.New("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}

	initBin := filepath.Join(outDir, "init")
	build := exec.Command("go", "build", "-trimpath", "-o", initBin, "./tests/vm/init")
	build.Dir = cfg.repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return false, fmt.Errorf("build guest init: %w", err)
	}

	// Fetching is sequential: it shares one private apt state.
	self, _ := os.Executable()
	prep := make([]*vmResult, len(cfg.kernels))
	for i, k := range cfg.kernels {
		fetch := exec.Command(filepath.Join(cfg.repo, "tests", "vm", "fetch-kernel.sh"), k)
		fetch.Env = append(os.Environ(), "VMTEST_BIN="+self)
		if cfg.modules != "" {
			fetch.Env = append(fetch.Env, "VMTEST_MODULES="+cfg.modules)
		}
		fetch.Stdout, fetch.Stderr = os.Stderr, os.Stderr
		if err := fetch.Run(); err != nil {
			return false, fmt.Errorf("fetch kernel %s: %w", k, err)
		}
		kdir := filepath.Join(cache, "kernels", k)
		pkg, err := os.ReadFile(filepath.Join(kdir, "package.txt"))
		if err != nil {
			return false, fmt.Errorf("kernel %s: %w", k, err)
		}
		fields := strings.Fields(string(pkg))
		if len(fields) >= 2 {
			pkg = []byte(fields[0] + " " + fields[1])
		}
		img := filepath.Join(cache, "initramfs", k+".cpio")
		if err := writeInitramfs(img, initramfsSpec{
			Init: initBin, Binaries: cfg.binaries, ModulesDir: filepath.Join(kdir, "modules"), Busybox: cfg.busybox,
			HostFiles: cfg.hostFiles,
		}); err != nil {
			return false, fmt.Errorf("initramfs for %s: %w", k, err)
		}
		prep[i] = &vmResult{kernel: k, pkg: strings.TrimSpace(string(pkg)), logPath: filepath.Join(cache, "logs", k+".log")}
	}

	sem := make(chan struct{}, cfg.parallel)
	var wg sync.WaitGroup
	var outMu sync.Mutex
	for _, r := range prep {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			bootVM(cfg, qemu, cache, r, &outMu)
		}()
	}
	wg.Wait()
	return summarize(os.Stdout, cfg, prep), nil
}

// kernelCmdline builds the command line: kernel options, then the
// payload after "--" with binaries separated by "---" (see init).
func kernelCmdline(cfg runConfig) string {
	// loglevel=4 keeps kernel chatter off the shared console; panic=-1
	// turns a crashed init into a reboot, which -no-reboot turns into a
	// qemu exit instead of a hang.
	words := []string{"console=ttyS0", "loglevel=4", "panic=-1", "oops=panic"}
	words = append(words, strings.Fields(cfg.appendArg)...)
	words = append(words, "--")
	for i, b := range cfg.binaries {
		if i > 0 {
			words = append(words, "---")
		}
		words = append(words, "/bin/"+filepath.Base(b))
		words = append(words, cfg.testArgs...)
	}
	return strings.Join(words, " ")
}

func bootVM(cfg runConfig, qemu, cache string, r *vmResult, outMu *sync.Mutex) {
	kdir := filepath.Join(cache, "kernels", r.kernel)
	args := []string{
		// Plain pc: microvm hangs 5.10. Single-threaded TCG: MTTCG
		// produced a guest oops once on this kind of host.
		"-machine", "pc", "-accel", "tcg,thread=single",
		"-m", cfg.memory, "-smp", fmt.Sprint(cfg.smp),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot",
		// The ELF vmlinux is entered through its PVH note, skipping the
		// slow in-guest decompression of the bzImage.
		"-kernel", filepath.Join(kdir, "vmlinux"),
		"-initrd", filepath.Join(cache, "initramfs", r.kernel+".cpio"),
		"-append", kernelCmdline(cfg),
	}
	logf, err := os.Create(r.logPath)
	if err != nil {
		r.qemuErr = fmt.Errorf("create log: %w", err)
		return
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s %s\n", qemu, strings.Join(quoteArgs(args), " "))

	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.qemuErr = err
		return
	}
	cmd.Stderr = cmd.Stdout // qemu's own errors belong in the same log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.qemuErr = fmt.Errorf("start qemu: %w", err)
		return
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// The serial console emits CRLF.
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintln(logf, line)
		if cfg.verbose {
			outMu.Lock()
			fmt.Printf("[%s] %s\n", r.kernel, line)
			outMu.Unlock()
		}
		switch {
		case strings.Contains(line, marker.Init):
			r.boot = time.Since(start)
			if _, rel, ok := strings.Cut(line, "kernel="); ok {
				r.release = strings.TrimSpace(rel)
			}
		case strings.Contains(line, marker.SetupError):
			r.setupErr = append(r.setupErr, line)
		case strings.Contains(line, marker.Done):
			r.done = true
		case strings.Contains(line, "Kernel panic"):
			r.panicked = true
		}
		if res, ok := marker.ParseResult(line); ok {
			r.results = append(r.results, res)
		}
	}
	err = cmd.Wait()
	r.total = time.Since(start)
	if ctx.Err() == context.DeadlineExceeded {
		r.timedOut = true
		fmt.Fprintf(logf, "# vmtest: killed after %v\n", cfg.timeout)
	} else if err != nil {
		r.qemuErr = fmt.Errorf("qemu: %w", err)
	}
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"'") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

// status explains why a VM failed, or returns "ok".
func (r *vmResult) status(want []string) string {
	switch {
	case r.timedOut:
		return "TIMEOUT"
	case r.qemuErr != nil:
		return "QEMU-ERROR"
	case r.boot == 0:
		return "NO-INIT"
	case r.panicked:
		return "PANIC"
	case len(r.setupErr) > 0:
		return "SETUP-ERROR"
	case !r.done:
		return "CRASH"
	}
	got := map[string]marker.Result{}
	for _, res := range r.results {
		got[res.Name] = res
	}
	for _, name := range want {
		res, ok := got[name]
		switch {
		case !ok:
			return "MISSING-RESULT"
		case res.Exit != 0 || res.Fail > 0:
			return "FAIL"
		}
	}
	return "ok"
}

func summarize(w io.Writer, cfg runConfig, vms []*vmResult) bool {
	var want []string
	for _, b := range cfg.binaries {
		want = append(want, testName(b))
	}
	allOK := true
	var pass, fail, skip int
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "KERNEL\tPACKAGE\tRELEASE\tBINARY\tEXIT\tPASS\tFAIL\tSKIP\tBOOT(s)\tTOTAL(s)\tSTATUS")
	for _, r := range vms {
		st := r.status(want)
		if st != "ok" {
			allOK = false
		}
		byName := map[string]marker.Result{}
		for _, res := range r.results {
			byName[res.Name] = res
		}
		for i, name := range want {
			exit, p, f, s := "-", "-", "-", "-"
			if res, ok := byName[name]; ok {
				exit = fmt.Sprint(res.Exit)
				p, f, s = fmt.Sprint(res.Pass), fmt.Sprint(res.Fail), fmt.Sprint(res.Skip)
				pass, fail, skip = pass+res.Pass, fail+res.Fail, skip+res.Skip
			}
			kernel, pkg, rel, boot, total, status := r.kernel, r.pkg, r.release, fmt.Sprintf("%.1f", r.boot.Seconds()), fmt.Sprintf("%.1f", r.total.Seconds()), st
			if i > 0 { // per-VM columns only on the VM's first row
				kernel, pkg, rel, boot, total, status = "", "", "", "", "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", kernel, pkg, rel, name, exit, p, f, s, boot, total, status)
		}
	}
	tw.Flush()
	for _, r := range vms {
		if st := r.status(want); st != "ok" {
			fmt.Fprintf(w, "%s: %s (log: %s)\n", r.kernel, st, r.logPath)
			for _, e := range r.setupErr {
				fmt.Fprintf(w, "  %s\n", strings.TrimSpace(e))
			}
			if r.qemuErr != nil {
				fmt.Fprintf(w, "  %v\n", r.qemuErr)
			}
		}
	}
	fmt.Fprintln(w, "(PASS/FAIL/SKIP count every --- verdict line, subtests included)")
	fmt.Fprintf(w, "vmtest: %d passed, %d failed, %d skipped\n", pass, fail, skip)
	return allOK
}
