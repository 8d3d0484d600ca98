package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigFileUnknownKey: a key of run's config file that no flag reads is
// an error naming it and the key meant, not a setting silently left at its
// default. (--xdp-mode bogus stops run before it attaches, should the key
// be ignored.)
func TestConfigFileUnknownKey(t *testing.T) {
	cases := map[string]string{
		"ftpport: [2121]\n":          `unknown key "ftpport" in %s: did you mean "ftp-port"?`,
		"allow_ports: [21]\n":        `unknown key "allow_ports" in %s: did you mean "allow-port"?`,
		"dryrun: true\n":             `unknown key "dryrun" in %s: did you mean "dry-run"?`,
		"pin-dir: /sys/fs/bpf/x\n":   `"pin-dir" in %s is read from the command line only: give --pin-dir`,
		"zzzzzzzzzzzzzzzzzzz: 1\n":   `unknown key "zzzzzzzzzzzzzzzzzzz" in %s: the keys are the flags of ` + "`ftpgate run --help`",
		"iface: [lo]\n- not a map\n": `%s: yaml: line 1:`,
		"- iface\n- lo\n":            `%s: the top level must map flag names to values (ftp-port: [21])`,
		"\"\": 1\n":                  `unknown key "" in %s`,
		// altsrc reads the first document only
		"ftp-port: [21]\n---\nftpport: [2121]\n": `%s: more than one YAML document (---): put every setting in one`,
	}
	for body, want := range cases {
		t.Run(strings.Fields(body)[0], func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ftpgate.yaml")
			if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			r := ftpgate("run", "--config", file, "--iface", "lo", "--xdp-mode", "bogus")
			oneLine(t, r)
			if want := strings.Replace(want, "%s", file, 1); !strings.Contains(r.stderr, want) {
				t.Errorf("config file %q: error %q does not say %q", body, r.stderr, want)
			}
		})
	}
}

// TestShippedConfigKeys: every key of deploy/ftpgate.yaml, the commented-out
// examples too, is one that run reads from its config file.
func TestShippedConfigKeys(t *testing.T) {
	b, err := os.ReadFile("../../deploy/ftpgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys := regexp.MustCompile(`(?m)^(?:# ?)?([a-z][a-z-]*):(?: \S+)?$`).FindAllStringSubmatch(string(b), -1)
	if len(keys) < 5 {
		t.Fatalf("found only %d keys in deploy/ftpgate.yaml", len(keys))
	}
	valid := fileKeys(runCommand().Flags)
	for _, k := range keys {
		if !valid[k[1]] {
			t.Errorf("deploy/ftpgate.yaml: %q is not a key run reads", k[1])
		}
	}
}
