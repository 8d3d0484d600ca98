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
)

// Tools lists the supported client programs.
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
	r.Commands = dataCommands(tool, r.Output)
	if len(r.Commands) > 0 {
		r.Command = r.Commands[len(r.Commands)-1]
	}
	if b, err := os.ReadFile(local); err == nil {
		r.Bytes = int64(len(b))
		r.HashOK = sha256Hex(b) == l.FileSHA256
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
	r.Commands = dataCommands(tool, r.Output)
	if len(r.Commands) > 0 {
		r.Command = r.Commands[len(r.Commands)-1]
	}
	if b, err := os.ReadFile(filepath.Join(l.UploadDir, name)); err == nil {
		r.Bytes = int64(len(b))
		r.HashOK = sha256Hex(b) == sha256Hex(data)
	}
	return r
}

func ftpURL(addr netip.Addr, port int, path string) string {
	return "ftp://" + netip.AddrPortFrom(addr, uint16(port)).String() + path
}

func (l *Lab) runClient(ctx context.Context, tool Tool, mode Mode, family, port int, remote, local string, upload bool) (string, error) {
	server := l.ServerAddr(family)
	var argv []string
	switch tool {
	case Curl:
		argv = []string{"curl", "-v", "-sS", "-g",
			"--connect-timeout", strconv.Itoa(connectTimeout), "--max-time", strconv.Itoa(maxTime),
			"--user", "anonymous:lab@example.org"}
		switch mode {
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
		if upload {
			argv = append(argv, "-T", local, ftpURL(server, port, remote))
		} else {
			argv = append(argv, "-o", local, ftpURL(server, port, remote))
		}
	case Lftp:
		passive, epsv := "on", "off"
		switch mode {
		case EPSV:
			epsv = "on"
		case PORT, EPRT:
			passive = "off"
		}
		xfer := fmt.Sprintf("get %s -o %s", remote, local)
		if upload {
			xfer = fmt.Sprintf("put %s -o %s", local, remote)
		}
		script := strings.Join([]string{
			"set cmd:fail-exit yes",
			"set net:timeout " + strconv.Itoa(connectTimeout),
			"set net:max-retries 1",
			"set net:persist-retries 0",
			"set ftp:ssl-allow no",
			"set ftp:passive-mode " + passive,
			"set ftp:prefer-epsv " + epsv,
			// Otherwise lftp flips to the other mode after a failed data
			// connection and a blocked mode would look like a success.
			"set ftp:auto-passive-mode off",
			"set xfer:clobber on",
			"debug 9",
			"open -u anonymous,lab@example.org " + ftpURL(server, port, ""),
			xfer,
			"bye",
		}, "; ")
		argv = []string{"timeout", "-k", "2", strconv.Itoa(maxTime), "lftp", "-c", script}
	default:
		return "", fmt.Errorf("unknown tool %q", tool)
	}
	return l.Exec(ctx, l.ClientNS, argv...)
}

var (
	curlCmdRE = regexp.MustCompile(`(?m)^> (PASV|EPSV|PORT|EPRT)\b`)
	lftpCmdRE = regexp.MustCompile(`(?m)---> (PASV|EPSV|PORT|EPRT)\b`)
)

// dataCommands extracts the data-connection commands actually sent, from
// curl's "> CMD" verbose lines or lftp's "---> CMD" debug lines.
func dataCommands(tool Tool, out string) []string {
	re := curlCmdRE
	if tool == Lftp {
		re = lftpCmdRE
	}
	var cmds []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		cmds = append(cmds, m[1])
	}
	return cmds
}
