package runtime

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/runc"
)

// TestBuiltinsInRunc runs every built-in tool's plan in a real runc container over a real git
// workspace: the toolbox in the busybox image, git and sh on the host image, write_file's
// one-call rw mount and run_tests' copy-on-write copy.
func TestBuiltinsInRunc(t *testing.T) {
	t.Setenv("AIRLOCK_RUNC", testenv.Runc(t))
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store: %v", err)
	}
	for _, name := range []string{"busybox", "host"} {
		if _, err := store.Resolve(context.Background(), name); err != nil {
			testenv.Unavailable(t, "%v", err)
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git: %v", err)
	}
	backend, err := runc.Open(context.Background(), runc.Config{StateDir: t.TempDir(), Images: store, Logger: zerolog.Nop()})
	if err != nil {
		testenv.Unavailable(t, "runc backend: %v", err)
	}
	defer backend.Close()

	ws := t.TempDir()
	gitRun := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", ws, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	mustWrite(t, filepath.Join(ws, "README.md"), "hello airlock\nsecond line\n")
	mustWrite(t, filepath.Join(ws, "src", "main.go"), "package main\n// TODO: ship\n")
	mustWrite(t, filepath.Join(ws, "Makefile"), "test:\n\techo ran-tests > out.txt && cat out.txt && touch /workspace/created-by-tests\n")
	gitRun("init", "-q")
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "first commit")
	mustWrite(t, filepath.Join(ws, "README.md"), "hello airlock\nchanged line\n")

	cfg, err := ParseConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(Overrides{Workspace: ws, StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	built, err := BuildTools(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*Tool{}
	for _, tl := range built {
		tools[tl.Name()] = tl
	}
	tests := []struct {
		name, tool string
		args       map[string]any
		want       string
		isError    bool
	}{
		{"read", "read_file", map[string]any{"path": "README.md"}, "changed line", false},
		{"read escape refused", "read_file", map[string]any{"path": "../etc/passwd"}, `".."`, true},
		{"list", "list_directory", map[string]any{}, "src/", false},
		{"search", "search_files", map[string]any{"pattern": "TODO", "glob": "*.go"}, "src/main.go:2: // TODO: ship", false},
		{"write", "write_file", map[string]any{"path": "docs/new.md", "content": "written\n"}, "created docs/new.md", false},
		{"command", "run_command", map[string]any{"command": "cat README.md | wc -l"}, "2", false},
		{"command cannot write workspace", "run_command", map[string]any{"argv": []any{"touch", "/workspace/x"}}, "Read-only file system", true},
		{"git status", "git_status", map[string]any{}, "M README.md", false},
		{"git diff", "git_diff", map[string]any{}, "+changed line", false},
		{"git log", "git_log", map[string]any{"max_count": 1}, "first commit", false},
		{"tests on a copy", "run_tests", map[string]any{}, "ran-tests", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := tools[tc.tool].Plan(context.Background(), tc.args)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := sandbox.New(opts...)
			if err != nil {
				t.Fatal(err)
			}
			res, err := backend.Run(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			out := pipeline.Output{ExitCode: res.ExitCode, Stdout: string(res.Stdout), Stderr: string(res.Stderr),
				Truncated: res.Truncated(), TimedOut: res.TimedOut, OOMKilled: res.OOMKilled}
			if tools[tc.tool].StdoutIsJSON() {
				// As stage 6 hands a JSON tool its output (pipeline.JSONOutput).
				if err := json.Unmarshal(res.Stdout, &out.Result); err != nil {
					t.Fatalf("%s printed no JSON object: %v: %q", tc.tool, err, res.Stdout)
				}
				out.Stdout = ""
			}
			r := tools[tc.tool].Render(out)
			if !strings.Contains(r.Text, tc.want) || r.IsError != tc.isError {
				t.Fatalf("%s: text %q isError %v; want %q isError %v", tc.tool, r.Text, r.IsError, tc.want, tc.isError)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(ws, "docs", "new.md")); err != nil || string(b) != "written\n" {
		t.Errorf("write_file did not reach the workspace: %q %v", b, err)
	}
	for _, leaked := range []string{"out.txt", "created-by-tests", "x"} {
		if _, err := os.Stat(filepath.Join(ws, leaked)); err == nil {
			t.Errorf("%s appeared in the workspace: run_tests/run_command changed it", leaked)
		}
	}
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
