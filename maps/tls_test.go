package maps

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseTLSRange(t *testing.T) {
	good := map[string]TLSRange{
		"198.51.100.2:30000-30099":        {netip.MustParseAddr("198.51.100.2"), 30000, 30099},
		"[2001:db8::2]:30000-30099":       {netip.MustParseAddr("2001:db8::2"), 30000, 30099},
		"[::ffff:198.51.100.2]:1024-1025": {netip.MustParseAddr("198.51.100.2"), 1024, 1025},
		"203.0.113.9:1024-65535":          {netip.MustParseAddr("203.0.113.9"), 1024, 65535},
		"[2001:db8:0::2]:40000-40000":     {netip.MustParseAddr("2001:db8::2"), 40000, 40000},
	}
	for in, want := range good {
		got, err := ParseTLSRange(in)
		if err != nil || got != want {
			t.Errorf("ParseTLSRange(%q) = %v, %v; want %v", in, got, err, want)
		}
		if in == "198.51.100.2:30000-30099" || in == "[2001:db8::2]:30000-30099" {
			if got.String() != in {
				t.Errorf("String() = %q, want %q", got.String(), in)
			}
		}
	}
	bad := map[string]string{
		"198.51.100.2":                "no port range",
		"198.51.100.2:30000":          "no range (LO-HI)",
		"198.51.100.2:30099-30000":    "LO is above HI",
		"198.51.100.2:0-10":           "ports are 1-65535",
		"198.51.100.2:1-70000":        "ports are 1-65535",
		"198.51.100.2:a-b":            "ports are 1-65535",
		"198.51.100.2:990-990":        "ports below 1024 are system services",
		"198.51.100.2:1000-30000":     "ports below 1024 are system services",
		"2001:db8::2:30000-30099":     "an IPv6 address goes in brackets",
		"[198.51.100.2]:30000-30099":  "an IPv4 address goes without brackets",
		"[2001:db8::2:30000-30099":    "unbalanced brackets",
		"server.example:30000-30099":  "not an IP address",
		"0.0.0.0:30000-30099":         "not a server's address",
		"[fe80::1%eth0]:30000-30099":  "not an IP address",
		"198.51.100.0/24:30000-30099": "not an IP address",
	}
	for in, why := range bad {
		_, err := ParseTLSRange(in)
		if err == nil {
			t.Errorf("ParseTLSRange(%q) accepted", in)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, why) || !strings.Contains(msg, "write SERVER:LO-HI") || strings.Contains(msg, "\n") {
			t.Errorf("ParseTLSRange(%q): %q does not say %q and what to write, on one line", in, msg, why)
		}
	}
}

func TestTLSStateNames(t *testing.T) {
	for s, want := range map[TLSState]string{TLSNone: "none", TLSAuth: "auth", TLSImplicit: "implicit", 9: "tls(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", uint8(s), s.String(), want)
		}
	}
}
