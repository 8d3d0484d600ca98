package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// InstallEnv is the environment variable that lets Require install missing
// Debian packages (CI sets it; a developer's machine is left alone otherwise).
const InstallEnv = "FTPGATE_INSTALL"

// requiredBinaries maps each binary the lab runs to its Debian package.
var requiredBinaries = map[string]string{
	"ip":        "iproute2",
	"vsftpd":    "vsftpd",
	"curl":      "curl",
	"lftp":      "lftp",
	"nft":       "nftables",
	"tcpdump":   "tcpdump",
	"conntrack": "conntrack",
	"ethtool":   "ethtool",
	"python3":   "python3",
	"openssl":   "openssl",
}

// proftpd's shared libraries that a plain Debian 12 lacks; they are
// extracted next to proftpd instead of installed (proftpd-core conflicts
// with vsftpd, its libraries do not, but extracting keeps the host clean).
// proftpd-mod-crypto brings mod_tls (the FTPS lab), libsodium23 its library.
var proftpdDebs = []string{"proftpd-core", "proftpd-mod-crypto", "libsodium23", "libhiredis0.14", "libmemcached11", "libmemcachedutil2", "libhashkit2", "libpcre2-posix3"}

var installMu sync.Mutex

// Require fails the test unless it runs as root and every binary the lab
// needs is present. With FTPGATE_INSTALL=1 it first installs the missing
// Debian packages with apt-get.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("lab: these tests create network namespaces and must run as root")
	}
	missing := missingPackages()
	if len(missing) == 0 {
		return
	}
	if os.Getenv(InstallEnv) != "1" {
		t.Fatalf("lab: missing Debian packages %s; install them (apt-get install -y %s) or set %s=1",
			strings.Join(missing, ", "), strings.Join(missing, " "), InstallEnv)
	}
	installMu.Lock()
	defer installMu.Unlock()
	if missing = missingPackages(); len(missing) == 0 {
		return
	}
	if err := aptInstall(missing); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if missing = missingPackages(); len(missing) != 0 {
		t.Fatalf("lab: packages %s still missing after apt-get install", strings.Join(missing, ", "))
	}
}

func missingPackages() []string {
	set := map[string]bool{}
	for bin, pkg := range requiredBinaries {
		if _, err := exec.LookPath(bin); err != nil {
			// /usr/sbin may be off PATH for non-login shells.
			if _, err := os.Stat(filepath.Join("/usr/sbin", bin)); err != nil {
				set[pkg] = true
			}
		}
	}
	var pkgs []string
	for p := range set {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	return pkgs
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(buf.String(), 2000))
	}
	return nil
}

func aptInstall(pkgs []string) error {
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	if err := run("", env, "apt-get", "update"); err != nil {
		return err
	}
	return run("", env, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...)
}

// RequireProftpd makes sure proftpd is extracted under .cache/lab/proftpd
// (downloading the .debs with apt-get download when FTPGATE_INSTALL=1) and
// skips the test otherwise.
func RequireProftpd(t testing.TB) {
	t.Helper()
	Require(t)
	root, err := proftpdRoot()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	// mod_tls came later than the rest: a tree extracted without it is
	// extracted again.
	bin := filepath.Join(root, proftpdLast)
	if _, err := os.Stat(bin); err == nil {
		return
	}
	if os.Getenv(InstallEnv) != "1" {
		t.Skipf("lab: proftpd not extracted at %s; set %s=1 to fetch it with apt-get download", root, InstallEnv)
	}
	installMu.Lock()
	defer installMu.Unlock()
	// go test runs packages in parallel processes (tests/lab, tests/e2e):
	// one extracts while the others wait, then finds it done
	unlock, err := lockFile(filepath.Dir(root))
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return
	}
	if err := extractProftpd(root); err != nil {
		t.Fatalf("lab: %v", err)
	}
}

// lockFile takes an exclusive flock on dir/.lock, creating dir if needed.
func lockFile(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// proftpdLast is the file whose presence says the extraction is complete.
const proftpdLast = "usr/lib/proftpd/mod_tls.so"

func extractProftpd(root string) error {
	dl := filepath.Join(filepath.Dir(root), "debs")
	// Start empty so an older version left behind is not extracted too.
	_ = os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dl, err)
	}
	// _apt cannot write into a root-owned work tree; the warning is harmless
	// but running apt-get download as root avoids the sandbox entirely.
	args := append([]string{"-o", "APT::Sandbox::User=root", "download"}, proftpdDebs...)
	if err := run(dl, nil, "apt-get", args...); err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if err := run("", nil, "apt-get", "update"); err != nil {
			return err
		}
		if err := run(dl, nil, "apt-get", args...); err != nil {
			return err
		}
	}
	debs, err := filepath.Glob(filepath.Join(dl, "*.deb"))
	if err != nil || len(debs) == 0 {
		return fmt.Errorf("no .deb downloaded into %s", dl)
	}
	tmp := root + ".tmp"
	_ = os.RemoveAll(tmp)
	for _, d := range debs {
		if err := run("", nil, "dpkg-deb", "-x", d, tmp); err != nil {
			return err
		}
	}
	// Rename last so a half-extracted tree is never mistaken for a good
	// one; an older tree (without mod_tls) goes first.
	_ = os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return fmt.Errorf("move proftpd into place: %w", err)
	}
	return nil
}
