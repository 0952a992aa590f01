package runtime

import (
	"context"
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

// TestGitToolsRunNoRepositoryPrograms: a hostile repository's .git/config names programs that
// git would run from git_status, git_diff and git_log: filter drivers bound by .gitattributes
// (one named "a=b", which a -c override cannot address), and gpg.program through
// log.showSignature on a commit carrying a signature. Each prints a marker; none may run, so a
// policy that allows the git tools but not run_command does not hand out code execution.
func TestGitToolsRunNoRepositoryPrograms(t *testing.T) {
	t.Setenv("AIRLOCK_RUNC", testenv.Runc(t))
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store: %v", err)
	}
	if _, err := store.Resolve(context.Background(), "host"); err != nil {
		testenv.Unavailable(t, "%v", err)
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
	git := func(stdin string, args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", ws, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	const marker = "REPO-PROGRAM-RAN"
	mustWrite(t, filepath.Join(ws, "evil.sh"), "#!/bin/sh\necho "+marker+"\necho "+marker+" >&2\ncat\n")
	if err := os.Chmod(filepath.Join(ws, "evil.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(ws, "a.txt"), "one\n")
	mustWrite(t, filepath.Join(ws, "b.txt"), "one\n")
	git("", "init", "-q")
	git("", "add", ".")
	tree := git("", "write-tree")
	signed := "tree " + tree + "\nauthor T <t@example.com> 1700000000 +0000\ncommitter T <t@example.com> 1700000000 +0000\n" +
		"gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned commit\n"
	commit := git(signed, "hash-object", "-t", "commit", "-w", "--stdin")
	git("", "update-ref", "HEAD", commit)
	// Arm the repository only now, so the host's git above never ran the filters.
	mustWrite(t, filepath.Join(ws, ".gitattributes"), "a.txt filter=x\nb.txt filter=a=b\n")
	f, err := os.OpenFile(filepath.Join(ws, ".git", "config"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("[filter \"x\"]\n\tclean = /workspace/evil.sh\n\tprocess = /workspace/evil.sh\n" +
		"[filter \"a=b\"]\n\tclean = /workspace/evil.sh\n" +
		"[log]\n\tshowSignature = true\n[gpg]\n\tprogram = /workspace/evil.sh\n" +
		"[core]\n\tfsmonitor = /workspace/evil.sh\n[diff]\n\texternal = /workspace/evil.sh\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mustWrite(t, filepath.Join(ws, "a.txt"), "one\ntwo\n")
	mustWrite(t, filepath.Join(ws, "b.txt"), "one\ntwo\n")

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
	}{
		{"status", "git_status", map[string]any{}, "M a.txt"},
		{"diff", "git_diff", map[string]any{}, "+two"},
		{"diff of the a=b file", "git_diff", map[string]any{"path": "b.txt"}, "+two"},
		{"log of a signed commit", "git_log", map[string]any{}, "signed commit"},
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
			out := string(res.Stdout) + string(res.Stderr)
			if strings.Contains(out, marker) {
				t.Fatalf("%s ran a program named by the repository:\n%s", tc.tool, out)
			}
			r := tools[tc.tool].Render(pipeline.Output{ExitCode: res.ExitCode, Stdout: string(res.Stdout), Stderr: string(res.Stderr)})
			if res.ExitCode != 0 || !strings.Contains(r.Text, tc.want) {
				t.Fatalf("%s: exit %d, text %q; want %q", tc.tool, res.ExitCode, r.Text, tc.want)
			}
		})
	}
}
