package policies

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Fuzz targets: no input panics, and the same input always yields the same result.
// `go test` runs the seeds; `go test -fuzz FuzzX ./policies/` explores.

func seedPolicies(f *testing.F) [][]byte {
	var out [][]byte
	for _, pat := range []string{"examples/*.json", "testdata/*.json", "testdata/*.yaml"} {
		files, _ := filepath.Glob(pat)
		for _, fn := range files {
			b, err := os.ReadFile(fn)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		f.Fatal("no seed policies")
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, b := range seedPolicies(f) {
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte(`{"tools":{"a":{},"a":{}}}`), false)
	f.Add([]byte("tools:\n  a: &x {}\n  b: *x\n"), true)
	f.Add([]byte(`{"tools":{"t":{"require":[{"conditions":[{"path":"args.a.0.b","op":"host_in","value":["*.xn--bcher-kva.example","[::1]"]}]}]}}}`), false)
	f.Add([]byte(`{"tools":{"t":{"deny_if":[{"conditions":[{"path":"args.x","op":"glob","value":["[]a]*","**/x?"]}]}]}}}`), false)
	f.Fuzz(func(t *testing.T, data []byte, asYAML bool) {
		name := "fuzz.json"
		if asYAML {
			name = "fuzz.yaml"
		}
		p1, err1 := Parse(name, data)
		p2, err2 := Parse(name, data)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("Parse is not deterministic: %v vs %v", err1, err2)
		}
		if err1 != nil {
			if err1.Error() != err2.Error() {
				t.Fatalf("errors differ:\n%v\n%v", err1, err2)
			}
			return
		}
		if p1.SHA256() != p2.SHA256() {
			t.Fatal("hash differs")
		}
		// Every compiled policy evaluates without panicking, the same way twice.
		for _, tool := range append(p1.Tools(), "unlisted") {
			req := Request{Tool: tool, Args: map[string]any{"a": "x", "n": json.Number("1")}, Grant: Grant{ID: "g"}}
			if d1, d2 := p1.Evaluate(req), p2.Evaluate(req); !reflect.DeepEqual(d1, d2) {
				t.Fatalf("%s: %+v vs %+v", tool, d1, d2)
			}
		}
	})
}

func FuzzEvaluate(f *testing.F) {
	policies := seedPolicies(f)
	var compiled []*Policy
	for i, b := range policies {
		name := "seed.json"
		if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
			name = "seed.yaml"
		}
		p, err := Parse(name, b)
		if err != nil {
			f.Fatalf("seed %d: %v", i, err)
		}
		compiled = append(compiled, p)
	}
	// Seeds: every example case's call.
	cases, _ := filepath.Glob("examples/*.cases.yaml")
	for _, cpath := range cases {
		cf, err := LoadCases(cpath)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range cf.Cases {
			args, _ := json.Marshal(c.Args)
			f.Add(uint8(0), c.Tool, args, c.Grant, c.Session)
		}
	}
	f.Add(uint8(1), "run_command", []byte(`{"command":"go test ./...","n":1e999}`), "", "")
	f.Add(uint8(2), "write_file", []byte(`{"path":"/srv/repo/../../etc","size":-0}`), "g", "s")
	f.Fuzz(func(t *testing.T, which uint8, tool string, argsJSON []byte, grant, session string) {
		p := compiled[int(which)%len(compiled)]
		var numArgs, floatArgs map[string]any
		dec := json.NewDecoder(bytes.NewReader(argsJSON))
		dec.UseNumber()
		if dec.Decode(&numArgs) != nil {
			return
		}
		_ = json.Unmarshal(argsJSON, &floatArgs)
		for _, args := range []map[string]any{numArgs, floatArgs} {
			req := Request{Tool: tool, Args: args, Grant: Grant{ID: grant, Labels: map[string]string{"role": grant}}, Session: session}
			d1 := p.Evaluate(req)
			d2 := p.Evaluate(req)
			if !reflect.DeepEqual(d1, d2) {
				t.Fatalf("same input, different decisions: %+v vs %+v", d1, d2)
			}
			if d1.Verdict != Allow && d1.Verdict != Deny && d1.Verdict != Approve {
				t.Fatalf("bad verdict %q", d1.Verdict)
			}
			if d1.Rule == "" || d1.PolicySHA256 != p.SHA256() {
				t.Fatalf("decision without rule or hash: %+v", d1)
			}
			if d1.Verdict == Deny && d1.Message == "" {
				t.Fatalf("deny without a message: %+v", d1)
			}
			e := NewEngine(p, nil, WithWorkspace("/srv/repo"))
			d3, r := e.Decide(req)
			r.Rollback()
			d4, r := e.Decide(req)
			r.Rollback()
			if !reflect.DeepEqual(d3, d4) {
				t.Fatalf("Decide with rolled-back limits differs: %+v vs %+v", d3, d4)
			}
		}
	})
}

// FuzzPathWithin checks the security property: whatever path_within accepts is, once cleaned,
// inside a root and free of NUL and "..".
func FuzzPathWithin(f *testing.F) {
	for _, s := range []string{"src/a.go", "../x", "src/../../x", "/srv/repo/src/a", "/srv/repo/../x", "src\x00/../..", "", ".", "src", "/", "//srv//repo//src"} {
		f.Add(s)
	}
	roots := []string{"src", "docs/api"}
	f.Fuzz(func(t *testing.T, p string) {
		got := pathWithin(p, roots, "/srv/repo")
		if got != pathWithin(p, roots, "/srv/repo") {
			t.Fatal("not deterministic")
		}
		if got != holds {
			return
		}
		if strings.ContainsRune(p, 0) {
			t.Fatalf("accepted a NUL: %q", p)
		}
		c := path.Clean(p)
		if strings.HasPrefix(c, "/") {
			if !strings.HasPrefix(c, "/srv/repo/") {
				t.Fatalf("accepted %q outside the workspace", p)
			}
			c = strings.TrimPrefix(c, "/srv/repo/")
		}
		if c == ".." || strings.HasPrefix(c, "../") {
			t.Fatalf("accepted an escape: %q", p)
		}
		if !(c == "src" || strings.HasPrefix(c, "src/") || c == "docs/api" || strings.HasPrefix(c, "docs/api/")) {
			t.Fatalf("accepted %q (clean %q) outside the roots", p, c)
		}
	})
}

// FuzzHostIn checks that an accepted URL's host, as net/url sees it, is an allowed host or a
// subdomain of an allowed suffix, and that userinfo never passes.
func FuzzHostIn(f *testing.F) {
	for _, s := range []string{"https://acme.com/", "https://x.acme.com", "https://acme.com@evil.example/", "https://evilacme.com", "http://ACME.com.:80/", "https://xn--80ak6aa92e.com/", "http://[::1]/", "http://0x7f.1/"} {
		f.Add(s)
	}
	var hs hostSet
	for _, p := range []string{"acme.com", "*.acme.com"} {
		if err := compileHost(&hs, p); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := hs.match(raw)
		if got != hs.match(raw) {
			t.Fatal("not deterministic")
		}
		if got != holds {
			return
		}
		h, err := normaliseHost(hostOf(t, raw))
		if err != nil {
			t.Fatalf("accepted %q with an invalid host: %v", raw, err)
		}
		if h != "acme.com" && !strings.HasSuffix(h, ".acme.com") {
			t.Fatalf("accepted %q: host %q", raw, h)
		}
	})
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("accepted an unparsable URL %q", raw)
	}
	if u.User != nil {
		t.Fatalf("accepted userinfo: %q", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		t.Fatalf("accepted scheme %q: %q", u.Scheme, raw)
	}
	return u.Hostname()
}
