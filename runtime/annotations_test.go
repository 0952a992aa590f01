package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestAnnotationsFollowProfile: clients approve tools that say readOnlyHint without asking, so
// the hints come from the profile a tool runs with, read through tools/list: a run_command alias
// whose profile mounts the workspace rw, or run_command under a replaced rw command profile,
// is not read-only; the same built-ins on read-only or copy-on-write profiles still are.
func TestAnnotationsFollowProfile(t *testing.T) {
	scratch := t.TempDir()
	cfg := `profiles:
  command:
    image: host
    workspace: rw
  cmd-rw:
    image: host
    workspace: ro
    mounts:
      - {source: ` + scratch + `, target: /scratch, access: rw}
  cmd-copy:
    image: host
    workspace: copy
tools:
  - name: shell_rw
    builtin: run_command
    profile: cmd-rw
  - name: shell_copy
    builtin: run_command
    profile: cmd-copy
  - name: git_status_rw
    builtin: git_status
    profile: command
`
	rt := newTestRuntime(t, cfg, `{"version":"1","default":"allow"}`, &fakeBackend{})
	cs := connect(t, rt, nil, "")
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hints := map[string]*mcp.ToolAnnotations{}
	for _, tl := range res.Tools {
		hints[tl.Name] = tl.Annotations
	}
	for name, wantReadOnly := range map[string]bool{
		"run_command":   false, // the replaced command profile mounts the workspace rw
		"shell_rw":      false, // an rw mount
		"git_status_rw": false,
		"shell_copy":    true, // writes vanish with the container
		"read_file":     true,
		"git_diff":      true,
		"write_file":    false,
	} {
		a := hints[name]
		if a == nil {
			t.Errorf("%s: not listed or no annotations", name)
			continue
		}
		if a.ReadOnlyHint != wantReadOnly {
			t.Errorf("%s: readOnlyHint %v, want %v", name, a.ReadOnlyHint, wantReadOnly)
		}
		if !wantReadOnly && (a.DestructiveHint == nil || !*a.DestructiveHint) {
			t.Errorf("%s: writes the host but destructiveHint is %v", name, a.DestructiveHint)
		}
	}
}

// TestAnnotationsCannotClaimReadOnlyOnWritableProfile: an operator's read_only: true on a tool
// whose profile writes the host is refused at load, pointing at the key.
func TestAnnotationsCannotClaimReadOnlyOnWritableProfile(t *testing.T) {
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "airlock.yaml")
	yaml := `profiles:
  cmd-rw:
    image: host
    workspace: rw
tools:
  - name: shell_rw
    builtin: run_command
    profile: cmd-rw
    annotations: {read_only: true}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(Overrides{Workspace: ws, StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatal(err)
	}
	_, err = BuildTools(cfg)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Path != "tools[0].annotations.read_only" || !strings.Contains(err.Error(), "profile cmd-rw can write the host") {
		t.Fatalf("want a config error at tools[0].annotations.read_only, got %v", err)
	}
}
