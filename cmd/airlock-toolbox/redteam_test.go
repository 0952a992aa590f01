package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFileRefusesSymlinkedDirectories: a repository can ship symlinks to its own .git
// (g -> .git, h -> .git/hooks). The policy checks the lexical path, so write_file must not
// follow a symlink in any directory component, or "g/config" would rewrite .git/config (whose
// core.fsmonitor the host's git runs) while the policy saw a harmless path.
func TestWriteFileRefusesSymlinkedDirectories(t *testing.T) {
	tests := []struct {
		name   string
		link   string // symlink created in the workspace
		target string // its target, relative
		path   string // write_file path
		victim string // file that must keep its content, relative to the workspace
	}{
		{name: "dir link to .git", link: "g", target: ".git", path: "g/HEAD", victim: ".git/HEAD"},
		{name: "dir link to .git/hooks creates nothing", link: "h", target: ".git", path: "h/hooks/pre-commit", victim: ".git/hooks/pre-commit"},
		{name: "nested link", link: "src/up", target: "..", path: "src/up/.git/HEAD", victim: ".git/HEAD"},
		{name: "link inside tree", link: "s", target: "src", path: "s/main.go", victim: "src/main.go"},
		{name: "absolute form", link: "g", target: ".git", path: "/workspace/g/HEAD", victim: ".git/HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := workspace(t)
			must(t, os.Symlink(tc.target, filepath.Join(root, tc.link)))
			before, _ := os.ReadFile(filepath.Join(root, tc.victim))
			m, code := call(t, root, "write_file", map[string]any{"path": tc.path, "content": "[core]\n\tfsmonitor = evil\n"})
			if code != 1 {
				t.Fatalf("write through a symlinked directory succeeded (exit %d): %v", code, m)
			}
			if msg, _ := m["error"].(string); !strings.Contains(msg, "symlink") {
				t.Fatalf("error %q does not say symlink", msg)
			}
			after, _ := os.ReadFile(filepath.Join(root, tc.victim))
			if string(before) != string(after) {
				t.Fatalf("%s changed: %q -> %q", tc.victim, before, after)
			}
		})
	}
}

// TestWriteFileCreatesRealParents: the component walk still creates missing directories and
// reports created correctly.
func TestWriteFileCreatesRealParents(t *testing.T) {
	root, _ := workspace(t)
	m, code := call(t, root, "write_file", map[string]any{"path": "x/y/z.txt", "content": "hi"})
	if code != 0 || m["created"] != true {
		t.Fatalf("exit %d: %v", code, m)
	}
	fileIs(t, filepath.Join(root, "x/y/z.txt"), "hi")
	m, code = call(t, root, "write_file", map[string]any{"path": "x/y/z.txt", "content": "again"})
	if code != 0 || m["created"] != false {
		t.Fatalf("exit %d: %v", code, m)
	}
	m, code = call(t, root, "write_file", map[string]any{"path": "a.txt/z", "content": "hi"})
	if code != 1 || !strings.Contains(m["error"].(string), "not a directory") {
		t.Fatalf("exit %d: %v", code, m)
	}
}

// TestNonCanonicalPathsRefused: policy rules other than path_within compare the raw path, so
// the toolbox must not clean ".env/" into ".env" (a suffix ".env" deny rule read it) or
// "./secrets.txt" into "secrets.txt" (an eq rule).
func TestNonCanonicalPathsRefused(t *testing.T) {
	root, _ := workspace(t)
	must(t, os.WriteFile(filepath.Join(root, ".env"), []byte("DB_PASSWORD=x\n"), 0o644))
	tests := []struct {
		tool string
		args map[string]any
	}{
		{"read_file", map[string]any{"path": ".env/"}},
		{"read_file", map[string]any{"path": "/workspace/.env/"}},
		{"read_file", map[string]any{"path": "./a.txt"}},
		{"read_file", map[string]any{"path": "src//main.go"}},
		{"read_file", map[string]any{"path": "src/./main.go"}},
		{"list_directory", map[string]any{"path": "src/"}},
		{"search_files", map[string]any{"pattern": "x", "path": "./src"}},
		{"write_file", map[string]any{"path": "a.txt/", "content": "x"}},
		{"write_file", map[string]any{"path": "./a.txt", "content": "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.tool+" "+tc.args["path"].(string), func(t *testing.T) {
			m, code := call(t, root, tc.tool, tc.args)
			if code != 1 || !strings.Contains(m["error"].(string), "canonical") {
				t.Fatalf("exit %d: %v; want a refusal naming the canonical form", code, m)
			}
		})
	}
	fileIs(t, filepath.Join(root, "a.txt"), "one\ntwo\nthree\n")
	// The canonical forms still work, including the workspace root spelled three ways.
	for _, p := range []string{"", ".", "/workspace", "/workspace/"} {
		if m, code := call(t, root, "list_directory", map[string]any{"path": p}); code != 0 {
			t.Errorf("list_directory %q: exit %d: %v", p, code, m)
		}
	}
}
