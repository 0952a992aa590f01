package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/testcache"
)

func TestCacheCLI(t *testing.T) {
	state := t.TempDir()
	t.Setenv("AIRLOCK_STATE_DIR", state)
	ws, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"cache"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, _ := run("list"); code != 0 || !strings.Contains(out, "no test caches") {
		t.Errorf("list with none: %d %q", code, out)
	}
	dir, err := testcache.New(state, ws, 0).Prepare(os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go-build", "x"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := run("list"); code != 0 || !strings.Contains(out, ws) || !strings.Contains(out, "3.0Mi") {
		t.Errorf("list: %d %q", code, out)
	}
	if code, out, _ := run("list", "--json"); code != 0 || !strings.Contains(out, `"workspace": "`+ws+`"`) {
		t.Errorf("list --json: %d %q", code, out)
	}
	if code, out, errs := run("clear", ws); code != 0 || !strings.Contains(out, "cleared the test cache of "+ws) {
		t.Errorf("clear: %d %q %q", code, out, errs)
	}
	if code, _, errs := run("clear", ws); code != 1 || !strings.Contains(errs, "no test cache for") {
		t.Errorf("clear again: %d %q", code, errs)
	}
	if code, out, _ := run("clear", "--all"); code != 0 || !strings.Contains(out, "cleared 0 test cache(s)") {
		t.Errorf("clear --all: %d %q", code, out)
	}
	if code, _, errs := run("clear", "a", "b"); code != 2 || !strings.Contains(errs, "usage:") {
		t.Errorf("bad arguments: %d %q", code, errs)
	}
}
