package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestPolicyEvalSession: --session-json is the session's history, so a chain rule can be
// tried by hand, and the labels label_if gives are in the output.
func TestPolicyEvalSession(t *testing.T) {
	taint := examples + "taint.json"
	tests := []struct {
		name    string
		args    []string
		code    int
		verdict string
		rule    string
		msg     string
		labels  []string
	}{
		{"clean session", []string{"--tool", "write_file", "--args", `{"path":"src/a.go","content":"x"}`}, 0, "allow", "/tools/write_file", "", nil},
		{"tainted session", []string{"--tool", "write_file", "--args", `{"path":"src/a.go","content":"x"}`,
			"--session-json", `{"tainted":true,"tainted_by":["http_fetch"]}`}, 4, "approve", "/tools/write_file/approve_if/session.tainted-eq", "from http_fetch;", nil},
		{"secret read", []string{"--tool", "read_file", "--args", `{"path":"secrets/k.pem"}`}, 0, "allow", "/tools/read_file", "", []string{"secret"}},
		{"fetch after a secret", []string{"--tool", "http_fetch", "--args", `{"url":"https://docs.acme.com/"}`,
			"--session-json", `{"labels":["secret"],"tools":["read_file"]}`}, 3, "deny", "/tools/http_fetch/deny_if/session.labels-contains", "read secrets (secret)", nil},
		{"budget", []string{"--tool", "read_file", "--args", `{"path":"a"}`, "--session-json", `{"age":"5h"}`}, 3, "deny", "/session/max_duration", "start a new MCP session", nil},
		{"unknown key", []string{"--tool", "read_file", "--session-json", `{"taint":true}`}, 2, "", "", "", nil},
		{"not JSON", []string{"--tool", "read_file", "--session-json", `tainted`}, 2, "", "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runPolicy(t, append([]string{"eval", "--policy", taint}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out, errs)
			}
			if tc.verdict == "" {
				if !strings.Contains(errs, "--session-json") {
					t.Fatalf("stderr does not name the flag: %q", errs)
				}
				return
			}
			var d struct {
				Verdict, Rule, Message string
				Labels                 []string
			}
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatalf("stdout is not the decision JSON: %q", out)
			}
			if d.Verdict != tc.verdict || d.Rule != tc.rule || !strings.Contains(d.Message, tc.msg) || !slices.Equal(d.Labels, tc.labels) {
				t.Fatalf("decision %+v", d)
			}
		})
	}
}
