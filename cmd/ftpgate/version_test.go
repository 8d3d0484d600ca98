package main

import (
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/loader"
)

func TestVersion(t *testing.T) {
	r := ftpgate("version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ftpgate "+loader.Version+" (go") {
		t.Fatalf("version: %d %q", r.code, r.stdout)
	}
}
