package main

import (
	"reflect"
	"testing"
)

func TestSplitCmdline(t *testing.T) {
	got := splitCmdline(`console=ttyS0 foo="a b" -- /bin/x.test -test.run "A|B C"` + "\n")
	want := []string{"console=ttyS0", "foo=a b", "--", "/bin/x.test", "-test.run", "A|B C"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestParsePayload(t *testing.T) {
	cmds, err := parsePayload(splitCmdline("loglevel=4 -- /bin/a.test -test.v --- /bin/b.test"))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"/bin/a.test", "-test.v"}, {"/bin/b.test"}}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("got %q, want %q", cmds, want)
	}
	if _, err := parsePayload(splitCmdline("loglevel=4 quiet")); err == nil {
		t.Fatal("no error without --")
	}
}
