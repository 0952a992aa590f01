package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/pipeline"
)

func writeAuditLog(t *testing.T, path string, decisions ...string) {
	t.Helper()
	l, _, err := pipeline.OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i, d := range decisions {
		if err := l.Append(&pipeline.Record{AuditID: fmt.Sprintf("id-%d", i), Tool: "t", Decision: d}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditCLI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	writeAuditLog(t, path, "allow", "deny", "allow", "deny", "invalid")

	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cmdAudit(context.Background(), args, &out, &errb)
		return code, out.String() + errb.String()
	}
	cases := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
		notWant  []string
	}{
		{name: "verify intact", args: []string{"verify", path}, wantCode: 0, want: []string{"OK", "5 records", "id-4"}},
		{name: "tail", args: []string{"tail", "-n", "2", path}, wantCode: 0, want: []string{`"id-3"`, `"id-4"`}, notWant: []string{`"id-2"`}},
		{name: "tail denied", args: []string{"tail", path, "--denied"}, wantCode: 0, want: []string{`"id-1"`, `"id-3"`}, notWant: []string{`"id-0"`, `"id-4"`}},
		{name: "tail more than there are", args: []string{"tail", "-n", "50", path}, wantCode: 0, want: []string{`"id-0"`, `"id-4"`}},
		{name: "missing file", args: []string{"verify", filepath.Join(dir, "nope")}, wantCode: 2},
		{name: "unknown subcommand", args: []string{"rotate"}, wantCode: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(tc.args...)
			if code != tc.wantCode {
				t.Fatalf("airlock audit %v = %d, want %d\n%s", tc.args, code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}

	// Tamper: swap records 2 and 3; verify exits 1 naming the last intact record.
	b, _ := os.ReadFile(path)
	l := strings.SplitAfter(string(b), "\n")
	l[2], l[3] = l[3], l[2]
	os.WriteFile(path, []byte(strings.Join(l, "")), 0o600)
	code, out := run("verify", path)
	if code != 1 || !strings.Contains(out, "last intact record id-1") {
		t.Fatalf("verify of a reordered log = %d %q, want 1 naming id-1", code, out)
	}

	// Truncating the last record is caught by the head file.
	path2 := filepath.Join(dir, "b.jsonl")
	writeAuditLog(t, path2, "allow", "allow", "allow")
	b, _ = os.ReadFile(path2)
	l = strings.SplitAfter(string(b), "\n")
	os.WriteFile(path2, []byte(strings.Join(l[:2], "")), 0o600)
	if code, out := run("verify", path2); code != 1 || !strings.Contains(out, "removed from the end") {
		t.Fatalf("verify of a truncated log = %d %q, want 1", code, out)
	}

	// Default path comes from $AIRLOCK_STATE_DIR.
	t.Setenv("AIRLOCK_STATE_DIR", dir)
	writeAuditLog(t, filepath.Join(dir, "audit", "audit.jsonl"), "allow")
	if code, out := run("verify"); code != 0 || !strings.Contains(out, filepath.Join(dir, "audit", "audit.jsonl")) {
		t.Fatalf("verify with the default path = %d %q", code, out)
	}
}
