package policies

import (
	"strings"
	"testing"
)

func TestParseCasesRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown key", "cases:\n  - {name: a, tool: t, expect: allow, rul: /x}\n", "rul"},
		{"bad expect", "cases:\n  - {name: a, tool: t, expect: maybe}\n", "expect must be"},
		{"missing expect", "cases:\n  - {name: a, tool: t}\n", "expect must be"},
		{"missing name", "cases:\n  - {tool: t, expect: deny}\n", "name is required"},
		{"missing tool", "cases:\n  - {name: a, expect: deny}\n", "tool is required"},
		{"negative repeat", "cases:\n  - {name: a, tool: t, expect: deny, repeat: -1}\n", "repeat"},
		{"bad advance", "cases:\n  - {name: a, tool: t, expect: deny, advance: soon}\n", "advance"},
		{"bad now", "now: yesterday\ncases:\n  - {name: a, tool: t, expect: deny}\n", "now"},
		{"relative workspace", "workspace: repo\ncases:\n  - {name: a, tool: t, expect: deny}\n", "absolute"},
		{"no cases", "cases: []\n", "no cases"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCases("c.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestRunCasesReportsFailures(t *testing.T) {
	p := mustParse(t, `{"tools":{"t":{"limits":[{"counter":"c","max":2,"window":"minute","scope":"policy"}]}}}`)
	cf, err := ParseCases("c.yaml", []byte(`
- {name: two fit, tool: t, repeat: 2, expect: allow}
- {name: third is denied, tool: t, expect: deny, rule: /tools/t/limits/c, message: limit c reached}
- {name: wrong expectation, tool: t, expect: allow}
- {name: rolled back calls cost nothing, tool: t, advance: 1m, repeat: 5, rollback: true, expect: allow}
- {name: the budget is intact, tool: t, repeat: 3, expect: allow}
`))
	if err != nil {
		t.Fatal(err)
	}
	res := RunCases(p, cf)
	want := []string{"", "", "verdict deny, want allow", "", "call 3 of 3: verdict deny, want allow"}
	for i, r := range res {
		if (want[i] == "") != (r.Failure == "") || !strings.Contains(r.Failure, want[i]) {
			t.Errorf("%s: failure %q, want %q", r.Name, r.Failure, want[i])
		}
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, file, doc string
		req             Request
		verdict         Verdict
		rule            string
	}{
		{"YAML hex int and numeric version", "p.yaml", "version: 1\ntools:\n  t:\n    require:\n      - conditions: [{path: args.n, op: eq, value: 0x1F}]\n",
			Request{Tool: "t", Args: map[string]any{"n": 31}}, Allow, "/tools/t"},
		{"tool name with a slash is escaped in rule pointers", "p.json", `{"tools":{"fs/read":{"require":[{"conditions":[{"path":"args.p","op":"exists"}]}]}}}`,
			Request{Tool: "fs/read"}, Deny, "/tools/fs~1read/require/args.p-exists"},
		{"default approve", "p.json", `{"default":"approve"}`, Request{Tool: "x"}, Approve, "/default"},
		{"default allow", "p.json", `{"default":"allow"}`, Request{Tool: "x"}, Allow, "/default"},
		{"empty policy denies", "p.json", `{}`, Request{Tool: "x"}, Deny, "/default"},
		{"hide beats an entry", "p.json", `{"hide":["t"],"tools":{"t":{}}}`, Request{Tool: "t"}, Deny, "/hide"},
		{"deny_if names its first condition", "p.json", `{"tools":{"t":{"deny_if":[{"conditions":[{"path":"args.a","op":"eq","value":1},{"path":"args.b","op":"eq","value":2}]}]}}}`,
			Request{Tool: "t", Args: map[string]any{"a": 1, "b": 2}}, Deny, "/tools/t/deny_if/args.a-eq"},
		{"deny_if needs every condition", "p.json", `{"tools":{"t":{"deny_if":[{"conditions":[{"path":"args.a","op":"eq","value":1},{"path":"args.b","op":"eq","value":2}]}]}}}`,
			Request{Tool: "t", Args: map[string]any{"a": 1, "b": 3}}, Allow, "/tools/t"},
		{"deny_if with a missing path does not fire", "p.json", `{"tools":{"t":{"deny_if":[{"conditions":[{"path":"args.a","op":"eq","value":1}]}]}}}`,
			Request{Tool: "t", Args: map[string]any{}}, Allow, "/tools/t"},
		{"deny_if with a type mismatch fires", "p.json", `{"tools":{"t":{"deny_if":[{"conditions":[{"path":"args.a","op":"gt","value":1}]}]}}}`,
			Request{Tool: "t", Args: map[string]any{"a": "2"}}, Deny, "/tools/t/deny_if/args.a-gt"},
		{"require with a missing path denies", "p.json", `{"tools":{"t":{"require":[{"conditions":[{"path":"args.a","op":"neq","value":1}]}]}}}`,
			Request{Tool: "t", Args: map[string]any{}}, Deny, "/tools/t/require/args.a-neq"},
		{"require names the first failing condition of the first failing rule", "p.json", `{"tools":{"t":{"require":[{"conditions":[{"path":"args.a","op":"exists"}]},{"conditions":[{"path":"args.a","op":"eq","value":1},{"path":"args.b","op":"eq","value":2}]}]}}}`,
			Request{Tool: "t", Args: map[string]any{"a": 1, "b": 3}}, Deny, "/tools/t/require/args.b-eq"},
		{"approve_if with a missing path does not fire", "p.json", `{"tools":{"t":{"approve_if":[{"conditions":[{"path":"args.a","op":"exists"}]}]}}}`,
			Request{Tool: "t"}, Allow, "/tools/t"},
		{"deny_if before approve_if", "p.json", `{"tools":{"t":{"deny_if":[{"conditions":[{"path":"args.a","op":"exists"}]}],"approve_if":[{"conditions":[{"path":"args.a","op":"exists"}]}]}}}`,
			Request{Tool: "t", Args: map[string]any{"a": true}}, Deny, "/tools/t/deny_if/args.a-exists"},
		{"session and grant paths", "p.json", `{"tools":{"t":{"require":[{"conditions":[{"path":"session.id","op":"prefix","value":"ci-"},{"path":"grant.id","op":"in","value":["bot"]}]}]}}}`,
			Request{Tool: "t", Grant: Grant{ID: "bot"}, Session: "ci-42"}, Allow, "/tools/t"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.file, []byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(tc.req)
			if d.Verdict != tc.verdict || d.Rule != tc.rule {
				t.Fatalf("got %s %s (%s), want %s %s", d.Verdict, d.Rule, d.Message, tc.verdict, tc.rule)
			}
		})
	}
}
