package main

import (
	"os"
	"testing"
)

func TestDetach(t *testing.T) {
	f := newFixture(t)
	// a running daemon holds the pin dir
	r := f.cmd([]string{"detach"})
	oneLine(t, r)
	f.dp.Close()
	if r := f.cmd([]string{"detach"}); r.code != 0 {
		t.Fatalf("detach: %s", r.stderr)
	}
	if _, err := os.Stat(f.pinDir); !os.IsNotExist(err) {
		t.Fatalf("pin dir remains: %v", err)
	}
	// idempotent
	if r := f.cmd([]string{"detach"}); r.code != 0 {
		t.Fatalf("second detach: %s", r.stderr)
	}
	// listings now explain what is missing, in one line
	oneLine(t, f.cmd([]string{"expectations"}))
}
