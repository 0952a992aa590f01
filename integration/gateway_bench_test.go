package integration

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	runcbackend "github.com/airlock-mcp/airlock/sandbox/runc"
)

// BenchmarkGatewayStdioEcho measures one echo call to the test upstream (integration/
// testupstream), in one process so the numbers are comparable:
//
//   - direct: the Go SDK client runs the binary itself over stdio (CommandTransport, no
//     sandbox, no Airlock): the floor;
//   - sandboxed: the same binary in a long-lived runc sandbox of the upstream profile's shape
//     (sandbox.Start on the runc backend in this process), the Go SDK client on its pipes:
//     what the container adds to the stdio path, without Airlock's stages;
//   - airlock: a Go SDK client over stdio to a real `airlock serve --stdio`, whose config runs
//     the binary as a session-lived stdio upstream on runc: every stage (schema, policy, the
//     intent record, the call on the upstream session, sanitising, the fsynced audit record)
//     plus the second stdio hop;
//   - airlock_denied: the same server and session, an echo the policy denies: Airlock's front
//     half alone (stdio hop, JSON-RPC, schema, policy, the fsynced audit record), no upstream;
//   - airlock_shm: airlock with its audit log on tmpfs (/dev/shm), where fsync costs nothing:
//     what the audit fsync adds;
//   - paired: every variant back to back in rotating order; the medians of the per-round
//     differences from direct are the steadier estimate of what Airlock adds on a shared
//     machine.
//
// airlock reports added-ms (its median minus direct's), the medians of its audit records'
// stage timings, and the median fsync latency of the audit log's file system (one fsync per
// call: the closing record; the intent record is not synced).
func BenchmarkGatewayStdioEcho(b *testing.B) {
	runc := testenv.Runc(b)
	mcpRequireImages(b, "host")
	medians := &benchMedians{m: map[string]time.Duration{}}
	calls, auditPath := gatewayBenchCalls(b, runc)

	for _, name := range []string{"direct", "sandboxed", "airlock", "airlock_denied", "airlock_shm"} {
		b.Run(name, func(b *testing.B) {
			benchMeasure(b, medians, name, calls[name])
			med := medians.get(name)
			if d := medians.get("direct"); d > 0 && name != "direct" {
				b.ReportMetric(benchMS(med-d), "added-ms")
			}
			if name != "airlock" {
				return
			}
			if s := medians.get("sandboxed"); s > 0 {
				b.ReportMetric(benchMS(med-s), "added-ms-vs-sandboxed")
			}
			stages := map[string]benchLatencies{}
			for _, rec := range readAudit(b, auditPath) {
				if rec.Tool != "t__echo" || rec.Decision != "allow" {
					continue
				}
				ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
				stages["total"] = append(stages["total"], ms(rec.DurationMS))
				stages["excl-exec"] = append(stages["excl-exec"], ms(rec.DurationMS-rec.StageMS["execute"]))
				for k, v := range rec.StageMS {
					stages[k] = append(stages[k], ms(v))
				}
			}
			for _, k := range slices.Sorted(maps.Keys(stages)) {
				b.ReportMetric(benchMS(stages[k].median()), "stage-"+k+"-ms")
			}
			b.ReportMetric(benchMS(benchFsync(b, filepath.Dir(auditPath))), "fsync-ms")
		})
	}

	b.Run("paired", func(b *testing.B) {
		order := []string{"direct", "sandboxed", "airlock", "airlock_denied", "airlock_shm"}
		vsDirect := map[string]benchLatencies{}
		benchPaired(b, calls, order, func(took map[string]time.Duration) {
			for _, name := range order[1:] {
				vsDirect[name] = append(vsDirect[name], took[name]-took["direct"])
			}
		})
		b.ReportMetric(benchMS(vsDirect["airlock"].median()), "added-ms")
		b.ReportMetric(benchMS(vsDirect["airlock"].quantile(0.95)), "p95-added-ms")
		for _, name := range order[1:] {
			if name != "airlock" {
				b.ReportMetric(benchMS(vsDirect[name].median()), name+"-added-ms")
			}
		}
	})
}

// gatewayBenchCalls starts the three variants once (they live for the whole benchmark) and
// returns one echo call of each, and the airlock variant's audit log.
func gatewayBenchCalls(b *testing.B, runc string) (map[string]func() error, string) {
	b.Helper()
	ctx := context.Background()
	up := newTestUpstream(b)
	echo := func(cs *mcp.ClientSession, tool string) func() error {
		return func() error {
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "ping"}})
			if err != nil {
				return err
			}
			if res.IsError || mcpText(res) != "echo: ping" {
				return fmt.Errorf("%s: error %v: %q", tool, res.IsError, mcpText(res))
			}
			return nil
		}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-bench", Version: "0"}, nil)

	// direct
	cmd := exec.Command(up.bin, "--desc-file", filepath.Join(up.dir, "lookup.txt"))
	cmd.Stderr = os.Stderr
	direct, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		b.Fatalf("starting the test upstream directly: %v", err)
	}
	b.Cleanup(func() { direct.Close() })

	// sandboxed: the upstream profile's sandbox (host image, no workspace, 512Mi, 256 pids)
	// with the binary's directory at /opt/mcp, on the runc backend in this process.
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		b.Fatal(err)
	}
	backend, err := runcbackend.New(runcbackend.Config{Runc: runc, StateDir: filepath.Join(b.TempDir(), "run"),
		Images: store, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { backend.Close() })
	spec, err := sandbox.New(sandbox.WithImage("host"), sandbox.WithMemory(512<<20), sandbox.WithPids(256),
		sandbox.WithTimeout(time.Hour), sandbox.WithMount(sandbox.Mount{Source: up.dir, Target: "/opt/mcp", Access: sandbox.ReadOnly}),
		sandbox.WithArgv("/opt/mcp/testupstream", "--desc-file=/opt/mcp/lookup.txt"))
	if err != nil {
		b.Fatal(err)
	}
	p, err := sandbox.Start(ctx, backend, spec, os.Stderr)
	if err != nil {
		b.Fatalf("starting the sandboxed test upstream: %v", err)
	}
	b.Cleanup(func() { p.Stop() })
	sandboxed, err := client.Connect(ctx, &mcp.IOTransport{Reader: p.Stdout, Writer: p.Stdin}, nil)
	if err != nil {
		b.Fatalf("connecting to the sandboxed test upstream: %v", err)
	}
	b.Cleanup(func() { sandboxed.Close() })

	// airlock and airlock_denied: one server, one session.
	e := newMCPEnv(b, gatewayBenchPolicy, nil)
	e.quiet = true
	name := uniqueUpstream(b, "bench")
	e.extraYAML = "builtins: []\nupstreams:\n" + up.yaml(name, "t")
	through := e.connectStdio(b, nil)
	denied := func() error {
		res, err := through.CallTool(ctx, &mcp.CallToolParams{Name: "t__echo", Arguments: map[string]any{"text": "deny"}})
		if err != nil {
			return err
		}
		if !res.IsError || !strings.HasPrefix(mcpText(res), "[POLICY DENIED]") {
			return fmt.Errorf("echo deny was not denied: %q", mcpText(res))
		}
		return nil
	}

	// airlock_shm: the audit log on tmpfs.
	shm := newMCPEnv(b, gatewayBenchPolicy, nil)
	shm.quiet = true
	shmDir, err := os.MkdirTemp("/dev/shm", "airlock-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(shmDir) })
	shm.audit = filepath.Join(shmDir, "audit.jsonl")
	shmName := uniqueUpstream(b, "bench-shm")
	shm.extraYAML = "builtins: []\nupstreams:\n" + up.yaml(shmName, "t")

	return map[string]func() error{
		"direct":         echo(direct, "echo"),
		"sandboxed":      echo(sandboxed, "echo"),
		"airlock":        echo(through, "t__echo"),
		"airlock_denied": denied,
		"airlock_shm":    echo(shm.connectStdio(b, nil), "t__echo"),
	}, e.audit
}

// gatewayBenchPolicy allows every call but an echo of "deny".
const gatewayBenchPolicy = `{"version": "1", "default": "allow", "tools": {"t__echo": {"deny_if": [
  {"conditions": [{"path": "args.text", "op": "eq", "value": "deny"}], "on_deny": "bench denial"}]}}}`

// benchFsync is the median time of a small append and fsync of a file in dir (the audit
// log's directory): what the closing audit record of every call pays at least.
func benchFsync(b *testing.B, dir string) time.Duration {
	b.Helper()
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	line := make([]byte, 900) // about an audit record
	var l benchLatencies
	for range 100 {
		start := time.Now()
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		l = append(l, time.Since(start))
	}
	return l.median()
}
