package runtime

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/testcache"
)

// planEnv builds the spec a tool's call would run and returns its environment.
func planEnv(t *testing.T, tl *Tool, args map[string]any) []string {
	t.Helper()
	opts, err := tl.Plan(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := sandbox.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return spec.Env
}

func toolsOf(t *testing.T, yaml string) map[string]*Tool {
	t.Helper()
	cfg, err := ParseConfig("x.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(Overrides{Workspace: t.TempDir(), StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	built, err := BuildTools(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*Tool{}
	for _, tl := range built {
		m[tl.Name()] = tl
	}
	return m
}

// TestProfileEnvWinsOverToolDefaults: a tool's own environment only fills the keys its
// profile's env leaves unset (run_tests used to replace GOCACHE and GOFLAGS the operator set),
// except the git tools' hardening, which no profile can undo.
func TestProfileEnvWinsOverToolDefaults(t *testing.T) {
	tools := toolsOf(t, `
profiles:
  tests:
    image: host
    workspace: copy
    user: workspace-owner
    env: ["GOCACHE=/cache/go-build", "GOFLAGS=-mod=vendor", "PATH=/opt/bin:/usr/bin:/bin"]
  command:
    image: host
    env: ["GIT_CONFIG_COUNT=0"]
  git:
    image: host
    env: ["HOME=/workspace", "GIT_CONFIG_NOSYSTEM=0", "LANG=C"]
tools:
  - name: vet
    description: d
    profile: tests
    argv: [go, vet]
tests:
  argv: [go, test, ./...]
`)
	tests := []struct {
		tool      string
		want, not []string
	}{
		{"run_tests", []string{"GOCACHE=/cache/go-build", "GOFLAGS=-mod=vendor", "PATH=/opt/bin:/usr/bin:/bin", "GOPATH=/tmp/go", "GOPROXY=off", "CI=1"},
			[]string{"GOCACHE=/tmp/go-cache", "GOFLAGS=-mod=mod"}},
		{"vet", []string{"GOCACHE=/cache/go-build", "PATH=/opt/bin:/usr/bin:/bin"}, nil},
		// The profile chose GIT_CONFIG_COUNT itself: the safe.directory default stays out
		// rather than mixing with it (and git then refuses, as it would on the host).
		{"run_command", []string{"GIT_CONFIG_COUNT=0"}, []string{"GIT_CONFIG_KEY_0=safe.directory"}},
		{"git_status", []string{"HOME=/tmp", "GIT_CONFIG_NOSYSTEM=1", "LANG=C"}, []string{"HOME=/workspace", "GIT_CONFIG_NOSYSTEM=0"}},
	}
	for _, tc := range tests {
		env := planEnv(t, tools[tc.tool], map[string]any{"command": "true"})
		for _, w := range tc.want {
			if !slices.Contains(env, w) {
				t.Errorf("%s: env lacks %s: %v", tc.tool, w, env)
			}
		}
		for _, n := range tc.not {
			if slices.Contains(env, n) {
				t.Errorf("%s: env has %s: %v", tc.tool, n, env)
			}
		}
	}
	// Without a profile env, the defaults are all there: the test cache's (tests.cache is on
	// by default), or without it the sandbox's own /tmp.
	plain := toolsOf(t, "tests:\n  argv: [go, test, ./...]\n")
	env := planEnv(t, plain["run_tests"], nil)
	for _, w := range append(testcache.Env(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local") {
		if !slices.Contains(env, w) {
			t.Errorf("run_tests default env lacks %s: %v", w, env)
		}
	}
	if slices.Contains(env, "GOCACHE=/tmp/go-cache") {
		t.Errorf("run_tests env names two build caches: %v", env)
	}
	uncached := toolsOf(t, "tests:\n  argv: [go, test, ./...]\n  cache: false\n")
	env = planEnv(t, uncached["run_tests"], nil)
	for _, w := range []string{"GOCACHE=/tmp/go-cache", "GOFLAGS=-mod=mod", "npm_config_cache=/tmp/npm-cache"} {
		if !slices.Contains(env, w) {
			t.Errorf("run_tests without a cache: env lacks %s: %v", w, env)
		}
	}
	env = planEnv(t, plain["run_command"], map[string]any{"command": "git status"})
	for _, w := range []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=/workspace"} {
		if !slices.Contains(env, w) {
			t.Errorf("run_command env lacks %s: %v", w, env)
		}
	}
}

// TestGitInRunCommand runs git through run_command in runc: the workspace belongs to root, the
// command runs as 65534, and git refused with "dubious ownership" before safe.directory came
// through the environment. Only /workspace is trusted: a repository elsewhere stays refused.
func TestGitInRunCommand(t *testing.T) {
	backend := realBackend(t)
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git: %v", err)
	}
	ws := t.TempDir()
	mustWrite(t, filepath.Join(ws, "a.txt"), "a\n")
	mustWrite(t, filepath.Join(ws, "nested", "b.txt"), "b\n")
	for _, dir := range []string{filepath.Join(ws, "nested"), ws} {
		for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first commit"}} {
			if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
	}
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
	var run *Tool
	for _, tl := range built {
		if tl.Name() == "run_command" {
			run = tl
		}
	}
	for _, tc := range []struct {
		command, want string
		exit          int
	}{
		{"git log --oneline && git status --short && echo clean", "first commit", 0},
		{"id -u", "65534", 0},
		// safe.directory names /workspace only, not "*": another repository in the workspace
		// (owned by root too) is still refused, as git refuses it on the host.
		{"cd nested && git log --oneline", "dubious ownership in repository at '/workspace/nested'", 128},
	} {
		opts, err := run.Plan(context.Background(), map[string]any{"command": tc.command})
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
		if res.ExitCode != tc.exit || !strings.Contains(out, tc.want) || strings.Contains(out, "dubious ownership in repository at '/workspace'\n") {
			t.Errorf("%q: exit %d, output %q; want exit %d and %q", tc.command, res.ExitCode, out, tc.exit, tc.want)
		}
	}
}
