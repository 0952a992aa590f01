package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// fakeHistory is a SessionHistory with a fixed state that counts what it is told.
type fakeHistory struct {
	state    policies.SessionState
	mu       sync.Mutex
	executed [][]string
}

func (h *fakeHistory) State() policies.SessionState { return h.state }
func (h *fakeHistory) Executed(labels []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.executed = append(h.executed, labels)
}

const sessionTestPolicy = `{
  "tools": {
    "echo": {
      "deny_if": [{"conditions": [{"path": "session.labels", "op": "contains", "value": "secret"}],
                   "on_deny": "No echo after a secret."}],
      "label_if": [{"conditions": [{"path": "args.text", "op": "prefix", "value": "secret"}], "label": "secret"}]
    },
    "needs_ok": {
      "approve_if": [{"conditions": [{"path": "session.tainted", "op": "eq", "value": true}],
                      "message": "Tainted by {session.tainted_by}."}]
    }
  }
}`

type yes struct{}

func (yes) Approve(context.Context, ApprovalRequest) (bool, error) { return true, nil }

// TestSessionHistoryReported: the policy judges the call against the history's state, the
// history hears of a call only when its tool ran (with the labels label_if gave), and the
// record says whether the session was tainted and what the call labelled.
func TestSessionHistoryReported(t *testing.T) {
	tainted := policies.SessionState{Tainted: true, TaintedBy: []string{"http_fetch", "web"}}
	sandboxDown := func(context.Context, sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{}, errors.New("runc: not found")
	}
	tests := []struct {
		name     string
		tool     string
		args     string
		state    policies.SessionState
		approver Approver
		backend  func(context.Context, sandbox.Spec) (sandbox.Result, error)
		verdict  policies.Verdict
		executed [][]string
		labels   []string
	}{
		{"an allowed call that labels", "echo", `{"text":"secret: x"}`, policies.SessionState{}, nil, nil, policies.Allow, [][]string{{"secret"}}, []string{"secret"}},
		{"an allowed call without labels", "echo", `{"text":"hi"}`, policies.SessionState{}, nil, nil, policies.Allow, [][]string{nil}, nil},
		{"denied by the session's labels", "echo", `{"text":"secret again"}`, policies.SessionState{Labels: []string{"secret"}}, nil, nil, policies.Deny, nil, nil},
		{"approval refused", "needs_ok", `{"text":"x"}`, tainted, nil, nil, policies.Deny, nil, nil},
		{"approved", "needs_ok", `{"text":"x"}`, tainted, yes{}, nil, policies.Approve, [][]string{nil}, nil},
		{"sandbox failed before the tool ran", "echo", `{"text":"secret"}`, tainted, nil, sandboxDown, "", nil, nil},
		{"invalid arguments", "echo", `{"text":1}`, tainted, nil, nil, "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.Policy = policies.NewEngine(mustPolicy(t, sessionTestPolicy), nil)
			})
			e.backend.run = tc.backend
			h := &fakeHistory{state: tc.state}
			res := e.p.Run(context.Background(), Call{Tool: tc.tool, Args: json.RawMessage(tc.args), Session: "s1", History: h, Approver: tc.approver})
			if res.Verdict != tc.verdict {
				t.Fatalf("verdict %q, want %q: %s", res.Verdict, tc.verdict, res.Text)
			}
			if !slices.EqualFunc(h.executed, tc.executed, func(a, b []string) bool { return slices.Equal(a, b) }) {
				t.Fatalf("history told %q, want %q", h.executed, tc.executed)
			}
			rec := e.last(t)
			if !slices.Equal(rec.Labels, tc.labels) {
				t.Errorf("record labels %q, want %q", rec.Labels, tc.labels)
			}
			judged := tc.name != "invalid arguments" // the policy never saw it
			if rec.SessionTainted != (judged && tc.state.IsTainted()) {
				t.Errorf("record session_tainted %v for state %+v", rec.SessionTainted, tc.state)
			}
			if judged && tc.state.IsTainted() {
				if !slices.Equal(rec.SessionTaintedBy, tc.state.TaintedBy) {
					t.Errorf("record session_tainted_by %q", rec.SessionTaintedBy)
				}
				if tc.approver != nil && rec.Message != "approved: Tainted by http_fetch, web." {
					t.Errorf("record message %q does not name the tools", rec.Message)
				}
			}
		})
	}
}

// TestSessionHistoryRemote: a call to an upstream tool reports to the history as a sandboxed
// one does, when the upstream answered.
func TestSessionHistoryRemote(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Policy = policies.NewEngine(mustPolicy(t, sessionTestPolicy), nil) })
	h := &fakeHistory{}
	f := newRemote(t, &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "page"}}})
	res := e.p.Run(context.Background(), Call{Tool: "echo", Args: json.RawMessage(`{"text":"secret"}`), Session: "s1", Remote: f, History: h})
	if res.IsError || len(h.executed) != 1 || !slices.Equal(h.executed[0], []string{"secret"}) {
		t.Fatalf("result %q, history told %q", res.Text, h.executed)
	}
	f.err = errors.New("refused")
	h2 := &fakeHistory{state: policies.SessionState{Labels: []string{"secret"}}}
	if res := e.p.Run(context.Background(), Call{Tool: "echo", Args: json.RawMessage(`{"text":"x"}`), Session: "s1", Remote: f, History: h2}); !res.Denied || len(h2.executed) != 0 {
		t.Fatalf("denied remote call: %q, history told %q", res.Text, h2.executed)
	}
}

// TestSessionRecordFields: the session fields are part of the hashed record (an edit breaks the
// chain), are bounded, and are absent when empty so older records keep their canonical form.
func TestSessionRecordFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	plain := testRecord(0)
	r := testRecord(1)
	r.SessionTainted = true
	r.SessionTaintedBy = []string{"t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", strings.Repeat("x", 1000)}
	r.Labels = []string{"secret"}
	for _, rec := range []*Record{plain, r} {
		if err := l.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if bytes.Contains(lines[0], []byte("session_tainted")) || bytes.Contains(lines[0], []byte(`"labels"`)) {
		t.Fatalf("a record without session fields writes them: %s", lines[0])
	}
	var got Record
	if err := json.Unmarshal(lines[1], &got); err != nil {
		t.Fatal(err)
	}
	if !got.SessionTainted || len(got.SessionTaintedBy) != MaxRecordSessionNames || !slices.Equal(got.Labels, []string{"secret"}) {
		t.Fatalf("written %s", lines[1])
	}
	if rep := verifyFile(t, path); !rep.Intact() {
		t.Fatalf("does not verify: %+v", rep)
	}
	for _, edit := range [][2]string{{`"session_tainted":true`, `"session_tainted":false`}, {`"labels":["secret"]`, `"labels":["public"]`}} {
		tampered := bytes.Replace(b, []byte(edit[0]), []byte(edit[1]), 1)
		if bytes.Equal(tampered, b) {
			t.Fatalf("%s not in the log", edit[0])
		}
		rep, err := Verify(bytes.NewReader(tampered))
		if err != nil || rep.Intact() {
			t.Errorf("editing %s went unnoticed: %+v %v", edit[0], rep, err)
		}
	}
}

func mustPolicy(t *testing.T, doc string) *policies.Policy {
	t.Helper()
	p, err := policies.Parse("session-policy.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
