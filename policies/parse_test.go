package policies

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		pointer string
		msg     string
	}{
		{"unknown top-level key", `{"tools":{},"defualt":"allow"}`, "/defualt", "unknown key"},
		{"unknown tool key", `{"tools":{"a":{"deny-if":[]}}}`, "/tools/a/deny-if", "unknown key"},
		{"unknown rule key", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.x","op":"exists"}],"ondeny":"x"}]}}}`, "/tools/a/require/0/ondeny", "unknown key"},
		{"unknown condition key", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.x","op":"exists","values":1}]}]}}}`, "/tools/a/require/0/conditions/0/values", "unknown key"},
		{"bad regex", `{"tools":{"run_command":{"require":[{"conditions":[{"path":"args.a","op":"eq","value":"x"},{"path":"args.command","op":"regex","value":"(go"}]}]}}}`, "/tools/run_command/require/0/conditions/1/value", "invalid regex: missing closing )"},
		{"gt with a string", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"gt","value":"5"}]}]}}}`, "/tools/a/require/0/conditions/0/value", "must be a number"},
		{"in with a scalar", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"in","value":"a"}]}]}}}`, "/tools/a/require/0/conditions/0/value", "needs an array"},
		{"in with an empty array", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"in","value":[]}]}]}}}`, "/tools/a/require/0/conditions/0/value", "non-empty"},
		{"in with an object element", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"in","value":["a",{}]}]}]}}}`, "/tools/a/require/0/conditions/0/value/1", "string, number or boolean"},
		{"eq with an array", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"eq","value":[1]}]}]}}}`, "/tools/a/require/0/conditions/0/value", "string, number or boolean"},
		{"eq with null", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"eq","value":null}]}]}}}`, "/tools/a/require/0/conditions/0/value", "not null"},
		{"missing value", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"eq"}]}]}}}`, "/tools/a/require/0/conditions/0/value", "required"},
		{"exists with a string", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"exists","value":"yes"}]}]}}}`, "/tools/a/require/0/conditions/0/value", "true or false"},
		{"len_lte negative", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"len_lte","value":-1}]}]}}}`, "/tools/a/require/0/conditions/0/value", "non-negative integer"},
		{"len_gte fraction", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"len_gte","value":1.5}]}]}}}`, "/tools/a/require/0/conditions/0/value", "non-negative integer"},
		{"unknown operator", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"matches","value":"x"}]}]}}}`, "/tools/a/require/0/conditions/0/op", "unknown operator"},
		{"unknown path root", `{"tools":{"a":{"require":[{"conditions":[{"path":"env.HOME","op":"exists"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "unknown path"},
		{"unknown path transform", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.c|argv.0","op":"eq","value":"go"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "unknown transform \"argv\""},
		{"words on a grant path", `{"tools":{"a":{"require":[{"conditions":[{"path":"grant.id|words","op":"exists"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "args. paths only"},
		{"words with a key", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.c|words.x","op":"exists"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "word index"},
		{"words with an empty selector", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.c|words.","op":"exists"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "empty segment after |words"},
		{"star in the middle", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.a.*.b","op":"exists"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "last segment"},
		{"star alone", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.*","op":"exists"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "array path before it"},
		{"empty path segment", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.a..b","op":"exists"}]}]}}}`, "/tools/a/require/0/conditions/0/path", "empty segment"},
		{"empty conditions", `{"tools":{"a":{"deny_if":[{"conditions":[]}]}}}`, "/tools/a/deny_if/0/conditions", "empty condition list"},
		{"missing conditions", `{"tools":{"a":{"approve_if":[{"message":"m"}]}}}`, "/tools/a/approve_if/0/conditions", "required"},
		{"duplicate tool (JSON)", `{"tools":{"a":{},"b":{},"a":{}}}`, "/tools/a", "duplicate key"},
		{"duplicate tool (YAML)", "tools:\n  a: {}\n  a: {}\n", "/tools/a", "duplicate key"},
		{"duplicate hide", `{"hide":["x","x"]}`, "/hide/1", "listed twice"},
		{"bad default", `{"default":"maybe"}`, "/default", "allow"},
		{"bad version", `{"version":"2"}`, "/version", "unsupported version"},
		{"tools not an object", `{"tools":[]}`, "/tools", "must be an object"},
		{"require not an array", `{"tools":{"a":{"require":{}}}}`, "/tools/a/require", "array of rules"},
		{"path_within absolute root", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.p","op":"path_within","value":["src","/etc"]}]}]}}}`, "/tools/a/require/0/conditions/0/value/1", "absolute"},
		{"path_within escaping root", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.p","op":"path_within","value":"../x"}]}]}}}`, "/tools/a/require/0/conditions/0/value", "escapes"},
		{"host_in with a URL", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.u","op":"host_in","value":["https://acme.com/"]}]}]}}}`, "/tools/a/require/0/conditions/0/value/0", "bare host"},
		{"host_in with a middle wildcard", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.u","op":"host_in","value":["a.*.com"]}]}]}}}`, "/tools/a/require/0/conditions/0/value/0", "leading"},
		{"cidr invalid", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.ip","op":"cidr","value":["10.0.0.0/33"]}]}]}}}`, "/tools/a/require/0/conditions/0/value/0", "invalid CIDR"},
		{"glob unterminated class", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.p","op":"glob","value":"[abc"}]}]}}}`, "/tools/a/require/0/conditions/0/value", "unterminated"},
		{"prefix empty", `{"tools":{"a":{"require":[{"conditions":[{"path":"args.p","op":"prefix","value":""}]}]}}}`, "/tools/a/require/0/conditions/0/value", "matches everything"},
		{"limit bad window", `{"tools":{"a":{"limits":[{"counter":"c","max":1,"window":"week","scope":"grant"}]}}}`, "/tools/a/limits/0/window", "minute"},
		{"limit bad scope", `{"tools":{"a":{"limits":[{"counter":"c","max":1,"window":"hour","scope":"user"}]}}}`, "/tools/a/limits/0/scope", "grant"},
		{"limit zero max", `{"tools":{"a":{"limits":[{"counter":"c","max":0,"window":"hour","scope":"grant"}]}}}`, "/tools/a/limits/0/max", "positive integer"},
		{"limit missing counter", `{"tools":{"a":{"limits":[{"max":1,"window":"hour","scope":"grant"}]}}}`, "/tools/a/limits/0/counter", "required"},
		{"limit increment_from not args", `{"tools":{"a":{"limits":[{"counter":"c","max":1,"window":"hour","scope":"grant","increment_from":"grant.id"}]}}}`, "/tools/a/limits/0/increment_from", "numeric argument"},
		{"limit counter twice in a tool", `{"tools":{"a":{"limits":[{"counter":"c","max":1,"window":"hour","scope":"grant"},{"counter":"c","max":2,"window":"hour","scope":"grant"}]}}}`, "/tools/a/limits/1/counter", "twice"},
		{"shared counter disagreeing", `{"tools":{"a":{"limits":[{"counter":"c","max":1,"window":"hour","scope":"grant"}]},"b":{"limits":[{"counter":"c","max":1,"window":"day","scope":"grant"}]}}}`, "/tools/b/limits/0", "same window and scope"},
		{"tool name with a slash is escaped", `{"tools":{"a/b":{"bogus":1}}}`, "/tools/a~1b/bogus", "unknown key"},
		{"YAML alias", "tools:\n  a: &x {}\n  b: *x\n", "/", "anchors and aliases"},
		{"trailing JSON", `{"tools":{}} {}`, "/", "after the document"},
		{"not an object", `[1,2]`, "/", "must be an object"},
		{"empty document", "  \n", "/", "empty document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "policy.json"
			if !strings.HasPrefix(strings.TrimSpace(tc.doc), "{") && !strings.HasPrefix(tc.doc, "[") {
				name = "policy.yaml"
			}
			p, err := Parse(name, []byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse accepted an invalid policy (%d tools)", len(p.Tools()))
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, want *ValidationError: %v", err, err)
			}
			for _, is := range ve.Issues {
				if is.Pointer == tc.pointer && strings.Contains(is.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("no issue at %s containing %q; got:\n%v", tc.pointer, tc.msg, err)
		})
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse("policy.json", []byte(`{"tools":{"run_command":{"require":[{"conditions":[{"path":"args.a","op":"exists"},{"path":"args.command","op":"regex","value":"(go"}]}]}}}`))
	want := "policy.json: /tools/run_command/require/0/conditions/1/value: invalid regex: missing closing ): `(go`"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got %v\nwant %s", err, want)
	}
}

func TestParseReportsEveryIssue(t *testing.T) {
	_, err := Parse("p.json", []byte(`{"bogus":1,"tools":{"a":{"require":[{"conditions":[{"path":"args.n","op":"gt","value":"x"},{"path":"nope","op":"eq","value":1}]}]}}}`))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Issues) != 3 {
		t.Fatalf("want 3 issues, got %v", err)
	}
}

// TestYAMLAndJSONAgree parses the same policy written both ways and compares decisions.
func TestYAMLAndJSONAgree(t *testing.T) {
	pj := mustLoad(t, "testdata/equivalent.json")
	py := mustLoad(t, "testdata/equivalent.yaml")
	if pj.SHA256() == py.SHA256() {
		t.Fatal("different documents must have different hashes")
	}
	reqs := []Request{
		{Tool: "run_command", Args: map[string]any{"command": "go test ./..."}},
		{Tool: "run_command", Args: map[string]any{"command": "go test; rm"}},
		{Tool: "run_command", Args: map[string]any{"command": "rm -rf /"}},
		{Tool: "write_file", Args: map[string]any{"path": "src/a.go"}},
		{Tool: "write_file", Args: map[string]any{"path": "src/a.md", "size": 10}},
		{Tool: "write_file", Args: map[string]any{"path": "src/a.md", "size": 10.5}},
		{Tool: "write_file", Args: map[string]any{"path": "../x"}},
		{Tool: "delete_file"},
		{Tool: "unknown"},
	}
	for _, r := range reqs {
		dj, dy := pj.Evaluate(r), py.Evaluate(r)
		dj.PolicySHA256, dy.PolicySHA256 = "", ""
		if !reflect.DeepEqual(dj, dy) {
			t.Errorf("%s %v: JSON says %+v, YAML says %+v", r.Tool, r.Args, dj, dy)
		}
	}
}

func TestSHA256IsOfTheBytes(t *testing.T) {
	data, err := os.ReadFile("testdata/equivalent.json")
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, string(data))
	// sha256sum testdata/equivalent.json
	if got := p.SHA256(); len(got) != 64 || got != mustLoad(t, "testdata/equivalent.json").SHA256() {
		t.Fatalf("SHA256 %q", got)
	}
	p2 := mustParse(t, string(data)+"\n")
	if p2.SHA256() == p.SHA256() {
		t.Fatal("one more byte must change the hash")
	}
}

func mustLoad(t testing.TB, path string) *Policy {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse("test.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
