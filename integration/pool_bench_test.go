package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/pool"
)

// benchClients is how many MCP clients call at once in the throughput variants.
const benchClients = 10

// benchThink is the idle time before each timed call of the paced MCP variant: enough for the
// server's pool to replace the sandbox the previous call used (about one `runc run`), as an
// agent's own think time between calls gives it.
const benchThink = 250 * time.Millisecond

// benchSettle is the pause after the pool is refilled, before pool_run's timed call: the
// sandbox runc has just started is still starting its init (a real agent's think time is
// far longer).
const benchSettle = 20 * time.Millisecond

// BenchmarkPool measures what prestarted sandboxes buy, side by side in one process with raw
// runc on the same busybox image:
//
//   - runc_run: raw `runc run` of benchBundle (the floor of a cold sandbox);
//   - pool_run: `true` through the runc backend behind a pool, each call finding a sandbox
//     ready (the pool is refilled and settled, untimed, before each call); reports how many
//     times faster than runc_run its median is;
//   - mcp_http_pool: run_command ["true"] over MCP HTTP through `airlock serve` with its
//     default pool, after benchThink of idle time;
//   - runc_run_10 and mcp_http_10_clients: throughput with benchClients callers back to back,
//     raw runc and the MCP server; reports calls/s, p95, the server's peak RSS and its
//     calls/s as a fraction of raw runc's.
func BenchmarkPool(b *testing.B) {
	runc := testenv.Runc(b)
	mcpRequireImages(b, benchImage)
	medians := &benchMedians{m: map[string]time.Duration{}}
	ctx := context.Background()
	runcRun := benchRuncRun(b, runc)

	backend := benchBackend(b, runc)
	const size = 2
	p := pool.New(backend, pool.Config{Size: size, Logger: zerolog.Nop()})
	b.Cleanup(func() { p.Close() }) // before the backend's, registered first
	spec, err := sandbox.New(sandbox.WithImage(benchImage), sandbox.WithArgv("true"), sandbox.WithWorkspace(b.TempDir(), sandbox.ReadOnly))
	if err != nil {
		b.Fatal(err)
	}
	refilled := func() {
		deadline := time.Now().Add(30 * time.Second)
		for p.Stats().Ready < size {
			if time.Now().After(deadline) {
				b.Fatalf("the pool did not refill within 30s: %+v", p.Stats())
			}
			time.Sleep(2 * time.Millisecond)
		}
		// The newest sandbox's init is still starting when runc returns.
		time.Sleep(benchSettle)
	}
	poolRun := func() error {
		res, err := p.Run(ctx, spec)
		switch {
		case err != nil:
			return err
		case res.ExitCode != 0:
			return fmt.Errorf("true exited %d: %s", res.ExitCode, res.Stderr)
		case !res.Warm:
			return fmt.Errorf("the call ran cold")
		}
		return nil
	}

	e := newMCPEnv(b, benchPolicy, nil)
	e.quiet = true
	e.commandProfile = benchCommandProfile
	srv := e.startHTTP(b)
	// Sessions per sub-benchmark: a client's standalone stream ends with its HTTP client's
	// timeout (connectHTTP's 60 s), and the whole benchmark takes longer.
	connect := func(b *testing.B, n int) []*mcp.ClientSession {
		sessions := make([]*mcp.ClientSession, n)
		for i := range sessions {
			sessions[i] = connectHTTP(b, srv, "", nil)
		}
		return sessions
	}
	mcpCall := func(cs *mcp.ClientSession) error {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"argv": []string{"true"}}})
		if err != nil {
			return err
		}
		if res.IsError {
			raw, _ := json.Marshal(res)
			return fmt.Errorf("run_command true failed: %s", raw)
		}
		return nil
	}

	b.Run("runc_run", func(b *testing.B) { benchMeasure(b, medians, "runc_run", runcRun) })
	b.Run("pool_run", func(b *testing.B) {
		med := benchMeasurePaced(b, medians, "pool_run", refilled, poolRun).median()
		if raw := medians.get("runc_run"); raw > 0 {
			b.ReportMetric(float64(raw)/float64(med), "x-faster-than-runc-run")
		}
	})
	b.Run("mcp_http_pool", func(b *testing.B) {
		sessions := connect(b, 1)
		med := benchMeasurePaced(b, medians, "mcp_http_pool", func() { time.Sleep(benchThink) },
			func() error { return mcpCall(sessions[0]) }).median()
		if raw := medians.get("runc_run"); raw > 0 {
			b.ReportMetric(float64(raw)/float64(med), "x-faster-than-runc-run")
		}
	})
	var rawRate float64
	b.Run("runc_run_10", func(b *testing.B) {
		rawRate = benchConcurrent(b, benchClients, func(int) error { return runcRun() })
	})
	b.Run("pool_run_10", func(b *testing.B) {
		rate := benchConcurrent(b, benchClients, func(int) error { return poolRun() })
		if rawRate > 0 {
			b.ReportMetric(rate/rawRate, "rate/runc-rate")
		}
	})
	b.Run("mcp_http_10_clients", func(b *testing.B) {
		sessions := connect(b, benchClients)
		rate := benchConcurrent(b, benchClients, func(i int) error { return mcpCall(sessions[i]) })
		if rawRate > 0 {
			b.ReportMetric(rate/rawRate, "rate/runc-rate")
		}
		if hwm, err := procStatusKB(srv.pid, "VmHWM"); err == nil {
			b.ReportMetric(float64(hwm)/1024, "serve-peak-rss-MB")
		}
	})
}

// benchConcurrent makes b.N calls from n goroutines (call gets the goroutine's index) and
// reports calls/s, median and p95; it returns the rate.
func benchConcurrent(b *testing.B, n int, call func(i int) error) float64 {
	b.Helper()
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  benchLatencies
		errs = make(chan error, n)
		wg   sync.WaitGroup
	)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := call(i); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "calls/s")
	b.ReportMetric(benchMS(lat.median()), "median-ms")
	b.ReportMetric(benchMS(lat.quantile(0.95)), "p95-ms")
	return rate
}

// procStatusKB reads a kB field of /proc/PID/status, such as VmHWM (peak RSS).
func procStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}
