package egress

import (
	"strings"
	"testing"
)

func TestParseAllow(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		err     string // "" valid; else a substring of the error
	}{
		{"modules.example.com", ""},
		{"*.files.example.net:443", ""},
		{"Registry.Example.COM.", ""},
		{"bücher.example", ""},
		{"*.xn--bcher-kva.example:8443", ""},
		{"", "empty pattern"},
		{"*", "want"},
		{"*.", "empty host"},
		{"http://example.com", "not a URL"},
		{"example.com/path", "not a URL"},
		{"user@example.com", "not a URL"},
		{"example.com:0", "from 1 to 65535"},
		{"example.com:65536", "from 1 to 65535"},
		{"example.com:https", "from 1 to 65535"},
		{"example.com:+443", "from 1 to 65535"},
		{"*example.com", "leading label"},
		{"a.*.example.com", "leading label"},
		{"**.example.com", "leading label"},
		{"a..example.com", "empty label"},
		{"10.0.0.1", "IP addresses are never allowed"},
		{"10.0.0.1:443", "IP addresses are never allowed"},
		{"[::1]:443", "IP addresses are never allowed"},
		{"::1", "IP addresses are never allowed"},
		{"2130706433", "IP addresses are never allowed"},
		{"0x7f.1", "IP addresses are never allowed"},
		{"127.1", "IP addresses are never allowed"},
		{"*.10.0.0.1", "IP addresses are never allowed"},
		{"exa mple.com", "not a URL"},
		{"exa_mple.com", "not a valid host name"},
	} {
		err := ParseAllow([]string{tc.pattern})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.pattern, err)
		case tc.err != "" && err == nil:
			t.Errorf("%q: accepted, want an error containing %q", tc.pattern, tc.err)
		case tc.err != "" && !strings.Contains(err.Error(), tc.err):
			t.Errorf("%q: error %q, want it to contain %q", tc.pattern, err, tc.err)
		}
	}
	// Every bad pattern is reported, with its index.
	err := ParseAllow([]string{"ok.example", "1.2.3.4", "ok2.example", "http://x"})
	if err == nil || !strings.Contains(err.Error(), "allow[1]") || !strings.Contains(err.Error(), "allow[3]") {
		t.Errorf("want both bad patterns reported by index, got %v", err)
	}
}

func TestAllowMatch(t *testing.T) {
	a, err := compileAllow([]string{"modules.example.com", "*.files.example.net:443", "api.example.org:8443", "bücher.example", "xn--caf-dma.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		port int
		want bool
	}{
		{"modules.example.com", 443, true},
		{"modules.example.com", 80, true},
		{"MODULES.Example.Com", 443, true},
		{"modules.example.com.", 443, true},
		{"modules.example.com", 8080, false}, // no port in the pattern: 80 and 443 only
		{"modules.example.com", 22, false},
		{"evil.modules.example.com", 443, false}, // exact means exact
		{"modules.example.com.evil.net", 443, false},
		{"a.files.example.net", 443, true},
		{"a.b.files.example.net", 443, true},
		{"files.example.net", 443, false}, // *.suffix is not the bare suffix
		{"evilfiles.example.net", 443, false},
		{"a.files.example.net", 80, false}, // the pattern names 443 only
		{"api.example.org", 8443, true},
		{"api.example.org", 443, false},
		{"bücher.example", 443, true},              // Unicode form of the listed name
		{"xn--bcher-kva.example", 443, true},       // its punycode
		{"BÜCHER.example", 443, true},              // case-folded
		{"café.example", 443, true},                // pattern written in punycode
		{"bucher.example", 443, false},             // a different name
		{"xn--bcher-kva.example.evil", 443, false}, // suffix trick on the punycode
		{"mоdules.example.com", 443, false},        // Cyrillic 'о': a homograph, other punycode
	} {
		n, err := canonicalHost(tc.host)
		got := err == nil && a.match(n, tc.port)
		if got != tc.want {
			t.Errorf("%s:%d: allowed=%v, want %v (canonical %q, %v)", tc.host, tc.port, got, tc.want, n, err)
		}
	}
}

func TestCanonicalHostRefusesAddresses(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "::1", "[::1]", "fe80::1%eth0", "2130706433", "0x7f000001", "0x7f.1", "127.1", "017700000001", "169.254.169.254.", "1.2.3.4."} {
		if n, err := canonicalHost(h); err != errIPLiteral {
			t.Errorf("%q: got %q, %v; want errIPLiteral", h, n, err)
		}
	}
	for _, h := range []string{"", ".", "a..b", "exa mple.com", "-bad.example", "a\x00b.example"} {
		if n, err := canonicalHost(h); err == nil {
			t.Errorf("%q: accepted as %q", h, n)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		def  int
		host string
		port int
		ok   bool
	}{
		{"a.example:443", 0, "a.example", 443, true},
		{"a.example", 0, "", 0, false},
		{"a.example", 80, "a.example", 80, true},
		{"[::1]:443", 0, "::1", 443, true},
		{"[::1]", 80, "::1", 80, true},
		{"a.example:0", 0, "", 0, false},
		{"a.example:", 80, "", 0, false},
		{"a.example:99999", 0, "", 0, false},
	} {
		h, p, err := splitHostPort(tc.in, tc.def)
		if (err == nil) != tc.ok || tc.ok && (h != tc.host || p != tc.port) {
			t.Errorf("%q: got %q %d %v", tc.in, h, p, err)
		}
	}
}
