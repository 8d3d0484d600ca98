package marker

import (
	"fmt"
	"testing"
)

func TestCounterCountsSubtestsAcrossWrites(t *testing.T) {
	var c Counter
	out := "=== RUN   TestA\n--- PASS: TestA (0.00s)\n--- FAIL: TestB (0.00s)\n    --- SKIP: TestB/sub (0.00s)\n" +
		"    --- PASS: TestB/ok (0.00s)\n--- PASS not a verdict\nPASS\n--- SKIP: TestC (0.00s)"
	// Split into odd-sized writes: verdicts must be counted even when a
	// line arrives in pieces.
	for i := 0; i < len(out); i += 7 {
		fmt.Fprint(&c, out[i:min(i+7, len(out))])
	}
	c.Flush()
	if c.Pass != 2 || c.Fail != 1 || c.Skip != 2 {
		t.Fatalf("pass=%d fail=%d skip=%d, want 2 1 2", c.Pass, c.Fail, c.Skip)
	}
}

func TestResultRoundTrip(t *testing.T) {
	want := Result{Name: "bpf", Exit: 1, Pass: 3, Fail: 2, Skip: 1}
	// Kernel messages can land on the same console line.
	got, ok := ParseResult("[   1.0] something " + want.String() + "\r")
	if !ok || got != want {
		t.Fatalf("ParseResult = %+v, %v", got, ok)
	}
	if _, ok := ParseResult("VMTEST-DONE"); ok {
		t.Fatal("parsed a non-result line")
	}
}
