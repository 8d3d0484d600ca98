package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
)

// suggestionRoots hold the Go code whose messages may tell the operator
// what to run.
var suggestionRoots = []string{"../../cmd", "../../loader", "../../maps", "../../internal"}

var (
	// a command line the text suggests: `ftpgate ...` in backticks
	quotedCommand = regexp.MustCompile("`(ftpgate(?: [^`]*)?)`")
	// ftpgate followed by a flag or a command, outside backticks
	bareCommand = regexp.MustCompile(`(?:^|[^\x60\w/-])ftpgate (-\S+|[a-z]+)`)
	formatVerb  = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)
	// a placeholder (NAME, DIR, a format verb) given to a typed flag
	placeholderValue = regexp.MustCompile(`^invalid value "[A-Z][A-Z_.]*" for flag`)
)

// TestSuggestedCommandsParse: every command line that a string in the code
// suggests (an error's remedy, a description) parses with the real command
// tree: its commands exist, its flags belong to them, and it gives arguments
// only to a command that takes them. A suggestion is written in backticks;
// a command named outside them is reported, so none escapes the check.
func TestSuggestedCommandsParse(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	commandNames := map[string]bool{}
	parseOnly(app.Commands, commandNames)
	found := 0
	for _, root := range suggestionRoots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			for _, lit := range stringLiterals(t, path) {
				for _, m := range quotedCommand.FindAllStringSubmatch(lit.text, -1) {
					found++
					if err := parseSuggestion(app, m[1]); err != nil {
						t.Errorf("%s: suggests `%s`, which does not parse: %v", lit.pos, m[1], err)
					}
				}
				for _, m := range bareCommand.FindAllStringSubmatch(quotedCommand.ReplaceAllString(lit.text, ""), -1) {
					if strings.HasPrefix(m[1], "-") || commandNames[m[1]] {
						t.Errorf("%s: %q names a command outside backticks: write `ftpgate %s ...` so that this test checks it", lit.pos, strings.TrimSpace(m[0]), m[1])
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if found < 5 {
		t.Fatalf("found only %d suggested commands: is the scan looking in the right place?", found)
	}
}

// parseSuggestion parses a suggested command line with app, made by
// parseOnly; placeholders stand for values.
func parseSuggestion(app *cli.App, line string) error {
	line = formatVerb.ReplaceAllString(line, "X")
	err := app.Run(flagsFirst(app, strings.Fields(line)))
	if err != nil && placeholderValue.MatchString(err.Error()) {
		return nil
	}
	return err
}

// TestIPNetnsExecSuggestsRun: run under `ip netns exec` is refused (its
// pins would vanish), with a command that does what was meant and parses.
func TestIPNetnsExecSuggestsRun(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "ip netns exec needs root")
	}
	ns := nettest.VethNS(t, "fgx", "fx0", "fx1")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestMainHelper$", "--",
		"run", "--iface", "fx0", "--pin-dir", filepath.Join(nettest.BPFFS(t), "ftpgate"), "--state-dir", t.TempDir())
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("run under ip netns exec succeeded:\n%s", out)
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "ip netns exec") {
		t.Fatalf("want one line about ip netns exec, got:\n%s", out)
	}
	m := quotedCommand.FindAllStringSubmatch(msg, -1)
	if len(m) == 0 {
		t.Fatalf("no command suggested: %s", msg)
	}
	app := newApp(io.Discard, io.Discard)
	parseOnly(app.Commands, map[string]bool{})
	for _, c := range m {
		if err := parseSuggestion(app, c[1]); err != nil {
			t.Errorf("suggests `%s`, which does not parse: %v", c[1], err)
		}
	}
	if !strings.Contains(msg, "`ftpgate run --netns NAME`") {
		t.Errorf("does not suggest `ftpgate run --netns NAME`: %s", msg)
	}
}

// helperEnv makes the test binary run as ftpgate, with the arguments after
// "--", in TestMainHelper.
const helperEnv = "FTPGATE_TEST_AS_MAIN"

func TestMainHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("runs only as a helper process")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(append([]string{"ftpgate"}, args...), os.Stdout, os.Stderr))
}

// parseOnly makes every command check its arguments and do nothing else, and
// records the commands' names.
func parseOnly(cmds []*cli.Command, names map[string]bool) {
	for _, c := range cmds {
		for _, n := range c.Names() {
			names[n] = true
		}
		c.Before = nil
		c.Action = func(c *cli.Context) error {
			if c.NArg() > 0 && c.Command.ArgsUsage == "" {
				return fmt.Errorf("%s takes no arguments, given %q", c.Command.FullName(), c.Args().Slice())
			}
			return nil
		}
		parseOnly(c.Subcommands, names)
	}
}

type literal struct {
	pos  token.Position
	text string
}

func stringLiterals(t *testing.T, path string) []literal {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []literal
	ast.Inspect(f, func(n ast.Node) bool {
		if e, ok := n.(ast.Expr); ok {
			if s, ok := constantString(e); ok {
				out = append(out, literal{fset.Position(e.Pos()), s})
				return false
			}
		}
		return true
	})
	return out
}

// constantString is the text of a string literal, or of literals joined
// with +, so that a message split over lines is read whole.
func constantString(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok1 := constantString(e.X)
		y, ok2 := constantString(e.Y)
		return x + y, ok1 && ok2
	case *ast.ParenExpr:
		return constantString(e.X)
	}
	return "", false
}
