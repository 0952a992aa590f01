package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCallUsage covers the exit-2 paths of `airlock call` and `airlock serve`, which never
// reach a sandbox.
func TestCallUsage(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("workspace: .\nbakend: runc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noBackend := filepath.Join(dir, "nobackend.yaml")
	if err := os.WriteFile(noBackend, []byte("backend: nosuch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_STATE_DIR", t.TempDir())
	tests := []struct {
		name string
		cmd  func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int
		args []string
		want string
	}{
		{"call no args", callCmd, nil, "want TOOL and 'JSON'"},
		{"call bad json", callCmd, []string{"read_file", "{"}, "not valid JSON"},
		{"call bad flag", callCmd, []string{"--nope", "read_file", "{}"}, "flag provided but not defined"},
		{"call config error has line", callCmd, []string{"--config", badCfg, "read_file", "{}"}, "bad.yaml:2: bakend: unknown key, did you mean backend?"},
		{"call unknown backend", callCmd, []string{"--config", noBackend, "--workspace", dir, "read_file", "{}"}, `unknown sandbox backend "nosuch"`},
		{"call --backend overrides the config", callCmd, []string{"--backend", "podman", "--workspace", dir, "read_file", "{}"}, `unknown sandbox backend "podman"; available: containerd, docker, runc`},
		{"serve --backend unknown", serveCmd, []string{"--stdio", "--backend", "podman", "--workspace", dir}, `unknown sandbox backend "podman"`},
		{"serve neither mode", serveCmd, nil, "exactly one of --stdio, --http ADDR or --socket PATH"},
		{"serve both modes", serveCmd, []string{"--stdio", "--http", "127.0.0.1:0"}, "exactly one of --stdio, --http ADDR or --socket PATH"},
		{"serve public bind without token", serveCmd, []string{"--http", "0.0.0.0:8811", "--workspace", dir}, "without a bearer token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := tc.cmd(context.Background(), tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q, want it to contain %q", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty on a usage error: %q", stdout.String())
			}
		})
	}
}

func callCmd(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) int {
	return cmdCall(ctx, args, stdout, stderr)
}

func serveCmd(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) int {
	return cmdServe(ctx, args, stdout, stderr)
}

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"/usr/bin/airlock": "/usr/bin/airlock",
		"/a b/airlock":     "'/a b/airlock'",
		"it's":             `'it'\''s'`,
		"":                 "''",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
