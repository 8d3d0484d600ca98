package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// Row is one line of the result table: a median, its baseline and their ratio.
type Row struct {
	Section   string  `json:"section"`
	Case      string  `json:"case"`
	Value     float64 `json:"value"`
	Unit      string  `json:"unit"`
	Baseline  string  `json:"baseline,omitempty"`
	BaseValue float64 `json:"baseline_value,omitempty"`
	Ratio     float64 `json:"ratio,omitempty"`
	Target    string  `json:"target,omitempty"`
	Verdict   string  `json:"verdict,omitempty"` // meets, misses or empty
	Note      string  `json:"note,omitempty"`
}

var (
	resMu   sync.Mutex
	results []Row
	notes   = map[string][]string{}
	extra   = map[string]any{}
	started = time.Now()
)

func addRow(r Row) {
	resMu.Lock()
	defer resMu.Unlock()
	results = append(results, r)
}

func addNote(section, format string, args ...any) {
	resMu.Lock()
	defer resMu.Unlock()
	notes[section] = append(notes[section], fmt.Sprintf(format, args...))
}

func addExtra(key string, v any) {
	resMu.Lock()
	defer resMu.Unlock()
	extra[key] = v
}

// target encodes "ratio <= x" (max) or "ratio >= x" (min) and its verdict.
type target struct {
	op string
	x  float64
}

func atMost(x float64) *target  { return &target{"<=", x} }
func atLeast(x float64) *target { return &target{">=", x} }

func (t *target) apply(r *Row) {
	if t == nil {
		return
	}
	r.Target = fmt.Sprintf("%s %.2f", t.op, t.x)
	if math.IsNaN(r.Ratio) || r.Ratio == 0 {
		r.Verdict = "n/a"
		return
	}
	ok := r.Ratio <= t.x
	if t.op == ">=" {
		ok = r.Ratio >= t.x
	}
	r.Verdict = map[bool]string{true: "meets", false: "MISSES"}[ok]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// repoRoot is the module root (the benchmarks run in bench/).
func repoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return wd
}

func machine() map[string]string {
	m := map[string]string{"nproc": fmt.Sprint(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", repoRoot(), "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		m["commit"] = strings.TrimSpace(string(out))
	}
	return m
}

func fmtVal(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// cells are a row's columns as the text and markdown tables print them.
func (r Row) cells() []string {
	ratio := "-"
	if r.Ratio != 0 {
		ratio = fmt.Sprintf("%.3f", r.Ratio)
	}
	bv := "-"
	if r.Baseline != "" {
		bv = fmtVal(r.BaseValue)
	}
	return []string{r.Section, r.Case, fmtVal(r.Value), r.Unit, orDash(r.Baseline), bv, ratio, orDash(r.Target), orDash(r.Verdict)}
}

func report() {
	resMu.Lock()
	defer resMu.Unlock()
	wall := time.Since(started)
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "section\tcase\tmedian\tunit\tbaseline\tbaseline median\tratio\ttarget\tverdict")
	for _, r := range results {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	tw.Flush()
	fmt.Println()
	fmt.Print(sb.String())
	for _, sec := range sortedKeys(notes) {
		for _, n := range notes[sec] {
			fmt.Printf("note [%s]: %s\n", sec, n)
		}
	}
	fmt.Printf("wall time: %s\n", wall.Round(time.Second))

	// markdown copy for docs/benchmarks.md
	var md strings.Builder
	md.WriteString("| section | case | median | unit | baseline | baseline median | ratio | target | verdict |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&md, "| %s |\n", strings.Join(r.cells(), " | "))
	}
	for _, sec := range sortedKeys(notes) {
		for _, n := range notes[sec] {
			fmt.Fprintf(&md, "\n- [%s] %s", sec, n)
		}
	}
	md.WriteString("\n")

	dir := filepath.Join(repoRoot(), "out", "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench: ", err)
		return
	}
	doc := map[string]any{
		"machine":      machine(),
		"command":      "make bench",
		"args":         os.Args,
		"started":      started.UTC().Format(time.RFC3339),
		"wall_seconds": wall.Seconds(),
		"rows":         results,
		"notes":        notes,
		"extra":        extra,
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	_ = os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644)
	_ = os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644)
	fmt.Printf("results: %s and results.md\n", filepath.Join(dir, "results.json"))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(results) > 0 {
		report()
	}
	os.Exit(code)
}

// once runs a section a single time even when the testing package calls the
// benchmark function for several b.N (-benchtime 2x calls it with 1, then 2).
var sectionsDone sync.Map

func onlyOnce(b *testing.B, name string) bool {
	if _, loaded := sectionsDone.LoadOrStore(name, true); loaded {
		return false
	}
	return true
}

// needBPF skips or fails (FTPGATE_REQUIRE_BPF=1) when err says BPF is unusable.
func needRoot(b *testing.B) {
	if os.Geteuid() != 0 {
		if os.Getenv("FTPGATE_REQUIRE_BPF") == "1" {
			b.Fatal("benchmarks need root")
		}
		b.Skip("benchmarks need root")
	}
}
