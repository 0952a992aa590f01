package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// TestOneSessionCannotExhaustHostPids: the MCP SDK runs a session's calls concurrently, so
// without a gate 40 run_tests calls started 40 sandboxes at once (40 x 1,024 pids is more than
// this kind of host's pid_max of 32,768). The peak must stay within the host budget.
func TestOneSessionCannotExhaustHostPids(t *testing.T) {
	var cur, peak atomic.Int64
	var perRun sandbox.Limits
	var mu sync.Mutex
	fb := &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		mu.Lock()
		perRun = s.Limits
		mu.Unlock()
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		cur.Add(-1)
		return sandbox.Result{Stdout: []byte("ok\n")}, nil
	}}
	rt := newTestRuntime(t, "tests:\n  argv: [\"true\"]\n", `{"version":"1","default":"allow"}`, fb)
	cs := connect(t, rt, nil, "")
	const calls = 40
	var wg sync.WaitGroup
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := callTool(t, cs, "run_tests", map[string]any{}); r.IsError {
				t.Errorf("run_tests: %s", text(r))
			}
		}()
	}
	wg.Wait()
	maxPids, maxMem := hostRunBudget()
	allowed := min(maxPids/perRun.Pids, maxMem/perRun.MemoryBytes)
	t.Logf("per run %d pids %d bytes; budget %d pids %d bytes; peak %d of %d calls (allowed %d)",
		perRun.Pids, perRun.MemoryBytes, maxPids, maxMem, peak.Load(), calls, allowed)
	if peak.Load() > max(allowed, 1) {
		t.Fatalf("%d sandboxes ran at once; the host budget allows %d", peak.Load(), allowed)
	}
	if allowed >= calls {
		t.Logf("this host's budget admits all %d runs; the bound above could not fail here", calls)
	}
}

func TestRunGate(t *testing.T) {
	g := newRunGate(100, 1000)
	ctx := context.Background()
	must(t, g.acquire(ctx, 60, 100))
	// A second run over the pids budget waits until the first is released.
	got := make(chan error, 1)
	go func() { got <- g.acquire(ctx, 60, 100) }()
	select {
	case err := <-got:
		t.Fatalf("acquire over budget returned at once: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.release(60, 100)
	select {
	case err := <-got:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("waiting run not admitted after release")
	}
	// Cancelled while waiting: the error says so and nothing is held.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := g.acquire(cctx, 0, 950); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire under a cancelled context = %v", err)
	}
	g.release(60, 100)
	// A run larger than the whole budget runs when nothing else does.
	must(t, g.acquire(ctx, 500, 5000))
	g.release(500, 5000)
	if g.running != 0 || g.pids != 0 || g.mem != 0 {
		t.Fatalf("gate not empty: %d runs %d pids %d bytes", g.running, g.pids, g.mem)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
