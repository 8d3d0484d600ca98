// Package attack reproduces the attacks of issue #11 in a real netns lab
// (client — gateway — server, real vsftpd) against ftpgate and, on the same
// topology and traffic, against the kernel's own FTP helper (nftables
// `ct helper`, default-deny forward chain) with strict and with loose
// reverse-path filtering. Every test asserts the safe outcome for ftpgate;
// the kernel's outcomes are recorded beside it, never asserted.
//
// With FTPGATE_ATTACK_REPORT=FILE the run writes the side-by-side table as
// a markdown fragment (docs/trust.md holds a copy).
package attack

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ftpgate/ftpgate/tests/lab"
)

// ReportEnv names the file the outcome table is written to.
const ReportEnv = "FTPGATE_ATTACK_REPORT"

func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBuilt()
	if path := os.Getenv(ReportEnv); path != "" && len(outcomes.rows) > 0 {
		if err := os.WriteFile(path, []byte(outcomes.markdown()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "attack: write report: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// outcome is what one attack did to one target.
type outcome struct {
	// Safe: the attacker was not admitted and the attacked session (if
	// any) still transferred.
	Safe bool
	// Detail says what was observed, for the table and the log.
	Detail string
}

func (o outcome) word() string {
	if o.Safe {
		return "holds"
	}
	return "**fails**"
}

// results collects outcomes across parallel subtests, keyed by attack then target.
type results struct {
	mu    sync.Mutex
	rows  map[string]map[string]outcome
	notes map[string]string
}

var outcomes = &results{rows: map[string]map[string]outcome{}, notes: map[string]string{}}

func (r *results) record(attack, target string, o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rows[attack] == nil {
		r.rows[attack] = map[string]outcome{}
	}
	r.rows[attack][target] = o
}

func (r *results) note(attack, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes[attack] = text
}

func (r *results) markdown() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	// a target that ran nowhere (a flag this build lacks) has no column
	var cols []target
	for _, tg := range targets {
		for _, row := range r.rows {
			if _, ok := row[tg.name]; ok {
				cols = append(cols, tg)
				break
			}
		}
	}
	var b strings.Builder
	b.WriteString("| attack |")
	for _, tg := range cols {
		b.WriteString(" " + tg.title + " |")
	}
	b.WriteString(" notes |\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	names := make([]string, 0, len(r.rows))
	for a := range r.rows {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		b.WriteString("| " + cellText(a) + " |")
		for _, tg := range cols {
			o, ok := r.rows[a][tg.name]
			cell := "not run"
			if ok {
				cell = o.word() + ": " + cellText(o.Detail)
			}
			b.WriteString(" " + cell + " |")
		}
		b.WriteString(" " + cellText(r.notes[a]) + " |\n")
	}
	return b.String()
}

// cellText escapes what would end a markdown table cell.
func cellText(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// TestReportTable: every row of the generated table has as many cells as
// its header, whatever the names and details hold.
func TestReportTable(t *testing.T) {
	r := &results{rows: map[string]map[string]outcome{}, notes: map[string]string{}}
	r.record("x EPRT |2|", "ftpgate", outcome{Detail: "a|b"})
	r.record("x EPRT |2|", "nf-strict", outcome{Safe: true, Detail: "ok"})
	r.note("x EPRT |2|", "n|n")
	lines := strings.Split(strings.TrimSpace(r.markdown()), "\n")
	cells := func(l string) int { return strings.Count(strings.ReplaceAll(l, `\|`, ""), "|") }
	if len(lines) != 3 || cells(lines[0]) != 5 || cells(lines[1]) != 5 || cells(lines[2]) != 5 {
		t.Fatalf("table:\n%s", strings.Join(lines, "\n"))
	}
}
