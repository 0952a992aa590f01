package runtime

import (
	"strings"
	"testing"
)

// TestTrustConfig: trust: is trusted or untrusted, anything else an error at its key; http_fetch
// is untrusted unless a tool serving it says otherwise; a built-in can be marked untrusted under
// its own name by replacing it with itself.
func TestTrustConfig(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"tool", "tools:\n  - name: x\n    argv: [ls]\n    description: d\n    trust: maybe\n", "x.yaml:5: tools[0].trust: trust \"maybe\": want trusted or untrusted"},
		{"upstream", "upstreams:\n  up:\n    url: https://mcp.example.com/mcp\n    trust: Untrusted\n", "x.yaml:4: upstreams.up.trust: trust \"Untrusted\": want trusted or untrusted"},
		{"not a string", "tools:\n  - name: x\n    argv: [ls]\n    description: d\n    trust: [untrusted]\n", "x.yaml:5: tools[0].trust: want a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseConfig("x.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	rt := newTestRuntime(t, `tools:
  - {name: fetch_docs, builtin: http_fetch, description: d}
  - {name: fetch_intranet, builtin: http_fetch, description: d, trust: trusted}
  - {name: read_file, replaces: read_file, builtin: read_file, trust: untrusted}
  - {name: lint, argv: [ls], description: d}
  - {name: issues, argv: [ls], description: d, trust: untrusted}
`, "", &fakeBackend{})
	want := map[string]bool{"http_fetch": true, "fetch_docs": true, "fetch_intranet": false, "read_file": true, "lint": false,
		"issues": true, "write_file": false, "run_command": false}
	for name, untrusted := range want {
		tl, ok := rt.Tool(name)
		if !ok || tl.Untrusted() != untrusted {
			t.Errorf("%s: served %v, untrusted %v, want %v", name, ok, ok && tl.Untrusted(), untrusted)
		}
	}
}
