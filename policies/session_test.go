package policies

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sessionPolicy uses every session path, label_if, message holes and both budgets.
const sessionPolicy = `{
  "default": "allow",
  "session": {"max_calls": 100, "max_duration": "2h", "description": "one working session"},
  "tools": {
    "read_file": {
      "label_if": [
        {"conditions": [{"path": "args.path", "op": "glob", "value": "secrets/**"}], "label": "secret"},
        {"conditions": [{"path": "args.path", "op": "suffix", "value": ".env"}], "label": "secret"},
        {"conditions": [{"path": "args.path", "op": "prefix", "value": "hr/"}], "label": "pii"}
      ]
    },
    "http_fetch": {
      "deny_if": [
        {"conditions": [{"path": "session.labels", "op": "contains", "value": "secret"}],
         "on_deny": "This session read secrets ({session.labels}); it may not reach the network."}
      ],
      "approve_if": [
        {"conditions": [{"path": "session.labels.*", "op": "in", "value": ["pii", "customer"]}],
         "message": "Personal data was read; send anyway?"}
      ]
    },
    "write_file": {
      "require": [{"conditions": [{"path": "session.calls", "op": "lt", "value": 50}],
                   "on_deny": "Only the first 50 calls ({session.calls} so far) may write."}],
      "approve_if": [
        {"conditions": [{"path": "session.tainted", "op": "eq", "value": true}],
         "message": "This session read untrusted content from {session.tainted_by}; approve the write?"}
      ]
    },
    "run_command": {
      "deny_if": [
        {"conditions": [{"path": "session.tainted_by", "op": "contains", "value": "web_search"},
                        {"path": "session.tools", "op": "contains", "value": "read_file"}],
         "on_deny": "Searched the web and read files: no commands."}
      ],
      "label_if": [{"conditions": [{"path": "args.command", "op": "exists"}], "label": "ran-code"}]
    },
    "deploy": {
      "require": [{"conditions": [{"path": "session.tools.*", "op": "eq", "value": "run_tests"}],
                   "on_deny": "Run the tests first."}]
    }
  }
}`

func TestSessionPaths(t *testing.T) {
	e := NewEngine(mustParse(t, sessionPolicy), nil)
	tainted := SessionState{Tainted: true, TaintedBy: []string{"http_fetch"}, Tools: []string{"http_fetch"}, Calls: 3}
	tests := []struct {
		name    string
		tool    string
		args    map[string]any
		state   SessionState
		verdict Verdict
		rule    string
		msg     string
	}{
		{"clean session writes without asking", "write_file", map[string]any{"path": "a"}, SessionState{}, Allow, "/tools/write_file", ""},
		{"tainted session asks, naming the tools", "write_file", map[string]any{"path": "a"}, tainted, Approve,
			"/tools/write_file/approve_if/session.tainted-eq", "untrusted content from http_fetch; approve"},
		{"tainted_by alone counts as tainted", "write_file", nil, SessionState{TaintedBy: []string{"web_search", "http_fetch"}}, Approve,
			"/tools/write_file/approve_if/session.tainted-eq", "from web_search, http_fetch;"},
		{"calls under the bound", "write_file", nil, SessionState{Calls: 49}, Allow, "/tools/write_file", ""},
		{"calls at the bound, count in the message", "write_file", nil, SessionState{Calls: 50}, Deny,
			"/tools/write_file/require/session.calls-lt", "(50 so far)"},
		{"fetch in a clean session", "http_fetch", nil, SessionState{}, Allow, "/tools/http_fetch", ""},
		{"fetch after a secret was read", "http_fetch", nil, SessionState{Labels: []string{"secret"}}, Deny,
			"/tools/http_fetch/deny_if/session.labels-contains", "read secrets (secret);"},
		{"some label in a list", "http_fetch", nil, SessionState{Labels: []string{"ran-code", "pii"}}, Approve,
			"/tools/http_fetch/approve_if/session.labels.*-in", "Personal data"},
		{"no label: each is missing, the rule does not fire", "http_fetch", nil, SessionState{Labels: []string{}}, Allow, "/tools/http_fetch", ""},
		{"chain of two facts", "run_command", map[string]any{"command": "ls"},
			SessionState{TaintedBy: []string{"web_search"}, Tools: []string{"web_search", "read_file"}}, Deny,
			"/tools/run_command/deny_if/session.tainted_by-contains", "no commands"},
		{"one of the two facts", "run_command", map[string]any{"command": "ls"},
			SessionState{TaintedBy: []string{"web_search"}, Tools: []string{"web_search"}}, Allow, "/tools/run_command", ""},
		{"require some element: none yet", "deploy", nil, SessionState{}, Deny, "/tools/deploy/require/session.tools.*-eq", "tests first"},
		{"require some element: there", "deploy", nil, SessionState{Tools: []string{"read_file", "run_tests"}}, Allow, "/tools/deploy", ""},
		{"max_calls: the 100th call runs", "anything", nil, SessionState{Calls: 99}, Allow, "/default", ""},
		{"max_calls: the 101st is denied", "anything", nil, SessionState{Calls: 100}, Deny, "/session/max_calls", "start a new MCP session"},
		{"max_calls binds listed tools too", "read_file", map[string]any{"path": "a"}, SessionState{Calls: 500}, Deny, "/session/max_calls", "made its 100 calls"},
		{"max_duration: at the limit", "read_file", map[string]any{"path": "a"}, SessionState{Age: 2 * time.Hour}, Allow, "/tools/read_file", ""},
		{"max_duration: beyond it", "read_file", map[string]any{"path": "a"}, SessionState{Age: 2*time.Hour + time.Second}, Deny,
			"/session/max_duration", "older than 2h0m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{Tool: tc.tool, Args: tc.args, State: tc.state}
			d, res := e.Decide(req)
			res.Rollback()
			if d.Verdict != tc.verdict || d.Rule != tc.rule || !strings.Contains(d.Message, tc.msg) {
				t.Fatalf("got %s %s %q; want %s %s containing %q", d.Verdict, d.Rule, d.Message, tc.verdict, tc.rule, tc.msg)
			}
			// Same input, same verdict: Evaluate agrees and repeats itself.
			if ev := e.Policy().Evaluate(req); !reflect.DeepEqual(ev, d) || !reflect.DeepEqual(e.Policy().Evaluate(req), ev) {
				t.Fatalf("Evaluate %+v differs from Decide %+v", ev, d)
			}
		})
	}
}

func TestLabelIf(t *testing.T) {
	p := mustParse(t, sessionPolicy)
	tests := []struct {
		name   string
		tool   string
		args   map[string]any
		state  SessionState
		labels []string
	}{
		{"a secret path", "read_file", map[string]any{"path": "secrets/db/password"}, SessionState{}, []string{"secret"}},
		{"two rules, one label once", "read_file", map[string]any{"path": "secrets/prod.env"}, SessionState{}, []string{"secret"}},
		{"two labels in rule order", "read_file", map[string]any{"path": "hr/.env"}, SessionState{}, []string{"secret", "pii"}},
		{"no match", "read_file", map[string]any{"path": "src/main.go"}, SessionState{}, nil},
		{"missing argument: no label", "read_file", map[string]any{}, SessionState{}, nil},
		{"mismatch: the label is given (fail closed)", "read_file", map[string]any{"path": 7}, SessionState{}, []string{"secret", "pii"}},
		{"on an approve verdict too", "run_command", map[string]any{"command": "ls"}, SessionState{}, []string{"ran-code"}},
		{"a tool without label_if", "write_file", map[string]any{"path": "x"}, SessionState{}, nil},
		{"not on a deny", "read_file", map[string]any{"path": "secrets/x"}, SessionState{Calls: 100}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Evaluate(Request{Tool: tc.tool, Args: tc.args, State: tc.state})
			if !reflect.DeepEqual(d.Labels, tc.labels) {
				t.Fatalf("labels %q, want %q (decision %+v)", d.Labels, tc.labels, d)
			}
		})
	}
}

func TestSessionRejects(t *testing.T) {
	rule := func(section, extra string) string {
		return `{"tools":{"a":{"` + section + `":[{"conditions":[{"path":"args.x","op":"exists"}]` + extra + `}]}}}`
	}
	cond := func(path, op, value string) string {
		return `{"tools":{"a":{"deny_if":[{"conditions":[{"path":"` + path + `","op":"` + op + `","value":` + value + `}]}]}}}`
	}
	tests := []struct {
		name, doc, pointer, msg string
	}{
		{"session not an object", `{"session":[]}`, "/session", "must be an object"},
		{"unknown session key", `{"session":{"max_call":3}}`, "/session/max_call", "unknown key"},
		{"max_calls zero", `{"session":{"max_calls":0}}`, "/session/max_calls", "positive integer"},
		{"max_calls a string", `{"session":{"max_calls":"10"}}`, "/session/max_calls", "positive integer"},
		{"max_calls a fraction", `{"session":{"max_calls":1.5}}`, "/session/max_calls", "positive integer"},
		{"max_duration a number", `{"session":{"max_duration":3600}}`, "/session/max_duration", "must be a string"},
		{"max_duration not a duration", `{"session":{"max_duration":"2 hours"}}`, "/session/max_duration", "not a Go duration"},
		{"max_duration negative", `{"session":{"max_duration":"-1h"}}`, "/session/max_duration", "positive"},
		{"label_if without label", rule("label_if", ""), "/tools/a/label_if/0/label", "required"},
		{"label_if with on_deny", rule("label_if", `,"label":"x","on_deny":"y"`), "/tools/a/label_if/0/on_deny", "unknown key"},
		{"label with a space", rule("label_if", `,"label":"top secret"`), "/tools/a/label_if/0/label", "letters, digits"},
		{"label empty", rule("label_if", `,"label":""`), "/tools/a/label_if/0/label", "1 to 64"},
		{"label not a string", rule("label_if", `,"label":true`), "/tools/a/label_if/0/label", "must be a string"},
		{"label_if not an array", `{"tools":{"a":{"label_if":{}}}}`, "/tools/a/label_if", "array of rules"},
		{"unknown session path", cond("session.history", "exists", "true"), "/tools/a/deny_if/0/conditions/0/path", "session.tainted_by"},
		{"star on a boolean", cond("session.tainted.*", "eq", "true"), "/tools/a/deny_if/0/conditions/0/path", "follows an array"},
		{"words on a session path", cond("session.tools|words", "exists", "true"), "/tools/a/deny_if/0/conditions/0/path", "unknown path"},
		{"argument in a message", rule("approve_if", `,"message":"write {args.path}?"`), "/tools/a/approve_if/0/message", "agent's text"},
		{"unknown session hole", rule("deny_if", `,"on_deny":"tainted by {session.taint}"`), "/tools/a/deny_if/0/on_deny", "{session.tainted_by}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.json", []byte(tc.doc))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError, got %v", err)
			}
			for _, is := range ve.Issues {
				if is.Pointer == tc.pointer && strings.Contains(is.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("no issue at %s containing %q in:\n%v", tc.pointer, tc.msg, err)
		})
	}
}

// TestMessageHoles: literal braces stay, every hole is filled, long lists are cut.
func TestMessageHoles(t *testing.T) {
	p := mustParse(t, `{"tools":{"a":{"deny_if":[{"conditions":[{"path":"session.tainted","op":"eq","value":true}],
	  "on_deny":"{x} {session.tainted_by} | {session.tools} | {session.labels} | {session.calls} {"}]}}}`)
	names := []string{"t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10"}
	d := p.Evaluate(Request{Tool: "a", State: SessionState{TaintedBy: names, Tools: []string{"read_file"}, Calls: 7}})
	want := "{x} t1, t2, t3, t4, t5, t6, t7, t8 and 2 more | read_file | none | 7 {"
	if d.Message != want {
		t.Fatalf("message %q, want %q", d.Message, want)
	}
}

func TestParseSessionState(t *testing.T) {
	st, err := ParseSessionState([]byte(`{"tainted_by":["http_fetch"],"labels":["secret"],"calls":3,"age":"90m"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := SessionState{TaintedBy: []string{"http_fetch"}, Labels: []string{"secret"}, Calls: 3, Age: 90 * time.Minute}
	if !reflect.DeepEqual(st, want) || !st.IsTainted() {
		t.Fatalf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{`{"taint":true}`, `{"calls":-1}`, `{"age":"soon"}`, `{"calls":"3"}`, `{} {}`, `[]`} {
		if _, err := ParseSessionState([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestCasesSessionState(t *testing.T) {
	cf, err := ParseCases("c.yaml", []byte(`cases:
  - {name: clean write, tool: write_file, args: {path: a}, expect: allow}
  - name: tainted write
    tool: write_file
    args: {path: a}
    session_state: {tainted_by: [http_fetch], calls: 3}
    expect: approve
    message: from http_fetch
  - {name: old session, tool: x, session_state: {age: 3h}, expect: deny, rule: /session/max_duration}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range RunCases(mustParse(t, sessionPolicy), cf) {
		if r.Failure != "" {
			t.Errorf("%s: %s", r.Name, r.Failure)
		}
	}
	for _, bad := range []string{
		"[{name: a, tool: t, expect: allow, session_state: {tained: true}}]",
		"[{name: a, tool: t, expect: allow, session_state: {age: forever}}]",
	} {
		if _, err := ParseCases("c.yaml", []byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
