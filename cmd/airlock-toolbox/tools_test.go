package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// workspace builds a small tree in a temp dir:
//
//	a.txt            "one\ntwo\nthree\n"
//	src/main.go      "package main\n// TODO fix\n"
//	src/lib/x.go     "package lib\n// TODO later\n"
//	.git/HEAD        "TODO in git\n"
//	bin.dat          binary
//	escape -> /etc/hostname-like file outside the root
//	inside -> a.txt
//	outdir -> a directory outside the root
//	fifo             a named pipe
func workspace(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "ws")
	outside = filepath.Join(base, "outside")
	files := map[string]string{
		"ws/a.txt":          "one\ntwo\nthree\n",
		"ws/src/main.go":    "package main\n// TODO fix\n",
		"ws/src/lib/x.go":   "package lib\n// TODO later\n",
		"ws/.git/HEAD":      "TODO in git\n",
		"ws/bin.dat":        "TODO\x00\x01\x02",
		"outside/secret":    "TOP SECRET\n",
		"outside/dir/inner": "inner\n",
	}
	for p, c := range files {
		full := filepath.Join(base, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "escape")))
	must(t, os.Symlink("a.txt", filepath.Join(root, "inside")))
	must(t, os.Symlink(filepath.Join(outside, "dir"), filepath.Join(root, "outdir")))
	must(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	return root, outside
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// call runs the toolbox like main does and decodes its single JSON object.
func call(t *testing.T, root, tool string, args any) (map[string]any, int) {
	t.Helper()
	raw, err := json.Marshal(args)
	must(t, err)
	var out bytes.Buffer
	code := run(root, []string{tool, string(raw)}, strings.NewReader(""), &out)
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%s: output is not one JSON object: %q", tool, out.String())
	}
	return m, code
}

func TestTools(t *testing.T) {
	root, _ := workspace(t)
	tests := []struct {
		name     string
		tool     string
		args     any
		wantCode int
		check    func(t *testing.T, m map[string]any)
		errHas   string
	}{
		{name: "read whole file", tool: "read_file", args: map[string]any{"path": "a.txt"},
			check: func(t *testing.T, m map[string]any) {
				eq(t, m["content"], "one\ntwo\nthree\n")
				eq(t, m["lines"], 3.0)
				eq(t, m["truncated"], false)
			}},
		{name: "read offset and limit", tool: "read_file", args: map[string]any{"path": "a.txt", "offset": 1, "limit": 1},
			check: func(t *testing.T, m map[string]any) {
				eq(t, m["content"], "two\n")
				eq(t, m["next_offset"], 2.0)
				eq(t, m["truncated"], true)
			}},
		{name: "read absolute under workspace", tool: "read_file", args: map[string]any{"path": "/workspace/src/main.go"},
			check: func(t *testing.T, m map[string]any) { eq(t, m["path"], "src/main.go") }},
		{name: "read symlink inside root refused", tool: "read_file", args: map[string]any{"path": "inside"}, wantCode: 1,
			errHas: `inside is a symlink to "a.txt"`},
		{name: "read binary", tool: "read_file", args: map[string]any{"path": "bin.dat"},
			check: func(t *testing.T, m map[string]any) {
				eq(t, m["binary"], true)
				eq(t, m["content"], nil)
			}},
		{name: "read dotdot refused", tool: "read_file", args: map[string]any{"path": "src/../../outside/secret"}, wantCode: 1, errHas: `".."`},
		{name: "read dotdot that stays inside refused", tool: "read_file", args: map[string]any{"path": "src/../a.txt"}, wantCode: 1, errHas: `".."`},
		{name: "read absolute outside refused", tool: "read_file", args: map[string]any{"path": "/etc/passwd"}, wantCode: 1, errHas: "outside /workspace"},
		{name: "read symlink escaping refused", tool: "read_file", args: map[string]any{"path": "escape"}, wantCode: 1, errHas: "outside the workspace"},
		{name: "read through symlinked dir escaping refused", tool: "read_file", args: map[string]any{"path": "outdir/inner"}, wantCode: 1, errHas: "outside the workspace"},
		{name: "read NUL refused", tool: "read_file", args: map[string]any{"path": "a.txt\x00"}, wantCode: 1, errHas: "NUL"},
		{name: "read directory", tool: "read_file", args: map[string]any{"path": "src"}, wantCode: 1, errHas: "list_directory"},
		{name: "read fifo does not hang", tool: "read_file", args: map[string]any{"path": "fifo"}, wantCode: 1, errHas: "not a regular file"},
		{name: "read missing", tool: "read_file", args: map[string]any{"path": "nope"}, wantCode: 1, errHas: "no such file"},
		{name: "read unknown argument", tool: "read_file", args: map[string]any{"path": "a.txt", "Path": "/etc/passwd"}, wantCode: 1, errHas: "unknown field"},
		{name: "read duplicate argument", tool: "read_file", args: json.RawMessage(`{"path":"a.txt","path":"escape"}`), wantCode: 1, errHas: "duplicate"},
		{name: "list root", tool: "list_directory", args: map[string]any{},
			check: func(t *testing.T, m map[string]any) {
				got := names(m["entries"])
				eq(t, got, ".git/dir a.txt/file bin.dat/file escape/symlink fifo/other inside/symlink outdir/symlink src/dir")
			}},
		{name: "list subdir", tool: "list_directory", args: map[string]any{"path": "src"},
			check: func(t *testing.T, m map[string]any) { eq(t, names(m["entries"]), "lib/dir main.go/file") }},
		{name: "list symlinked dir escaping refused", tool: "list_directory", args: map[string]any{"path": "outdir"}, wantCode: 1},
		{name: "list a file", tool: "list_directory", args: map[string]any{"path": "a.txt"}, wantCode: 1, errHas: "not a directory"},
		{name: "search all", tool: "search_files", args: map[string]any{"pattern": "TODO"},
			check: func(t *testing.T, m map[string]any) {
				eq(t, matches(m["matches"]), "src/lib/x.go:2 src/main.go:2")
			}},
		{name: "search glob by name", tool: "search_files", args: map[string]any{"pattern": "TODO", "glob": "main.*"},
			check: func(t *testing.T, m map[string]any) { eq(t, matches(m["matches"]), "src/main.go:2") }},
		{name: "search glob by path", tool: "search_files", args: map[string]any{"pattern": "package", "glob": "src/**/*.go"},
			check: func(t *testing.T, m map[string]any) { eq(t, matches(m["matches"]), "src/lib/x.go:1 src/main.go:1") }},
		{name: "search under path", tool: "search_files", args: map[string]any{"pattern": "TODO", "path": "src/lib"},
			check: func(t *testing.T, m map[string]any) { eq(t, matches(m["matches"]), "src/lib/x.go:2") }},
		{name: "search max results", tool: "search_files", args: map[string]any{"pattern": ".", "max_results": 2},
			check: func(t *testing.T, m map[string]any) {
				eq(t, len(m["matches"].([]any)), 2)
				eq(t, m["truncated"], true)
			}},
		{name: "search bad regex", tool: "search_files", args: map[string]any{"pattern": "("}, wantCode: 1, errHas: "missing closing"},
		{name: "search dotdot refused", tool: "search_files", args: map[string]any{"pattern": "x", "path": ".."}, wantCode: 1},
		{name: "unknown tool", tool: "rm", args: map[string]any{}, wantCode: 1, errHas: "unknown tool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, code := call(t, root, tc.tool, tc.args)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %v", code, tc.wantCode, m)
			}
			if tc.wantCode != 0 {
				msg, _ := m["error"].(string)
				if msg == "" || !strings.Contains(msg, tc.errHas) {
					t.Fatalf("error %q, want it to contain %q", msg, tc.errHas)
				}
				if strings.Contains(msg, root) {
					t.Errorf("error leaks the host root path: %q", msg)
				}
				return
			}
			tc.check(t, m)
		})
	}
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		wantCode int
		errHas   string
		verify   func(t *testing.T, root, outside string)
	}{
		{name: "create with parents", path: "new/deep/f.txt",
			verify: func(t *testing.T, root, _ string) { fileIs(t, filepath.Join(root, "new/deep/f.txt"), "hello") }},
		{name: "overwrite", path: "a.txt",
			verify: func(t *testing.T, root, _ string) { fileIs(t, filepath.Join(root, "a.txt"), "hello") }},
		{name: "symlink final refused", path: "inside", wantCode: 1, errHas: "symlink",
			verify: func(t *testing.T, root, _ string) { fileIs(t, filepath.Join(root, "a.txt"), "one\ntwo\nthree\n") }},
		{name: "symlink escaping final refused", path: "escape", wantCode: 1, errHas: "symlink",
			verify: func(t *testing.T, _, outside string) { fileIs(t, filepath.Join(outside, "secret"), "TOP SECRET\n") }},
		{name: "symlinked parent escaping refused", path: "outdir/inner", wantCode: 1,
			verify: func(t *testing.T, _, outside string) { fileIs(t, filepath.Join(outside, "dir/inner"), "inner\n") }},
		{name: "dotdot refused", path: "../outside/secret", wantCode: 1, errHas: `".."`,
			verify: func(t *testing.T, _, outside string) { fileIs(t, filepath.Join(outside, "secret"), "TOP SECRET\n") }},
		{name: "directory refused", path: "src", wantCode: 1, errHas: "directory"},
		{name: "workspace itself refused", path: "/workspace", wantCode: 1, errHas: "workspace itself"},
		{name: "fifo refused", path: "fifo", wantCode: 1, errHas: "fifo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := workspace(t)
			m, code := call(t, root, "write_file", map[string]any{"path": tc.path, "content": "hello"})
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %v", code, tc.wantCode, m)
			}
			if tc.wantCode != 0 {
				if msg, _ := m["error"].(string); !strings.Contains(msg, tc.errHas) {
					t.Fatalf("error %q, want it to contain %q", msg, tc.errHas)
				}
			} else {
				eq(t, m["bytes"], 5.0)
			}
			if tc.verify != nil {
				tc.verify(t, root, outside)
			}
		})
	}
}

func TestStdinArguments(t *testing.T) {
	root, _ := workspace(t)
	big := strings.Repeat("x", 300<<10) // beyond the 128 KiB limit of one argv string
	raw, _ := json.Marshal(map[string]any{"path": "big.txt", "content": big})
	var out bytes.Buffer
	if code := run(root, []string{"write_file", "-"}, bytes.NewReader(raw), &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	fileIs(t, filepath.Join(root, "big.txt"), big)
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.TempDir(), []string{"read_file"}, strings.NewReader(""), &out); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(out.String(), `"error"`) {
		t.Fatalf("usage error is not JSON: %q", out.String())
	}
}

func TestGlobRegexp(t *testing.T) {
	tests := []struct {
		glob, path string
		want       bool
	}{
		{"*.go", "a/b/c.go", true},
		{"*.go", "a/b/c.ts", false},
		{"src/*.go", "src/a.go", true},
		{"src/*.go", "src/x/a.go", false},
		{"src/**/*.go", "src/a.go", true},
		{"src/**/*.go", "src/x/y/a.go", true},
		{"**/test_?.py", "a/test_1.py", true},
		{"a+b.txt", "a+b.txt", true},
		{"a+b.txt", "aab.txt", false},
	}
	for _, tc := range tests {
		t.Run(tc.glob+" "+tc.path, func(t *testing.T) {
			re, err := globRegexp(tc.glob)
			must(t, err)
			if got := matchGlob(re, tc.glob, tc.path); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func eq(t *testing.T, got, want any) {
	t.Helper()
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Fatalf("got %s, want %s", gj, wj)
	}
}

func fileIs(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	if string(b) != want {
		t.Fatalf("%s = %q, want %q", p, b, want)
	}
}

func names(v any) string {
	var s []string
	for _, e := range v.([]any) {
		m := e.(map[string]any)
		s = append(s, m["name"].(string)+"/"+m["type"].(string))
	}
	return strings.Join(s, " ")
}

func matches(v any) string {
	var s []string
	for _, e := range v.([]any) {
		m := e.(map[string]any)
		b, _ := json.Marshal(m["line"])
		s = append(s, m["path"].(string)+":"+string(b))
	}
	return strings.Join(s, " ")
}

// TestOutputFitsPipelineCap: even a file of invalid UTF-8 (six JSON bytes per input byte)
// yields one JSON object under the pipeline's 256 KiB output cap.
func TestOutputFitsPipelineCap(t *testing.T) {
	root := t.TempDir()
	bad := bytes.Repeat([]byte{0xff, 0x01, 'x', '\n'}, 200<<10)
	must(t, os.WriteFile(filepath.Join(root, "bad.txt"), bad, 0o644))
	long := strings.Repeat(strings.Repeat("needle ", 57)+"\n", 5000) // 2 MB: under the 4 MiB search limit
	must(t, os.WriteFile(filepath.Join(root, "long.txt"), []byte(long), 0o644))
	for _, tc := range []struct {
		tool string
		args any
	}{
		{"read_file", map[string]any{"path": "bad.txt", "limit": 20000}},
		{"read_file", map[string]any{"path": "long.txt", "limit": 20000}},
		{"search_files", map[string]any{"pattern": "needle", "max_results": 1000}},
		{"search_files", map[string]any{"pattern": "x", "max_results": 1000}},
	} {
		raw, _ := json.Marshal(tc.args)
		var out bytes.Buffer
		if code := run(root, []string{tc.tool, string(raw)}, strings.NewReader(""), &out); code != 0 {
			t.Fatalf("%s: exit %d: %.200s", tc.tool, code, out.String())
		}
		if out.Len() > 256<<10 {
			t.Errorf("%s %s: %d bytes of JSON, over the 256 KiB cap", tc.tool, raw, out.Len())
		}
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil || m["truncated"] != true {
			t.Errorf("%s %s: truncated = %v (%v)", tc.tool, raw, m["truncated"], err)
		}
	}
}

func TestJSONLen(t *testing.T) {
	for _, s := range []string{"", "abc", "a\"b\\c\n\t\r", "\x01<>&", "héllo ✓", "\xff\xfe", "\u2028", "x\x00y"} {
		b, _ := json.Marshal(s)
		if got, want := jsonLen(s), len(b)-2; got != want {
			t.Errorf("jsonLen(%q) = %d, want %d (%s)", s, got, want, b)
		}
	}
}
