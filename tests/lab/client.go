package lab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ftpgate/ftpgate/tests/ftpmini"
)

// Mode is the FTP data-connection setup command a client is forced to use:
// the same modes as the pure-Go client's.
type Mode = ftpmini.Mode

const (
	PASV = ftpmini.PASV
	EPSV = ftpmini.EPSV
	PORT = ftpmini.PORT
	EPRT = ftpmini.EPRT
)

// Modes lists all four modes.
var Modes = ftpmini.Modes

// Tool is the FTP client program the lab drives.
type Tool string

const (
	Curl Tool = "curl"
	Lftp Tool = "lftp"
	// Python is ftplib (download only; PASV and PORT over IPv4, EPSV and
	// EPRT over IPv6, as ftplib chooses): the NAT and FTPS labs' third client.
	Python Tool = "python"
)

// Tools lists the client programs every lab suite drives.
var Tools = []Tool{Curl, Lftp}

// ErrUnsupported is returned (in Result.Err) for a tool/mode/family
// combination the client program cannot be forced into.
var ErrUnsupported = errors.New("combination not supported by the client")

// Supported reports whether tool can be made to use exactly mode over
// family. PASV and PORT carry IPv4 addresses only (RFC 2428), so curl and
// lftp both switch to EPSV/EPRT on IPv6 on their own. lftp has no switch
// for EPRT: it sends PORT on IPv4 and EPRT only on IPv6.
func Supported(tool Tool, mode Mode, family int) bool {
	if family == 6 && (mode == PASV || mode == PORT) {
		return false
	}
	if tool == Lftp && family == 4 && mode == EPRT {
		return false
	}
	return true
}

// Result is what one transfer did.
type Result struct {
	Tool   Tool
	Mode   Mode
	Family int
	Port   int
	// Commands are the data-connection commands the client sent, in order
	// (e.g. ["EPSV", "PASV"] if it fell back); Command is the last one.
	Commands []string
	Command  string
	// Bytes is the size of the transferred file as it arrived; HashOK
	// whether its SHA-256 matched the source.
	Bytes  int64
	HashOK bool
	// Output is the client's verbose/debug log.
	Output string
	// Err is the client's failure (non-zero exit, timeout), if any.
	Err error
}

// Check returns nil only if the transfer succeeded, the content hash
// matched, and the client sent exactly the requested data command (no
// fallback to another one).
func (r Result) Check() error {
	switch {
	case r.Err != nil:
		return fmt.Errorf("%s %s IPv%d port %d: %w", r.Tool, r.Mode, r.Family, r.Port, r.Err)
	case len(r.Commands) != 1 || r.Command != r.Mode.Command():
		return fmt.Errorf("%s %s IPv%d port %d: client sent data commands %v, want only %s",
			r.Tool, r.Mode, r.Family, r.Port, r.Commands, r.Mode.Command())
	case !r.HashOK:
		return fmt.Errorf("%s %s IPv%d port %d: content hash mismatch (%d bytes arrived)",
			r.Tool, r.Mode, r.Family, r.Port, r.Bytes)
	}
	return nil
}

// Client tools are bounded tightly so a blocked data connection fails in
// seconds instead of stalling the suite.
const (
	connectTimeout = 5
	maxTime        = 20
)

// Download fetches the lab's test file from the server at port with tool,
// forced into mode over family, from the client namespace.
func (l *Lab) Download(ctx context.Context, mode Mode, family, port int, tool Tool) Result {
	r := Result{Tool: tool, Mode: mode, Family: family, Port: port}
	if !Supported(tool, mode, family) {
		r.Err = ErrUnsupported
		return r
	}
	dir, err := os.MkdirTemp(l.Dir, "dl-")
	if err != nil {
		r.Err = fmt.Errorf("create download dir: %w", err)
		return r
	}
	local := filepath.Join(dir, "out.bin")
	r.Output, r.Err = l.runClient(ctx, tool, mode, family, port, "/"+l.FileName, local, false)
	r.Commands = Commands(tool, r.Output)
	if len(r.Commands) > 0 {
		r.Command = r.Commands[len(r.Commands)-1]
	}
	if b, err := os.ReadFile(local); err == nil {
		r.Bytes = int64(len(b))
		r.HashOK = SHA256Hex(b) == l.FileSHA256
	}
	return r
}

// Upload stores a fresh random file of size bytes (0 means 256 KiB) into
// the server's upload directory and checks what arrived on the server.
func (l *Lab) Upload(ctx context.Context, mode Mode, family, port int, tool Tool, size int) Result {
	r := Result{Tool: tool, Mode: mode, Family: family, Port: port}
	if !Supported(tool, mode, family) {
		r.Err = ErrUnsupported
		return r
	}
	if size == 0 {
		size = 256 << 10
	}
	dir, err := os.MkdirTemp(l.Dir, "ul-")
	if err != nil {
		r.Err = fmt.Errorf("create upload dir: %w", err)
		return r
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	local := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		r.Err = fmt.Errorf("write upload source: %w", err)
		return r
	}
	// A unique name: anonymous users may not overwrite files.
	name := "up-" + randHex(6) + ".bin"
	r.Output, r.Err = l.runClient(ctx, tool, mode, family, port, "/upload/"+name, local, true)
	r.Commands = Commands(tool, r.Output)
	if len(r.Commands) > 0 {
		r.Command = r.Commands[len(r.Commands)-1]
	}
	if b, err := os.ReadFile(filepath.Join(l.UploadDir, name)); err == nil {
		r.Bytes = int64(len(b))
		r.HashOK = SHA256Hex(b) == SHA256Hex(data)
	}
	return r
}

func ftpURL(addr netip.Addr, port int, path string) string {
	return "ftp://" + netip.AddrPortFrom(addr, uint16(port)).String() + path
}

func (l *Lab) runClient(ctx context.Context, tool Tool, mode Mode, family, port int, remote, local string, upload bool) (string, error) {
	tr := Transfer{Tool: tool, Mode: mode, Server: netip.AddrPortFrom(l.ServerAddr(family), uint16(port)),
		Remote: remote, Local: local, Upload: upload}
	argv, err := tr.Argv()
	if err != nil {
		return "", err
	}
	return l.Exec(ctx, l.ClientNS, argv...)
}

// TLS is how a client protects its session.
type TLS int

const (
	// NoTLS is cleartext FTP.
	NoTLS TLS = iota
	// ExplicitTLS sends AUTH TLS on the control connection and insists on
	// it (curl --ssl-reqd, lftp ftp:ssl-force, ftplib.FTP_TLS), then
	// protects the data connections too (PROT P).
	ExplicitTLS
	// ImplicitTLS speaks TLS from the control connection's first byte
	// (ftps://, port 990); curl and lftp only.
	ImplicitTLS
)

func (m TLS) String() string {
	switch m {
	case ExplicitTLS:
		return "explicit"
	case ImplicitTLS:
		return "implicit"
	}
	return "clear"
}

// Transfer is one run of a client program: what it fetches or stores,
// where, and how it sets up its data connections.
type Transfer struct {
	Tool Tool
	Mode Mode
	// Server is the control connection's address.
	Server netip.AddrPort
	// Remote is the file's path on the server, Local the local file (for
	// several RETRs, the Nth download is Local.N, N from 0).
	Remote, Local string
	Upload        bool
	// TrustPasvAddr makes the client connect where a 227 says (curl
	// --no-ftp-skip-pasv-ip, lftp ftp:fix-pasv-address false, ftplib
	// trust_server_pasv_ipv4_address) instead of to the control
	// connection's peer: what a server behind NAT needs a helper for.
	TrustPasvAddr bool
	// Count is the number of RETRs on one control connection (Python
	// only); 0 means 1.
	Count int
	// MaxTime bounds the whole run in seconds; 0 means the lab's default.
	MaxTime int
	// TLS protects the session; the server's certificate is not verified
	// (the lab's own, self-signed).
	TLS TLS
	// User and Pass log in; empty means anonymous.
	User, Pass string
}

// Argv is the command line that runs the transfer.
func (tr Transfer) Argv() ([]string, error) {
	maxT := tr.MaxTime
	if maxT == 0 {
		maxT = maxTime
	}
	connT := min(connectTimeout, maxT)
	url := ftpURL(tr.Server.Addr(), int(tr.Server.Port()), tr.Remote)
	user, pass := tr.User, tr.Pass
	if user == "" {
		user, pass = "anonymous", "lab@example.org"
	}
	if tr.TLS == ImplicitTLS {
		url = "ftps" + strings.TrimPrefix(url, "ftp")
	}
	switch tr.Tool {
	case Curl:
		argv := []string{"curl", "-v", "-sS", "-g",
			"--connect-timeout", strconv.Itoa(connT), "--max-time", strconv.Itoa(maxT),
			"--user", user + ":" + pass}
		switch tr.TLS {
		case ExplicitTLS:
			argv = append(argv, "--ssl-reqd", "--insecure")
		case ImplicitTLS:
			argv = append(argv, "--insecure")
		}
		switch tr.Mode {
		case PASV:
			// curl tries EPSV first and silently falls back to PASV;
			// --disable-epsv makes PASV the only command.
			argv = append(argv, "--ftp-pasv", "--disable-epsv")
		case EPSV:
			argv = append(argv, "--ftp-pasv")
		case PORT:
			// "-" means the control connection's local address; EPRT is
			// otherwise tried first.
			argv = append(argv, "--ftp-port", "-", "--disable-eprt")
		case EPRT:
			argv = append(argv, "--ftp-port", "-")
		}
		if tr.TrustPasvAddr {
			// curl ignores the 227 address since 7.74 unless told.
			argv = append(argv, "--no-ftp-skip-pasv-ip")
		}
		if tr.Upload {
			return append(argv, "-T", tr.Local, url), nil
		}
		return append(argv, "-o", tr.Local, url), nil
	case Lftp:
		passive, epsv := "on", "off"
		switch tr.Mode {
		case EPSV:
			epsv = "on"
		case PORT, EPRT:
			passive = "off"
		}
		xfer := fmt.Sprintf("get %s -o %s", tr.Remote, tr.Local)
		if tr.Upload {
			xfer = fmt.Sprintf("put %s -o %s", tr.Local, tr.Remote)
		}
		fix := "on"
		if tr.TrustPasvAddr {
			fix = "off"
		}
		site := ftpURL(tr.Server.Addr(), int(tr.Server.Port()), "")
		lines := []string{
			"set cmd:fail-exit yes",
			"set net:timeout " + strconv.Itoa(connT),
			"set net:max-retries 1",
			"set net:persist-retries 0",
		}
		switch tr.TLS {
		case NoTLS:
			lines = append(lines, "set ftp:ssl-allow no")
		case ExplicitTLS:
			lines = append(lines, "set ftp:ssl-allow yes", "set ftp:ssl-force yes", "set ftp:ssl-protect-data yes",
				"set ssl:verify-certificate no")
		case ImplicitTLS:
			lines = append(lines, "set ftp:ssl-protect-data yes", "set ssl:verify-certificate no")
			site = "ftps" + strings.TrimPrefix(site, "ftp")
		}
		script := strings.Join(append(lines,
			"set ftp:passive-mode "+passive,
			"set ftp:prefer-epsv "+epsv,
			"set ftp:fix-pasv-address "+fix,
			// Otherwise lftp flips to the other mode after a failed data
			// connection and a blocked mode would look like a success.
			"set ftp:auto-passive-mode off",
			"set xfer:clobber on",
			"debug 9",
			"open -u "+user+","+pass+" "+site,
			xfer,
			"bye",
		), "; ")
		return []string{"timeout", "-k", "2", strconv.Itoa(maxT), "lftp", "-c", script}, nil
	case Python:
		if tr.Upload || tr.TLS == ImplicitTLS || (tr.Mode == EPRT || tr.Mode == EPSV) != tr.Server.Addr().Is6() {
			// ftplib picks EPSV/EPRT for IPv6 control connections, and
			// only for them.
			return nil, ErrUnsupported
		}
		count := max(tr.Count, 1)
		// -u: a run the timeout kills still shows how far it got
		return []string{"timeout", "-k", "2", strconv.Itoa(maxT), pythonBin(), "-u", "-c", ftplibScript,
			tr.Server.Addr().String(), strconv.Itoa(int(tr.Server.Port())), strconv.FormatBool(tr.Mode == PASV || tr.Mode == EPSV),
			strconv.FormatBool(tr.TrustPasvAddr), strconv.Itoa(count), tr.Remote, tr.Local, strconv.Itoa(connT),
			strconv.FormatBool(tr.TLS == ExplicitTLS), user, pass}, nil
	}
	return nil, fmt.Errorf("unknown tool %q", tr.Tool)
}

// debianPython is the interpreter of Debian's python3 package (what Require
// installs).
const debianPython = "/usr/bin/python3"

// pythonBin prefers Debian's python3 to whatever PATH finds first: a
// version manager's shim (pyenv) takes a second or more just to start.
func pythonBin() string {
	if _, err := os.Stat(debianPython); err == nil {
		return debianPython
	}
	return "python3"
}

// ftplibScript downloads argv[6] count times over one control connection
// with Python's ftplib; debug level 1 prints each command and reply. With
// tls, FTP_TLS sends AUTH TLS before logging in and PROT P after.
const ftplibScript = `import ftplib, ssl, sys
host, port, pasv, trust, count, remote, local, timeout, tls, user, password = sys.argv[1:]
if tls == "true":
    f = ftplib.FTP_TLS(context=ssl._create_unverified_context(), timeout=int(timeout))
else:
    f = ftplib.FTP(timeout=int(timeout))
f.set_debuglevel(1)
f.connect(host, int(port))
f.login(user, password)
if tls == "true":
    f.prot_p()
f.set_pasv(pasv == "true")
f.trust_server_pasv_ipv4_address = trust == "true"
for i in range(int(count)):
    name = local if int(count) == 1 else "%s.%d" % (local, i)
    with open(name, "wb") as out:
        f.retrbinary("RETR " + remote, out.write)
f.quit()
`

var (
	curlCmdRE   = regexp.MustCompile(`(?m)^> (PASV|EPSV|PORT|EPRT)\b`)
	lftpCmdRE   = regexp.MustCompile(`(?m)---> (PASV|EPSV|PORT|EPRT)\b`)
	pythonCmdRE = regexp.MustCompile(`(?m)^\*cmd\* '(PASV|EPSV|PORT|EPRT)\b`)

	curlBannerRE   = regexp.MustCompile(`(?m)^< 220[ -](.*?)\r?$`)
	lftpBannerRE   = regexp.MustCompile(`(?m)<--- 220[ -](.*?)\r?$`)
	pythonBannerRE = regexp.MustCompile(`(?m)^\*resp\* '220[ -](.*)'\r?$`)
)

// Commands extracts the data-connection commands actually sent, from
// curl's "> CMD" verbose lines, lftp's "---> CMD" debug lines or ftplib's
// "*cmd* 'CMD" lines.
func Commands(tool Tool, out string) []string {
	var cmds []string
	for _, m := range pick(tool, curlCmdRE, lftpCmdRE, pythonCmdRE).FindAllStringSubmatch(out, -1) {
		cmds = append(cmds, m[1])
	}
	return cmds
}

// Banner is the text of the server's 220 greeting in a client's log.
func Banner(tool Tool, out string) string {
	m := pick(tool, curlBannerRE, lftpBannerRE, pythonBannerRE).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

func pick[T any](tool Tool, curl, lftp, python T) T {
	switch tool {
	case Lftp:
		return lftp
	case Python:
		return python
	}
	return curl
}
