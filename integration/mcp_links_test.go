package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// TestLinksCannotLaunderAPath runs policies/examples/workspace.json, which refuses to read
// "**/.env" and to write under .git, against a workspace that reaches both under other names:
// a committed notes.txt -> .env, docs/notes.txt -> ../.env, a symlinked directory cfg ->
// config, and src/settings.txt hard-linked to .git/config. The policy allows every one of
// those names; the file tools must refuse them and name the path to ask for instead, which the
// policy then refuses. workspace.json denies search_files (a search reads every file); the
// test allows it under docs/ and src/ to see that a search skips links too.
func TestLinksCannotLaunderAPath(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "policies", "examples", "workspace.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["tools"].(map[string]any)["search_files"] = map[string]any{"require": []any{map[string]any{"conditions": []any{
		map[string]any{"path": "args.path", "op": "path_within", "value": []any{"docs/", "src/"}}}}}}
	policy, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "DB_PASSWORD=correct-horse-battery-staple-7731\n"
	e := newMCPEnv(t, string(policy), map[string]string{
		".env":             secret,
		"config/app.yaml":  "db: x\n",
		".git/config":      "[core]\n\tbare = false\n",
		"docs/readme.txt":  "docs\n",
		"src/settings.txt": "",
	})
	ws := e.workspace
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(".env", filepath.Join(ws, "notes.txt")))
	must(os.Symlink("../.env", filepath.Join(ws, "docs/notes.txt")))
	must(os.Symlink("config", filepath.Join(ws, "cfg")))
	must(os.Remove(filepath.Join(ws, "src/settings.txt")))
	must(os.Link(filepath.Join(ws, ".git/config"), filepath.Join(ws, "src/settings.txt")))

	cs := e.connectStdio(t, nil)
	call := func(tool string, args map[string]any) (*mcp.CallToolResult, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatalf("%s %v: %v", tool, args, err)
		}
		text := mcpText(r)
		if strings.Contains(text, "correct-horse") {
			t.Errorf("%s %v returned the secret: %q", tool, args, text)
		}
		return r, text
	}
	refused := func(tool string, args map[string]any, want ...string) {
		t.Helper()
		r, text := call(tool, args)
		if !r.IsError || strings.HasPrefix(text, "[POLICY DENIED]") {
			t.Errorf("%s %v: want the tool's refusal, got isError=%v %q", tool, args, r.IsError, text)
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s %v: %q lacks %q", tool, args, text, w)
			}
		}
	}
	refused("read_file", map[string]any{"path": "notes.txt"}, `notes.txt is a symlink to ".env"`, `use the path ".env" instead`)
	refused("read_file", map[string]any{"path": "docs/notes.txt"}, `use the path ".env" instead`)
	refused("read_file", map[string]any{"path": "cfg/app.yaml"}, `cfg is a symlink to "config"`, `use the path "config/app.yaml" instead`)
	refused("read_file", map[string]any{"path": "src/settings.txt"}, "src/settings.txt has 2 hard links")
	refused("write_file", map[string]any{"path": "src/settings.txt", "content": "[core]\n\tfsmonitor = /workspace/evil\n"}, "has 2 hard links")
	if b, _ := os.ReadFile(filepath.Join(ws, ".git/config")); string(b) != "[core]\n\tbare = false\n" {
		t.Errorf(".git/config was rewritten through a hard link: %q", b)
	}

	// The names the refusals suggest are judged by the policy, which refuses them.
	r, text := call("read_file", map[string]any{"path": ".env"})
	if !r.IsError || !strings.HasPrefix(text, "[POLICY DENIED]") || !strings.Contains(text, "/tools/read_file/deny_if") {
		t.Errorf("read_file .env: want the policy's denial, got %q", text)
	}

	// list_directory shows where links point; search_files reads none of them and says so.
	_, text = call("list_directory", map[string]any{"path": "."})
	for _, w := range []string{"notes.txt@ -> .env", "cfg@ -> config"} {
		if !strings.Contains(text, w) {
			t.Errorf("list_directory text lacks %q:\n%s", w, text)
		}
	}
	_, text = call("search_files", map[string]any{"pattern": "DB_PASSWORD|core", "path": "docs"})
	if !strings.Contains(text, "no matches") || !strings.Contains(text, "skipped symlink docs/notes.txt -> ../.env") {
		t.Errorf("search_files under docs:\n%s", text)
	}
	_, text = call("search_files", map[string]any{"pattern": "core", "path": "src"})
	if !strings.Contains(text, "no matches") || !strings.Contains(text, "skipped src/settings.txt: 2 hard links") {
		t.Errorf("search_files under src:\n%s", text)
	}
}
