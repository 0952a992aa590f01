package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPRunTestsProgress calls run_tests with a progress token from the Go SDK over HTTP: the
// client must receive progress notifications for that token while the tests run, get the
// test output back, and the files the tests wrote must stay in the throwaway copy of the
// workspace, not reach the host.
func TestMCPRunTestsProgress(t *testing.T) {
	e := newMCPEnv(t, mcpPolicy, map[string]string{"hello.txt": mcpHello})
	e.extraYAML = "tests:\n  argv: [\"/bin/sh\", \"-c\", \"sleep 3; touch made-by-tests; echo tests-passed\"]\n"

	var mu sync.Mutex
	var progress []*mcp.ProgressNotificationParams
	opts := &mcp.ClientOptions{ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, req.Params)
	}}
	cs := connectHTTP(t, e.startHTTP(t), "", opts)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	params := &mcp.CallToolParams{Name: "run_tests", Arguments: map[string]any{}}
	params.SetProgressToken("airlock-test-progress")
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("run_tests: %v", err)
	}
	raw, _ := jsonString(res)
	if out := mcpText(res); res.IsError || !strings.HasPrefix(out, "tests-passed\n") {
		t.Errorf("run_tests: want success with stdout tests-passed, got %s", raw)
	}
	if _, err := os.Stat(filepath.Join(e.workspace, "made-by-tests")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file the tests wrote reached the host workspace (%v); run_tests must work on a copy", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(progress) < 2 {
		t.Fatalf("%d progress notifications during a 3 s test run, want one a second", len(progress))
	}
	last := -1.0
	for _, p := range progress {
		if p.ProgressToken != "airlock-test-progress" {
			t.Errorf("progress for token %v, want airlock-test-progress", p.ProgressToken)
		}
		if p.Progress <= last {
			t.Errorf("progress %v after %v: want strictly increasing", p.Progress, last)
		}
		if p.Total != 0 {
			t.Errorf("progress carries total %v: the amount of work of a test run is not known", p.Total)
		}
		last = p.Progress
	}
}

// TestMCPRunCommandProgress: run_command reports progress too, over stdio, strictly
// increasing and without a total.
func TestMCPRunCommandProgress(t *testing.T) {
	e := newMCPEnv(t, mcpPolicy, map[string]string{"hello.txt": mcpHello})
	e.commandProfile = strings.Replace(mcpCommandProfile, "timeout: 2s", "timeout: 30s", 1)
	var mu sync.Mutex
	var progress []*mcp.ProgressNotificationParams
	cs := e.connectStdio(t, &mcp.ClientOptions{ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, req.Params)
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	params := &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "sleep 3; echo done"}}
	params.SetProgressToken(42)
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("run_command: %v", err)
	}
	if res.IsError {
		raw, _ := jsonString(res)
		t.Fatalf("run_command failed: %s", raw)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progress) < 2 {
		t.Fatalf("%d progress notifications during a 3 s command, want one a second", len(progress))
	}
	for i, p := range progress {
		if i > 0 && p.Progress <= progress[i-1].Progress || p.Total != 0 {
			t.Errorf("notification %d: progress %v (before: %v), total %v; want strictly increasing, no total", i, p.Progress, progress[max(i-1, 0)].Progress, p.Total)
		}
	}
}
