package natlab

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// report renders the side-by-side table: a row a case, a column a mode.
func report(cases []natCase, runs []*modeRun, logErr error, newLines []string, took time.Duration) string {
	var b strings.Builder
	b.WriteString("| case | session | ")
	for _, r := range runs {
		b.WriteString(string(r.mode) + " | ")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(runs)) + "\n")
	for _, c := range cases {
		fmt.Fprintf(&b, "| `%s` | %s | ", c.name, cell(c.what))
		for _, r := range runs {
			b.WriteString(r.cell(c.name) + " | ")
		}
		b.WriteString("\n")
	}
	b.WriteString("| **passed** | | ")
	for _, r := range runs {
		if r.lab == nil {
			b.WriteString("— | ")
			continue
		}
		n := 0
		for _, o := range r.results {
			if o.pass {
				n++
			}
		}
		fmt.Fprintf(&b, "**%d/%d** | ", n, len(cases))
	}
	b.WriteString("\n| conntrack INVALID (forward chain counter) | | ")
	for _, r := range runs {
		if r.lab == nil {
			b.WriteString("— | ")
			continue
		}
		fmt.Fprintf(&b, "%d | ", r.invalid)
	}
	b.WriteString("\n| time for the mode's cases | | ")
	for _, r := range runs {
		if r.lab == nil {
			b.WriteString("— | ")
			continue
		}
		fmt.Fprintf(&b, "%.1f s | ", r.elapsed.Seconds())
	}
	b.WriteString("\n\n")
	for _, r := range runs {
		if r.skip != "" {
			fmt.Fprintf(&b, "- %s not run: %s.\n", r.mode, r.skip)
		}
		if len(r.counters) > 0 {
			var kv []string
			for k, v := range r.counters {
				kv = append(kv, fmt.Sprintf("%s %d", k, v))
			}
			sort.Strings(kv)
			fmt.Fprintf(&b, "- %s: ftpgate's non-zero counters after the cases: %s.\n", r.mode, strings.Join(kv, ", "))
		}
	}
	switch {
	case logErr != nil:
		fmt.Fprintf(&b, "- Kernel log not checked: %v.\n", logErr)
	case len(newLines) == 0:
		b.WriteString("- Kernel log: no new netfilter lines during the run.\n")
	default:
		fmt.Fprintf(&b, "- Kernel log: %d new netfilter lines, e.g. `%s`.\n", len(newLines), newLines[0])
	}
	fmt.Fprintf(&b, "- Whole run (labs built, every mode's cases, in parallel): %.1f s; %s.\n",
		took.Seconds(), time.Now().UTC().Format("2006-01-02"))
	return b.String()
}

func (r *modeRun) cell(name string) string {
	if r.lab == nil {
		return "—"
	}
	o := r.results[name]
	s := "fail: " + o.note
	if o.pass {
		s = "pass"
		if o.note != "" {
			s += " (" + o.note + ")"
		}
	}
	if o.invalid != 0 {
		s += fmt.Sprintf(" [INVALID +%d]", o.invalid)
	}
	return cell(s)
}

// cell makes s fit one table cell.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 110 {
		s = s[:107] + "..."
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// TestRulesetInDocs: docs/nat.md shows operators the ruleset the lab
// really runs.
func TestRulesetInDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/nat.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mode{Kernel, FtpgateNAT} {
		if rs := rulesetFor(m).NFT(); !strings.Contains(string(doc), rs) {
			t.Errorf("docs/nat.md lacks the %s ruleset the lab loads:\n%s", m, rs)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if rs := operatorRuleset(); !strings.Contains(string(readme), rs) {
		t.Errorf("README.md's NAT section lacks the ruleset the lab loads with ftpgate --nat (lab-only rules left out, indented as a code block):\n%s", rs)
	}
}

// operatorRuleset is the ftpgate-nat ruleset as README.md shows it: without
// the rules marked "# lab only" (the comment and the rule after it), as an
// indented code block.
func operatorRuleset() string {
	var b strings.Builder
	skip := false
	for _, l := range strings.SplitAfter(rulesetFor(FtpgateNAT).NFT(), "\n") {
		switch {
		case strings.Contains(l, "# lab only"):
			skip = true
		case skip:
			skip = false
		case strings.TrimSpace(l) == "":
			b.WriteString(l)
		default:
			b.WriteString("    " + l)
		}
	}
	return b.String()
}
