package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runPolicy(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmdPolicy(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const examples = "../../policies/examples/"

func TestPolicyCheck(t *testing.T) {
	code, out, _ := runPolicy(t, "check", examples+"shell.json")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("valid policy: exit %d, %q", code, out)
	}
	bad := writeTemp(t, "bad.json", `{"tools":{"run_command":{"require":[{"conditions":[{"path":"args.a","op":"exists"},{"path":"args.command","op":"regex","value":"(go"}]}]},"x":{"deny_if":[{"conditions":[]}]}}}`)
	code, _, errs := runPolicy(t, "check", bad)
	if code != 1 {
		t.Fatalf("invalid policy: exit %d, want 1", code)
	}
	for _, want := range []string{
		bad + ": /tools/run_command/require/0/conditions/1/value: invalid regex: missing closing )",
		bad + ": /tools/x/deny_if/0/conditions: empty condition list",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if code, _, _ := runPolicy(t, "check"); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
	if code, _, _ := runPolicy(t, "check", filepath.Join(t.TempDir(), "missing.json")); code != 1 {
		t.Errorf("unreadable file: exit %d, want 1", code)
	}
}

func TestPolicyEval(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		code    int
		verdict string
		rule    string
	}{
		{"allow", []string{"--policy", examples + "shell.json", "--tool", "run_command", "--args", `{"command":"go test ./..."}`}, 0, "allow", "/tools/run_command"},
		{"deny", []string{"--policy", examples + "shell.json", "--tool", "run_command", "--args", `{"command":"go test ./...; id"}`}, 3, "deny", "/tools/run_command/require/args.command|words-len_gte"},
		{"approve", []string{"--policy", examples + "kubernetes.json", "--tool", "scale_deployment", "--args", `{"namespace":"team-a","replicas":0}`, "--grant", "sre-1", "--labels", "role=sre,team=x"}, 4, "approve", "/tools/scale_deployment/approve_if/args.replicas-eq"},
		{"labels matter", []string{"--policy", examples + "kubernetes.json", "--tool", "scale_deployment", "--args", `{"namespace":"team-a","replicas":0}`, "--labels", "role=dev"}, 3, "deny", "/tools/scale_deployment/require/grant.labels.role-eq"},
		{"workspace", []string{"--policy", examples + "workspace.json", "--tool", "read_file", "--args", `{"path":"/srv/repo/a"}`, "--workspace", "/srv/repo"}, 0, "allow", "/tools/read_file"},
		{"hidden", []string{"--policy", examples + "kubernetes.json", "--tool", "drain_node", "--args", `{}`}, 3, "deny", "/hide"},
		{"args not an object", []string{"--policy", examples + "shell.json", "--tool", "run_command", "--args", `[1]`}, 2, "", ""},
		{"args not JSON", []string{"--policy", examples + "shell.json", "--tool", "run_command", "--args", `{`}, 2, "", ""},
		{"missing tool", []string{"--policy", examples + "shell.json"}, 2, "", ""},
		{"bad labels", []string{"--policy", examples + "shell.json", "--tool", "x", "--labels", "novalue"}, 2, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runPolicy(t, append([]string{"eval"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out, errs)
			}
			if tc.verdict == "" {
				return
			}
			var d map[string]string
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatalf("stdout is not the decision JSON: %q", out)
			}
			if d["verdict"] != tc.verdict || d["rule"] != tc.rule || len(d["policy_sha256"]) != 64 {
				t.Fatalf("decision %v", d)
			}
			if _, ok := d["message"]; !ok {
				t.Fatal("decision lacks message")
			}
		})
	}
}

func TestPolicyTest(t *testing.T) {
	code, out, errs := runPolicy(t, "test", examples+"chat.json", examples+"chat.cases.yaml")
	if code != 0 || !strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("examples: exit %d, %q %q", code, out, errs)
	}
	cases := writeTemp(t, "c.yaml", `
cases:
  - {name: right, tool: read_channel, args: {channel: "#eng-x"}, expect: allow}
  - {name: wrong verdict, tool: read_channel, args: {channel: "#exec"}, expect: allow}
  - {name: wrong rule, tool: read_channel, args: {channel: "#exec"}, expect: deny, rule: /default}
`)
	code, out, _ = runPolicy(t, "test", examples+"chat.json", cases)
	if code != 1 {
		t.Fatalf("failing cases: exit %d, want 1", code)
	}
	for _, want := range []string{"FAIL wrong verdict:", "FAIL wrong rule:", "1 passed, 2 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	typo := writeTemp(t, "typo.yaml", "cases:\n  - {name: a, tool: t, expcet: allow}\n")
	if code, _, errs := runPolicy(t, "test", examples+"chat.json", typo); code != 2 || !strings.Contains(errs, "expcet") {
		t.Fatalf("unknown case key: exit %d, %q", code, errs)
	}
}
