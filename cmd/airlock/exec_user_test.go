package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

func TestParseExecUser(t *testing.T) {
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(ws)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	state := t.TempDir()

	req, err := parseExecArgs([]string{"--workspace", ws + ":rw", "--user", "workspace-owner", "--", "touch", "x"}, state)
	if err != nil {
		t.Fatal(err)
	}
	if req.spec.User != (sandbox.User{UID: st.Uid, GID: st.Gid}) {
		t.Errorf("user = %+v, want the workspace's owner %d:%d", req.spec.User, st.Uid, st.Gid)
	}
	if st.Uid == 0 && !slices.Contains(req.spec.Loosened, "user:root") {
		t.Errorf("running as root is not listed as loosened: %q", req.spec.Loosened)
	}
	if len(req.notes) != 0 {
		t.Errorf("notes = %q", req.notes)
	}
	// Flag order does not matter: --user may come before --workspace.
	req, err = parseExecArgs([]string{"--user", "workspace-owner", "--workspace", ws, "--", "ls"}, state)
	if err != nil || req.spec.User != (sandbox.User{UID: st.Uid, GID: st.Gid}) {
		t.Errorf("--user before --workspace: user %+v, err %v", req.spec.User, err)
	}
	req, err = parseExecArgs([]string{"--user", "nobody", "--workspace", ws, "--", "ls"}, state)
	if err != nil || req.spec.User != sandbox.Defaults().User || len(req.notes) != 0 {
		t.Errorf("--user nobody: user %+v notes %q err %v", req.spec.User, req.notes, err)
	}
	// rw on a directory 65534 cannot write: it runs (the command may only read) with a note
	// that says what will happen and what to add.
	if st.Uid != sandbox.Defaults().User.UID {
		req, err = parseExecArgs([]string{"--workspace", ws + ":rw", "--", "ls"}, state)
		if err != nil {
			t.Fatal(err)
		}
		if len(req.notes) != 1 || !strings.Contains(req.notes[0], "not writable by uid 65534") || !strings.Contains(req.notes[0], "--user workspace-owner") {
			t.Errorf("notes = %q", req.notes)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "workspace-owner", "--", "id"}, "give --workspace DIR too"},
		{[]string{"--user", "root", "--", "id"}, `unknown user "root"; choose nobody (uid 65534) or workspace-owner`},
	} {
		_, err := parseExecArgs(tc.args, state)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if code := execMain(context.Background(), []string{"-h"}, &out, &out, nil); code != 0 || !strings.Contains(out.String(), "--user USER") ||
		!strings.Contains(out.String(), `"Permission denied"`) {
		t.Errorf("help (exit %d) does not explain --user:\n%s", code, out.String())
	}
}

// TestExecUserWorkspaceOwner writes a root-owned directory through a real sandbox: as 65534
// the write fails (with a note saying so before the run), with --user workspace-owner it
// succeeds and the file belongs to the directory's owner.
func TestExecUserWorkspaceOwner(t *testing.T) {
	t.Setenv("AIRLOCK_RUNC", testenv.Runc(t))
	t.Setenv("AIRLOCK_STATE_DIR", testenv.StateDir())
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "runc needs root")
	}
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o755); err != nil { // root-owned, not writable by others
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := execMain(context.Background(), args, &stdout, &stderr, openRegistered)
		if code == exitSandbox {
			testenv.Unavailable(t, "airlock exec cannot run a sandbox here: %s", stderr.String())
		}
		return code, stdout.String() + stderr.String()
	}
	code, out := run("--workspace", ws+":rw", "--", "touch", "/workspace/as-nobody")
	if code == 0 || !strings.Contains(out, "Permission denied") || !strings.Contains(out, "note: "+ws+" is not writable by uid 65534") {
		t.Errorf("as nobody: exit %d, output %q; want a failed write and the note", code, out)
	}
	code, out = run("--workspace", ws+":rw", "--user", "workspace-owner", "--", "touch", "/workspace/as-owner")
	if code != 0 {
		t.Fatalf("--user workspace-owner: exit %d: %s", code, out)
	}
	fi, err := os.Stat(filepath.Join(ws, "as-owner"))
	if err != nil {
		t.Fatalf("the write did not reach the workspace: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("file owned by %d:%d, want the workspace's owner 0:0", st.Uid, st.Gid)
	}
}
