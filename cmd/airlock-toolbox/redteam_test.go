package main

import (
	"os"
	"path/filepath"
	"strconv"
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

// linkedWorkspace is a workspace whose secrets are reachable under other names, the way a
// hostile repository ships them: .env holds a secret a policy refuses by name (workspace.json
// denies "**/.env"), and every other path below leads to it or to .git/config.
//
//	.env                    the secret
//	.git/config             git's config, which write_file's policy refuses
//	notes.txt -> .env       committed symlink
//	docs/notes.txt -> ../.env
//	docs/abs.txt -> /workspace/.env
//	cfg -> config           symlinked directory; config/.env is another secret
//	docs/hard.txt           hard link of config/.env
//	src/settings.txt        hard link of .git/config
func linkedWorkspace(t *testing.T) string {
	t.Helper()
	root, _ := workspace(t)
	files := map[string]string{".env": "DB_PASSWORD=hunter2\n", "config/.env": "API_KEY=k3y\n", ".git/config": "[core]\n"}
	for p, c := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, p), []byte(c), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(root, "docs"), 0o755))
	must(t, os.Symlink(".env", filepath.Join(root, "notes.txt")))
	must(t, os.Symlink("../.env", filepath.Join(root, "docs/notes.txt")))
	must(t, os.Symlink("/workspace/.env", filepath.Join(root, "docs/abs.txt")))
	must(t, os.Symlink("config", filepath.Join(root, "cfg")))
	must(t, os.Link(filepath.Join(root, "config/.env"), filepath.Join(root, "docs/hard.txt")))
	must(t, os.Link(filepath.Join(root, ".git/config"), filepath.Join(root, "src/settings.txt")))
	return root
}

// TestReadFileRefusesLinks: the path a policy judges must be the file that is read. Each path
// below passes a policy that refuses "**/.env" and reads nothing but a link to a secret; the
// refusal names the link and, when it stays inside the workspace, the path to ask for instead
// (which the policy then judges).
func TestReadFileRefusesLinks(t *testing.T) {
	root := linkedWorkspace(t)
	tests := []struct {
		path   string
		errHas []string
	}{
		{"notes.txt", []string{`notes.txt is a symlink to ".env"`, `use the path ".env" instead`}},
		{"docs/notes.txt", []string{`docs/notes.txt is a symlink to "../.env"`, `use the path ".env" instead`}},
		{"docs/abs.txt", []string{`docs/abs.txt is a symlink to "/workspace/.env"`, `use the path ".env" instead`}},
		{"/workspace/notes.txt", []string{`notes.txt is a symlink to ".env"`}},
		{"cfg/.env", []string{`cfg is a symlink to "config"`, `use the path "config/.env" instead`}},
		{"docs/hard.txt", []string{"docs/hard.txt has 2 hard links"}},
		{"config/.env", []string{"config/.env has 2 hard links"}}, // every name of a hard-linked file
		{"src/settings.txt", []string{"src/settings.txt has 2 hard links"}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			m, code := call(t, root, "read_file", map[string]any{"path": tc.path})
			if code != 1 {
				t.Fatalf("read_file %s through a link succeeded (exit %d): %v", tc.path, code, m)
			}
			msg, _ := m["error"].(string)
			for _, w := range tc.errHas {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, "k3y") {
				t.Errorf("error carries the secret: %q", msg)
			}
		})
	}
	// The names the errors suggest are the files themselves, which a policy then judges.
	if m, code := call(t, root, "read_file", map[string]any{"path": ".env"}); code != 0 || m["content"] != "DB_PASSWORD=hunter2\n" {
		t.Fatalf("read_file .env: exit %d: %v", code, m)
	}
}

// TestSearchFilesSkipsLinks: a search reads no file under a second name, and says which links
// it skipped, so an agent can search their targets by name.
func TestSearchFilesSkipsLinks(t *testing.T) {
	root := linkedWorkspace(t)
	for _, tc := range []struct {
		name string
		args map[string]any
		want string // skipped_links as path[->target|#links]
	}{
		{"under docs", map[string]any{"pattern": "hunter2|k3y|core", "path": "docs"},
			"docs/abs.txt->/workspace/.env docs/hard.txt#2 docs/notes.txt->../.env"},
		{"under src with a glob", map[string]any{"pattern": "core", "path": "src", "glob": "*.txt"}, "src/settings.txt#2"},
		{"the whole workspace", map[string]any{"pattern": "hunter2|k3y|core", "glob": "*.txt"},
			"docs/abs.txt->/workspace/.env docs/hard.txt#2 docs/notes.txt->../.env notes.txt->.env src/settings.txt#2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, code := call(t, root, "search_files", tc.args)
			if code != 0 {
				t.Fatalf("exit %d: %v", code, m)
			}
			if got := matches(m["matches"]); got != "" {
				t.Errorf("matches %q: the search read a file through a link", got)
			}
			var got []string
			for _, x := range asList(m["skipped_links"]) {
				l := x.(map[string]any)
				s := l["path"].(string)
				if tg, ok := l["target"].(string); ok {
					s += "->" + tg
				}
				if n, ok := l["links"].(float64); ok {
					s += "#" + strconv.Itoa(int(n))
				}
				got = append(got, s)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("skipped_links = %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
	// A starting path through a symlinked directory is refused like read_file's.
	m, code := call(t, root, "search_files", map[string]any{"pattern": "KEY", "path": "cfg"})
	if msg, _ := m["error"].(string); code != 1 || !strings.Contains(msg, `cfg is a symlink to "config"`) {
		t.Fatalf("search under a symlinked directory: exit %d: %v", code, m)
	}
	// A single file as the starting path is still searched, and a link there is refused.
	if m, code := call(t, root, "search_files", map[string]any{"pattern": "hunter2", "path": ".env"}); code != 0 || matches(m["matches"]) != ".env:1" {
		t.Fatalf("search of .env itself: exit %d: %v", code, m)
	}
	if m, code := call(t, root, "search_files", map[string]any{"pattern": "k3y", "path": "docs/hard.txt"}); code != 0 || matches(m["matches"]) != "" {
		t.Fatalf("search of a hard link: exit %d: %v", code, m)
	}
}

// TestWriteFileRefusesHardLinks: writing a hard-linked file writes every name of it, so
// src/settings.txt (a policy-approved path) linked to .git/config would rewrite .git/config.
func TestWriteFileRefusesHardLinks(t *testing.T) {
	root := linkedWorkspace(t)
	m, code := call(t, root, "write_file", map[string]any{"path": "src/settings.txt", "content": "[core]\n\tfsmonitor = evil\n"})
	if msg, _ := m["error"].(string); code != 1 || !strings.Contains(msg, "src/settings.txt has 2 hard links") {
		t.Fatalf("write through a hard link: exit %d: %v", code, m)
	}
	fileIs(t, filepath.Join(root, ".git/config"), "[core]\n")
	m, code = call(t, root, "write_file", map[string]any{"path": "cfg/.env", "content": "x"})
	if msg, _ := m["error"].(string); code != 1 || !strings.Contains(msg, `use the path "config/.env" instead`) {
		t.Fatalf("write through a symlinked directory: exit %d: %v", code, m)
	}
	fileIs(t, filepath.Join(root, "config/.env"), "API_KEY=k3y\n")
	m, code = call(t, root, "write_file", map[string]any{"path": "docs/notes.txt", "content": "x"})
	if msg, _ := m["error"].(string); code != 1 || !strings.Contains(msg, `docs/notes.txt is a symlink to "../.env"`) {
		t.Fatalf("write through a symlink: exit %d: %v", code, m)
	}
	fileIs(t, filepath.Join(root, ".env"), "DB_PASSWORD=hunter2\n")
}

// TestListDirectoryShowsLinks: list_directory is how an agent learns where a link points, so
// it can ask for the target by name.
func TestListDirectoryShowsLinks(t *testing.T) {
	root := linkedWorkspace(t)
	m, code := call(t, root, "list_directory", map[string]any{"path": "docs"})
	if code != 0 {
		t.Fatalf("exit %d: %v", code, m)
	}
	got := map[string]map[string]any{}
	for _, x := range asList(m["entries"]) {
		e := x.(map[string]any)
		got[e["name"].(string)] = e
	}
	eq(t, got["notes.txt"], map[string]any{"name": "notes.txt", "type": "symlink", "target": "../.env"})
	eq(t, got["abs.txt"], map[string]any{"name": "abs.txt", "type": "symlink", "target": "/workspace/.env"})
	eq(t, got["hard.txt"], map[string]any{"name": "hard.txt", "type": "file", "size": 12, "links": 2})
	if m, code := call(t, root, "list_directory", map[string]any{"path": "cfg"}); code != 1 || !strings.Contains(m["error"].(string), `cfg is a symlink to "config"`) {
		t.Fatalf("list through a symlinked directory: exit %d: %v", code, m)
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }
