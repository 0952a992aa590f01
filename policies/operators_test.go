package policies

import (
	"encoding/json"
	"fmt"
	"testing"
)

// condPolicy builds a one-condition require policy for tool "t".
func condPolicy(t testing.TB, op, value string) *Policy {
	t.Helper()
	doc := fmt.Sprintf(`{"tools":{"t":{"require":[{"conditions":[{"path":"args.v","op":%q,"value":%s}]}]}}}`, op, value)
	if value == "" {
		doc = fmt.Sprintf(`{"tools":{"t":{"require":[{"conditions":[{"path":"args.v","op":%q}]}]}}}`, op)
	}
	p, err := Parse("op.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// outcomeOf evaluates the single condition against args.v = arg (absent when arg is noArg).
func outcomeOf(p *Policy, arg any, ws string) outcome {
	req := Request{Tool: "t", Args: map[string]any{}}
	if _, skip := arg.(noArgT); !skip {
		req.Args["v"] = arg
	}
	c := &p.tools["t"].require[0].conds[0]
	return c.eval(&req, ws)
}

type noArgT struct{}

var noArg = noArgT{}

func num(s string) json.Number { return json.Number(s) }

func TestOperators(t *testing.T) {
	tests := []struct {
		name  string
		op    string
		value string
		arg   any
		want  outcome
	}{
		// eq / neq: typed, never coerced.
		{"eq string", "eq", `"a"`, "a", holds},
		{"eq string differs", "eq", `"a"`, "b", fails},
		{"eq number never equals a string", "eq", `5`, "5", badType},
		{"eq string never equals a number", "eq", `"5"`, num("5"), badType},
		{"eq json.Number", "eq", `5`, num("5"), holds},
		{"eq float64", "eq", `5`, 5.0, holds},
		{"eq int", "eq", `5`, 5, holds},
		{"eq 1 and 1.0", "eq", `1.0`, num("1"), holds},
		{"eq big ints exact", "eq", `9007199254740993`, num("9007199254740992"), fails},
		{"eq bool", "eq", `true`, true, holds},
		{"eq bool is not a string", "eq", `true`, "true", badType},
		{"eq missing", "eq", `"a"`, noArg, absent},
		{"eq null is missing", "eq", `"a"`, nil, absent},
		{"neq differs", "neq", `"prod"`, "dev", holds},
		{"neq same", "neq", `"prod"`, "prod", fails},
		{"neq other type is a mismatch, not a pass", "neq", `"prod"`, []any{"prod"}, badType},
		// Ordering.
		{"gt", "gt", `10`, num("11"), holds},
		{"gt equal", "gt", `10`, num("10"), fails},
		{"gte equal", "gte", `10`, 10.0, holds},
		{"lt fraction", "lt", `10`, num("9.999"), holds},
		{"lte fraction over", "lte", `50000`, num("50000.01"), fails},
		{"lt negative", "lt", `0`, -1, holds},
		{"gt exponent", "gt", `100`, num("1e3"), holds},
		{"gt string is a mismatch", "gt", `10`, "11", badType},
		{"gt bool is a mismatch", "gt", `0`, true, badType},
		{"gt huge number", "gt", `1`, num("1e400"), badType},
		// in / not_in: exact membership.
		{"in member", "in", `["#general","#eng"]`, "#general", holds},
		{"in is not a prefix test", "in", `["#general"]`, "#general-engineering", fails},
		{"in is case-sensitive", "in", `["#general"]`, "#General", fails},
		{"in numbers by value", "in", `[1,2,3]`, num("2.0"), holds},
		{"in number is not a string member", "in", `["5"]`, num("5"), fails},
		{"in array arg is a mismatch", "in", `["a"]`, []any{"a"}, badType},
		{"not_in outside", "not_in", `["kube-system"]`, "team-a", holds},
		{"not_in inside", "not_in", `["kube-system"]`, "kube-system", fails},
		{"not_in object arg is a mismatch", "not_in", `["a"]`, map[string]any{}, badType},
		// exists.
		{"exists present", "exists", ``, "x", holds},
		{"exists absent", "exists", ``, noArg, fails},
		{"exists null", "exists", ``, nil, fails},
		{"exists false absent", "exists", `false`, noArg, holds},
		{"exists false present", "exists", `false`, 0, fails},
		// regex.
		{"regex unanchored", "regex", `"b"`, "abc", holds},
		{"regex anchored", "regex", `"^b"`, "abc", fails},
		{"regex on a number", "regex", `"^[0-9]+$"`, num("5"), badType},
		// contains.
		{"contains substring", "contains", `"rm"`, "sudo rm -rf", holds},
		{"contains no substring", "contains", `"rm"`, "ls", fails},
		{"contains array element", "contains", `"admin"`, []any{"dev", "admin"}, holds},
		{"contains array is not substring", "contains", `"adm"`, []any{"admin"}, fails},
		{"contains array number", "contains", `3`, []any{num("1"), num("3")}, holds},
		{"contains array typed", "contains", `3`, []any{"3"}, fails},
		{"contains number in a string is a mismatch", "contains", `3`, "123", badType},
		{"contains on an object", "contains", `"a"`, map[string]any{"a": 1}, badType},
		// glob.
		{"glob star", "glob", `"*.go"`, "main.go", holds},
		{"glob star stops at slash", "glob", `"*.go"`, "cmd/main.go", fails},
		{"glob doublestar", "glob", `"**/*.go"`, "cmd/x/main.go", holds},
		{"glob doublestar zero dirs", "glob", `"**/*.go"`, "main.go", holds},
		{"glob whole string", "glob", `"src/*"`, "src/a/b", fails},
		{"glob question", "glob", `"a?c"`, "abc", holds},
		{"glob class", "glob", `"[ab].txt"`, "b.txt", holds},
		{"glob negated class", "glob", `"[!ab].txt"`, "a.txt", fails},
		{"glob regex metachar literal", "glob", `"a.c"`, "abc", fails},
		{"glob list", "glob", `["*.md","*.txt"]`, "a.txt", holds},
		// prefix / suffix.
		{"prefix", "prefix", `"#eng-"`, "#eng-alerts", holds},
		{"prefix no", "prefix", `"#eng-"`, "#engineering", fails},
		{"suffix list", "suffix", `[".md",".txt"]`, "a.txt", holds},
		{"suffix number", "suffix", `"5"`, num("5"), badType},
		// cidr.
		{"cidr inside", "cidr", `["10.0.0.0/8"]`, "10.1.2.3", holds},
		{"cidr outside", "cidr", `["10.0.0.0/8"]`, "11.0.0.1", fails},
		{"cidr single address", "cidr", `"192.168.1.1"`, "192.168.1.1", holds},
		{"cidr v4-mapped v6", "cidr", `["127.0.0.0/8"]`, "::ffff:127.0.0.1", holds},
		{"cidr v6", "cidr", `["fd00::/8"]`, "fd12::1", holds},
		{"cidr decimal form is a mismatch", "cidr", `["127.0.0.0/8"]`, "2130706433", badType},
		{"cidr short form is a mismatch", "cidr", `["127.0.0.0/8"]`, "127.1", badType},
		{"cidr leading zeros are a mismatch", "cidr", `["10.0.0.0/8"]`, "010.0.0.1", badType},
		{"cidr zone is a mismatch", "cidr", `["fe80::/10"]`, "fe80::1%eth0", badType},
		{"cidr hostname is a mismatch", "cidr", `["10.0.0.0/8"]`, "localhost", badType},
		// len.
		{"len_lte string runes", "len_lte", `3`, "héé", holds},
		{"len_lte string over", "len_lte", `3`, "abcd", fails},
		{"len_gte array", "len_gte", `2`, []any{1, 2}, holds},
		{"len_gte object", "len_gte", `2`, map[string]any{"a": 1}, fails},
		{"len_lte number is a mismatch", "len_lte", `3`, num("12"), badType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := condPolicy(t, tc.op, tc.value)
			if got := outcomeOf(p, tc.arg, ""); got != tc.want {
				t.Fatalf("%s %s against %#v: got %v, want %v", tc.op, tc.value, tc.arg, got, tc.want)
			}
		})
	}
}

func (o outcome) String() string {
	return [...]string{"holds", "fails", "missing", "mismatch"}[o]
}

func TestPaths(t *testing.T) {
	args := map[string]any{
		"a":    map[string]any{"b": "deep", "0": "key-zero"},
		"list": []any{"first", map[string]any{"x": num("7")}},
		"s":    "scalar",
		"n":    nil,
	}
	req := Request{Args: args, Grant: Grant{ID: "alice", Labels: map[string]string{"team": "infra"}}, Session: "sess-1"}
	tests := []struct {
		path string
		want any
		look lookup
	}{
		{"args.a.b", "deep", found},
		{"args.a.0", "key-zero", found},
		{"args.list.0", "first", found},
		{"args.list.1.x", num("7"), found},
		{"args.list.2", nil, missing},
		{"args.list.x", nil, mismatch},
		{"args.s.x", nil, mismatch},
		{"args.n", nil, missing},
		{"args.n.x", nil, missing},
		{"args.zzz", nil, missing},
		{"grant.id", "alice", found},
		{"grant.labels.team", "infra", found},
		{"grant.labels.role", nil, missing},
		{"session.id", "sess-1", found},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			p, err := compilePath(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			v, l := p.resolve(&req)
			if l != tc.look || v != tc.want {
				t.Fatalf("got %#v (%d), want %#v (%d)", v, l, tc.want, tc.look)
			}
		})
	}
	empty := Request{}
	for _, p := range []string{"grant.id", "session.id", "args.x", "grant.labels.a"} {
		cp, _ := compilePath(p)
		if _, l := cp.resolve(&empty); l != missing {
			t.Errorf("%s on an empty request: got %d, want missing", p, l)
		}
	}
}

func TestPathWithin(t *testing.T) {
	roots := []string{"src", "docs"}
	const ws = "/srv/repo"
	tests := []struct {
		name string
		path string
		ws   string
		want outcome
	}{
		{"inside", "src/a.go", ws, holds},
		{"root itself", "src", ws, holds},
		{"dot slash", "./src/a.go", ws, holds},
		{"double slash", "src//a.go", ws, holds},
		{"internal dot-dot that stays inside", "src/x/../a.go", ws, holds},
		{"other root", "docs/a.md", ws, holds},
		{"not a root", "tests/a.go", ws, fails},
		{"prefix without boundary", "srcfoo/a.go", ws, fails},
		{"dot-dot into a sibling root", "src/../docs/a", ws, holds},
		{"dot-dot out of src", "src/../Makefile", ws, fails},
		{"escape", "../etc/passwd", ws, badType},
		{"escape after a root", "src/../../etc/passwd", ws, badType},
		{"just dot-dot", "..", ws, badType},
		{"empty", "", ws, badType},
		{"NUL", "src/a\x00/../../../etc", ws, badType},
		{"backslash", `src\..\..\etc`, ws, badType},
		{"absolute outside", "/etc/passwd", ws, badType},
		{"absolute with no workspace", "/srv/repo/src/a.go", "", badType},
		{"absolute inside", "/srv/repo/src/a.go", ws, holds},
		{"absolute workspace sibling", "/srv/repo2/src/a.go", ws, badType},
		{"absolute escaping via dot-dot", "/srv/repo/../repo2/src/a", ws, badType},
		{"absolute workspace root itself", "/srv/repo", ws, fails},
		{"absolute inside but not a root", "/srv/repo/secrets", ws, fails},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pathWithin(tc.path, roots, tc.ws); got != tc.want {
				t.Fatalf("pathWithin(%q): got %v, want %v", tc.path, got, tc.want)
			}
		})
	}
	if got := pathWithin("anything/at/all", []string{"."}, ws); got != holds {
		t.Fatalf(`root "." must cover the workspace, got %v`, got)
	}
	if got := pathWithin("/srv/repo", []string{"."}, ws); got != holds {
		t.Fatalf(`root "." must cover the workspace root itself, got %v`, got)
	}
}

func TestHostIn(t *testing.T) {
	p := condPolicy(t, "host_in", `["acme.com","*.acme.com","api.github.com","10.0.0.5","[2001:db8::1]","bücher.example"]`)
	tests := []struct {
		name string
		url  string
		want outcome
	}{
		{"exact", "https://acme.com/x", holds},
		{"subdomain", "https://api.acme.com/x", holds},
		{"deep subdomain", "https://a.b.acme.com/", holds},
		{"http allowed", "http://acme.com/", holds},
		{"upper case", "HTTPS://API.GITHUB.COM/", holds},
		{"trailing dot", "https://acme.com./", holds},
		{"port ignored", "https://acme.com:8443/", holds},
		{"listed IPv4 literal", "http://10.0.0.5/", holds},
		{"listed IPv6 literal", "http://[2001:db8::1]:80/", holds},
		{"IDN listed in Unicode", "https://bücher.example/", holds},
		{"IDN in punycode", "https://xn--bcher-kva.example/", holds},
		{"unlisted", "https://example.com/", fails},
		{"no label boundary", "https://evilacme.com/", fails},
		{"suffix of the attacker", "https://acme.com.evil.example/", fails},
		{"userinfo", "https://acme.com@evil.example/", badType},
		{"userinfo with password", "https://acme.com:x@evil.example/", badType},
		{"backslash userinfo", `https://evil.example\@acme.com/`, badType},
		{"scheme other than http", "ftp://acme.com/", badType},
		{"file scheme", "file:///etc/passwd", badType},
		{"javascript scheme", "javascript://acme.com/%0aalert(1)", badType},
		{"no scheme", "acme.com", badType},
		{"scheme relative", "//acme.com/", badType},
		{"opaque", "https:acme.com", badType},
		{"empty host", "https:///path", badType},
		{"unlisted IPv4", "http://10.0.0.6/", fails},
		{"decimal IPv4", "http://167772165/", badType},
		{"hex IPv4", "http://0xa.0.0.5/", badType},
		{"short IPv4", "http://10.5/", badType},
		{"octal IPv4", "http://012.0.0.5/", badType},
		{"v4-mapped IPv6 of a listed IPv4", "http://[::ffff:10.0.0.5]/", holds},
		{"wildcard never matches an IP", "http://[::1]/", fails},
		{"homograph", "https://аcme.com/", fails},
		{"empty label", "https://acme..com/", badType},
		{"double trailing dot", "https://acme.com../", badType},
		{"bad escape", "https://acme.com/%zz", badType},
		{"space in host", "https://acme .com/", badType},
		{"not a string", "", badType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var arg any = tc.url
			if tc.name == "not a string" {
				arg = []any{"https://acme.com/"}
			}
			if got := outcomeOf(p, arg, ""); got != tc.want {
				t.Fatalf("host_in %q: got %v, want %v", tc.url, got, tc.want)
			}
		})
	}
}

func TestNumbers(t *testing.T) {
	tests := []struct {
		a, b any
		want int
	}{
		{num("1"), 1.0, 0},
		{num("1.5"), 1, 1},
		{int64(-3), num("-2.5"), -1},
		{uint64(1 << 63), int64(1<<63 - 1), 1},
		{num("9007199254740993"), num("9007199254740992"), 1},
		{num("9007199254740993"), 9007199254740992.0, 1},
		{num("-0"), 0, 0},
		{float32(2.5), num("2.5"), 0},
	}
	for _, tc := range tests {
		a, ok1 := asNumber(tc.a)
		b, ok2 := asNumber(tc.b)
		if !ok1 || !ok2 {
			t.Fatalf("%v or %v is not a number", tc.a, tc.b)
		}
		if got := cmpNumber(a, b); got != tc.want {
			t.Errorf("cmp(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	for _, bad := range []any{"5", true, nil, []any{}, num("NaN"), num("abc")} {
		if _, ok := asNumber(bad); ok {
			t.Errorf("%#v must not be a number", bad)
		}
	}
}
