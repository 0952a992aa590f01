package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpPolicy is the policy every MCP client test runs under: everything is allowed except
// what the cases probe. git_log is hidden, `rm` commands are denied, and writing a Go file
// needs a human's approval.
const mcpPolicy = `{
  "version": "1",
  "default": "allow",
  "hide": ["git_log"],
  "tools": {
    "run_command": {
      "deny_if": [{"conditions": [{"path": "args.command", "op": "regex", "value": "^rm( |$)"}],
                   "on_deny": "Deleting files is not allowed."}]
    },
    "write_file": {
      "approve_if": [{"conditions": [{"path": "args.path", "op": "glob", "value": "**/*.go"}]}]
    }
  }
}`

// mcpVisibleTools must be in tools/list; mcpHiddenTools must not.
var (
	mcpVisibleTools = []string{"read_file", "list_directory", "search_files", "write_file",
		"run_command", "git_status", "git_diff", "run_tests"}
	mcpHiddenTools = []string{"git_log"}
)

const mcpHello = "hello from the airlock workspace\n"

// mcpSecrets are credentials shaped like real ones (random, so no scanner allowlists them as
// documentation examples): an AWS access key id and a GitHub personal access token.
type mcpSecrets struct {
	aws, github string
}

func newMCPSecrets(t testing.TB) mcpSecrets {
	t.Helper()
	pick := func(alphabet string, n int) string {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = alphabet[int(b[i])%len(alphabet)]
		}
		return string(b)
	}
	return mcpSecrets{
		aws:    "AKIA" + pick("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
		github: "ghp_" + pick("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 36),
	}
}

func (s mcpSecrets) file() string {
	return "# deploy credentials\nregion=eu-west-1\naws_access_key_id=" + s.aws +
		"\ngithub_token=" + s.github + "\n"
}

// mcpApprover answers elicitations (Airlock's approval prompts) with accept or decline.
type mcpApprover struct {
	accept atomic.Bool
	asked  atomic.Int32
}

func (a *mcpApprover) handle(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
	a.asked.Add(1)
	if !a.accept.Load() {
		return &mcp.ElicitResult{Action: "decline"}, nil
	}
	return &mcp.ElicitResult{Action: "accept", Content: mcpFillForm(req.Params.RequestedSchema)}, nil
}

// mcpFillForm answers an approval form affirmatively: booleans true, enums their approving
// value, other strings and numbers something valid. The SDK validates the answer against the
// requested schema, so a form Airlock adds later still gets a valid answer.
func mcpFillForm(schema any) map[string]any {
	raw, err := json.Marshal(schema)
	if err != nil || schema == nil {
		return nil
	}
	var s struct {
		Properties map[string]struct {
			Type string `json:"type"`
			Enum []any  `json:"enum"`
		} `json:"properties"`
	}
	if json.Unmarshal(raw, &s) != nil || len(s.Properties) == 0 {
		return nil
	}
	yes := regexp.MustCompile(`(?i)^(approve|approved|accept|allow|yes|true)$`)
	out := map[string]any{}
	for name, p := range s.Properties {
		switch {
		case len(p.Enum) > 0:
			out[name] = p.Enum[0]
			for _, v := range p.Enum {
				if str, ok := v.(string); ok && yes.MatchString(str) {
					out[name] = v
				}
			}
		case p.Type == "boolean":
			out[name] = true
		case p.Type == "integer" || p.Type == "number":
			out[name] = 1
		case p.Type == "string":
			out[name] = "approved by the integration test"
		}
	}
	return out
}

// mcpStep is one tools/call and what its result must show.
type mcpStep struct {
	name    string
	tool    string
	args    map[string]any
	approve *bool // set: the approver answers this way and must be asked
	check   func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string)
	audit   func(t *testing.T, rec mcpAuditRecord)
}

func mcpPtr[T any](v T) *T { return &v }

// mcpText joins the text content blocks of a result.
func mcpText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// mcpStructured returns structuredContent as an object (it arrives as decoded JSON).
func mcpStructured(t *testing.T, r *mcp.CallToolResult) map[string]any {
	t.Helper()
	raw, err := json.Marshal(r.StructuredContent)
	if err != nil {
		t.Fatalf("structuredContent: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		t.Fatalf("structuredContent is not an object: %s", raw)
	}
	return m
}

func wantDenied(t *testing.T, r *mcp.CallToolResult, raw string, message, rule string) {
	t.Helper()
	text := mcpText(r)
	if !r.IsError {
		t.Errorf("want isError for a denial, got %s", raw)
	}
	if !strings.HasPrefix(text, "[POLICY DENIED]") {
		t.Errorf("denial text %q does not start with [POLICY DENIED]", text)
	}
	if message != "" && !strings.Contains(text, message) {
		t.Errorf("denial text %q does not carry the policy's message %q", text, message)
	}
	if rule != "" && !strings.Contains(text, "(rule "+rule) {
		t.Errorf("denial text %q does not name the rule %q", text, rule)
	}
}

func wantOK(t *testing.T, r *mcp.CallToolResult, raw string) {
	t.Helper()
	if r.IsError {
		t.Fatalf("want success, got isError: %s", raw)
	}
}

func auditDenied(rule string) func(t *testing.T, rec mcpAuditRecord) {
	return func(t *testing.T, rec mcpAuditRecord) {
		t.Helper()
		if rec.Decision != "deny" {
			t.Errorf("audit decision %q, want deny", rec.Decision)
		}
		if rec.ExitCode != nil {
			t.Errorf("audit exit_code %d for a denied call, want null (it must not have run)", *rec.ExitCode)
		}
		if !strings.HasPrefix(rec.Rule, rule) {
			t.Errorf("audit rule %q, want it to start with %q", rec.Rule, rule)
		}
	}
}

// mcpSteps is the round trip every transport must pass, in order.
func mcpSteps(sec mcpSecrets) []mcpStep {
	secretAbsent := func(t *testing.T, raw string) {
		t.Helper()
		for _, s := range []string{sec.aws, sec.github} {
			if strings.Contains(raw, s) {
				t.Errorf("secret %s... came back unredacted in the response: %s", s[:8], raw)
			}
		}
		if !strings.Contains(raw, "REDACTED") {
			t.Errorf("no redaction marker where the secrets were: %s", raw)
		}
	}
	return []mcpStep{
		{
			name: "read_file returns the planted content",
			tool: "read_file", args: map[string]any{"path": "hello.txt"},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantOK(t, r, raw)
				if got := mcpText(r); !strings.Contains(got, strings.TrimSpace(mcpHello)) {
					t.Errorf("read_file text %q lacks the planted content %q", got, mcpHello)
				}
			},
			audit: func(t *testing.T, rec mcpAuditRecord) {
				if rec.Decision != "allow" {
					t.Errorf("audit decision %q, want allow", rec.Decision)
				}
			},
		},
		{
			name: "run_command echo",
			tool: "run_command", args: map[string]any{"command": "echo airlock-echo-ok"},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantOK(t, r, raw)
				// This client is not one that reads only structuredContent, so the output is in the
				// text block, once; structuredContent keeps the metadata.
				sc := mcpStructured(t, r)
				if got := mcpText(r); !strings.Contains(got, "airlock-echo-ok") {
					t.Errorf("text = %q, want it to contain airlock-echo-ok", got)
				}
				if _, ok := sc["stdout"]; ok || strings.Count(raw, "airlock-echo-ok") != 1 {
					t.Errorf("the output is in the result more than once: %s", raw)
				}
				if code, ok := sc["exit_code"].(float64); !ok || code != 0 {
					t.Errorf("structuredContent.exit_code = %v, want 0", sc["exit_code"])
				}
				if id, _ := sc["audit_id"].(string); id == "" {
					t.Errorf("structuredContent.audit_id is empty: %s", raw)
				}
			},
		},
		{
			name: "schema violation names the field",
			tool: "read_file", args: map[string]any{"path": 42},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				text := mcpText(r)
				if !r.IsError {
					t.Errorf("want isError for path=42, got %s", raw)
				}
				if !strings.Contains(text, "/path") {
					t.Errorf("schema error %q does not point at the field /path", text)
				}
				if strings.HasPrefix(text, "[POLICY DENIED]") {
					t.Errorf("schema violation reported as a policy denial: %q", text)
				}
			},
		},
		{
			name: "unknown argument is refused by the schema",
			tool: "read_file", args: map[string]any{"path": "hello.txt", "follow_symlinks": true},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				if text := mcpText(r); !r.IsError || !strings.Contains(text, "/follow_symlinks") {
					t.Errorf("want isError naming /follow_symlinks (additionalProperties is false), got %s", raw)
				}
			},
			audit: func(t *testing.T, rec mcpAuditRecord) {
				if rec.ExitCode != nil {
					t.Errorf("a call refused by the schema ran (exit_code %d)", *rec.ExitCode)
				}
			},
		},
		{
			name: "deny_if denies and names the rule",
			tool: "run_command", args: map[string]any{"command": "rm -rf hello.txt"},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantDenied(t, r, raw, "Deleting files is not allowed.", "/tools/run_command/deny_if")
				if _, err := os.Stat(filepath.Join(e.workspace, "hello.txt")); err != nil {
					t.Errorf("denied rm still touched the workspace: %v", err)
				}
			},
			audit: auditDenied("/tools/run_command/deny_if"),
		},
		{
			name: "hidden tool is refused when called anyway",
			tool: "git_log", args: map[string]any{},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantDenied(t, r, raw, "", "/hide")
			},
			audit: auditDenied("/hide"),
		},
		{
			name: "approval accepted writes the file",
			tool: "write_file", args: map[string]any{"path": "pkg/approved.go", "content": "package pkg\n"},
			approve: mcpPtr(true),
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantOK(t, r, raw)
				got, err := os.ReadFile(filepath.Join(e.workspace, "pkg", "approved.go"))
				if err != nil || string(got) != "package pkg\n" {
					t.Errorf("approved write_file: host file = %q, %v; want %q", got, err, "package pkg\n")
				}
			},
			audit: func(t *testing.T, rec mcpAuditRecord) {
				if rec.Decision == "deny" || rec.ExitCode == nil || *rec.ExitCode != 0 {
					t.Errorf("approved write_file audited as decision %q exit_code %v, want it run with exit 0", rec.Decision, rec.ExitCode)
				}
			},
		},
		{
			name: "approval declined denies and leaves the host unchanged",
			tool: "write_file", args: map[string]any{"path": "pkg/declined.go", "content": "package pkg\n"},
			approve: mcpPtr(false),
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantDenied(t, r, raw, "", "/tools/write_file/approve_if")
				if _, err := os.Stat(filepath.Join(e.workspace, "pkg", "declined.go")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("declined write_file: host file exists or unreadable (%v)", err)
				}
			},
			audit: auditDenied("/tools/write_file/approve_if"),
		},
		{
			name: "timeout is reported as timed_out",
			tool: "run_command", args: map[string]any{"command": "sleep 30"},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				sc := mcpStructured(t, r)
				if to, _ := sc["timed_out"].(bool); !to {
					t.Errorf("structuredContent.timed_out = %v, want true: %s", sc["timed_out"], raw)
				}
			},
			audit: func(t *testing.T, rec mcpAuditRecord) {
				if !rec.TimedOut {
					t.Errorf("audit timed_out = false for the timed-out call")
				}
			},
		},
		{
			name: "secret in a file read is redacted",
			tool: "read_file", args: map[string]any{"path": "config/creds.env"},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantOK(t, r, raw)
				if !strings.Contains(mcpText(r), "region=eu-west-1") {
					t.Errorf("read_file of creds.env lost its non-secret lines: %q", mcpText(r))
				}
				secretAbsent(t, raw)
			},
			audit: func(t *testing.T, rec mcpAuditRecord) {
				if rec.redactions() < 2 {
					t.Errorf("audit redactions = %v, want >= 2 (AWS key id and GitHub token)", rec.Redactions)
				}
			},
		},
		{
			name: "secret in command output is redacted",
			tool: "run_command", args: map[string]any{"command": "cat config/creds.env"},
			check: func(t *testing.T, e *mcpEnv, r *mcp.CallToolResult, raw string) {
				wantOK(t, r, raw)
				if !strings.Contains(mcpText(r), "region=eu-west-1") {
					t.Errorf("cat creds.env lost its non-secret lines: %s", raw)
				}
				secretAbsent(t, raw)
			},
			audit: func(t *testing.T, rec mcpAuditRecord) {
				if rec.redactions() < 2 {
					t.Errorf("audit redactions = %v, want >= 2 (AWS key id and GitHub token)", rec.Redactions)
				}
			},
		},
	}
}

// TestMCPGoClient drives `airlock serve` with the Go SDK's client over stdio and streamable
// HTTP through the whole round trip, then verifies the audit log the calls left behind.
func TestMCPGoClient(t *testing.T) {
	transports := []struct {
		name    string
		connect func(t *testing.T, e *mcpEnv, opts *mcp.ClientOptions) (cs *mcp.ClientSession, stop func())
	}{
		{"stdio", func(t *testing.T, e *mcpEnv, opts *mcp.ClientOptions) (*mcp.ClientSession, func()) {
			cs := e.connectStdio(t, opts)
			// Closing stdin ends the server; Close waits for it to exit.
			return cs, func() { _ = cs.Close() }
		}},
		{"http", func(t *testing.T, e *mcpEnv, opts *mcp.ClientOptions) (*mcp.ClientSession, func()) {
			s := e.startHTTP(t)
			cs := connectHTTP(t, s, "", opts)
			return cs, func() { _ = cs.Close(); s.stop() }
		}},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			sec := newMCPSecrets(t)
			e := newMCPEnv(t, mcpPolicy, map[string]string{
				"hello.txt":        mcpHello,
				"config/creds.env": sec.file(),
				"pkg/doc.txt":      "package docs\n",
			})
			approver := &mcpApprover{}
			cs, stop := tr.connect(t, e, &mcp.ClientOptions{ElicitationHandler: approver.handle})

			t.Run("tools/list", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := cs.ListTools(ctx, nil)
				if err != nil {
					t.Fatalf("tools/list: %v", err)
				}
				var names []string
				for _, tool := range res.Tools {
					names = append(names, tool.Name)
				}
				checkToolNames(t, names)
			})

			var audited []mcpStep // the calls that must have left an audit record, in order
			for _, st := range mcpSteps(sec) {
				t.Run(st.name, func(t *testing.T) {
					before := approver.asked.Load()
					if st.approve != nil {
						approver.accept.Store(*st.approve)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: st.tool, Arguments: st.args})
					audited = append(audited, st)
					if err != nil {
						t.Fatalf("tools/call %s: transport error %v (policy and tool errors must be results)", st.tool, err)
					}
					raw, _ := json.Marshal(res)
					if st.approve != nil && approver.asked.Load() == before {
						t.Errorf("approve_if matched but the client was never asked (no elicitation)")
					}
					if st.approve == nil && approver.asked.Load() != before {
						t.Errorf("client was asked for approval of a call no approve_if rule matches")
					}
					st.check(t, e, res, string(raw))
				})
			}

			stop()
			t.Run("audit", func(t *testing.T) {
				mcpCheckAudit(t, e, audited)
			})
		})
	}
}

// mcpCheckAudit verifies the hash chain with the CLI, checks one record per call in order,
// and shows that the verifier catches a tampered record.
func mcpCheckAudit(t *testing.T, e *mcpEnv, steps []mcpStep) {
	if code, out := e.verifyAudit(t, e.audit); code != 0 {
		t.Fatalf("airlock audit verify %s exited %d, want 0:\n%s", e.audit, code, out)
	}
	// Every record, intent records included, links to the one before it.
	all := readAuditAll(t, e.audit)
	for i := 1; i < len(all); i++ {
		if all[i].PrevHash != all[i-1].Hash {
			t.Errorf("record %d: prev_hash %q does not chain to the previous hash %q", i+1, all[i].PrevHash, all[i-1].Hash)
		}
	}
	// A call that reached a sandbox has an intent record just before its closing record.
	for i, r := range all {
		if r.Phase == "started" && (i+1 >= len(all) || all[i+1].AuditID != r.AuditID || all[i+1].Phase != "") {
			t.Errorf("intent record %d (%s) is not followed by its call's closing record", i+1, r.AuditID)
		}
	}
	recs := readAudit(t, e.audit)
	if len(recs) != len(steps) {
		t.Fatalf("audit has %d records, want one per tools/call (%d), denials included", len(recs), len(steps))
	}
	for i, st := range steps {
		rec := recs[i]
		if rec.Tool != st.tool {
			t.Errorf("record %d (%s): tool %q, want %q", i+1, st.name, rec.Tool, st.tool)
		}
		if rec.AuditID == "" || rec.Hash == "" {
			t.Errorf("record %d (%s): audit_id %q / hash %q must be set", i+1, st.name, rec.AuditID, rec.Hash)
		}
		if st.audit != nil {
			t.Run(st.name, func(t *testing.T) { st.audit(t, rec) })
		}
	}

	// A record edited after the fact must break the chain.
	data, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(data), `"tool":"run_command"`, `"tool":"run_commanD"`, 1)
	if tampered == string(data) {
		t.Fatalf("audit log has no compact \"tool\":\"run_command\" to tamper with:\n%s", data)
	}
	bad := filepath.Join(t.TempDir(), "tampered.jsonl")
	if err := os.WriteFile(bad, []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := e.verifyAudit(t, bad); code != 1 {
		t.Errorf("airlock audit verify on a tampered log exited %d, want 1:\n%s", code, out)
	}
}
