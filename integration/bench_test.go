package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	runcbackend "github.com/airlock-mcp/airlock/sandbox/runc"
)

// benchImage is the image every variant runs `true` on, so they differ only in what wraps the
// container: raw runc, the airlock CLI, or the MCP server's seven stages.
const benchImage = "busybox"

// benchPolicy allows everything except `command` strings starting with rm: the argv calls
// run, and the sandbox-free variant is a denial that still goes through stages 1-3 and 7.
const benchPolicy = `{"version": "1", "default": "allow", "tools": {"run_command": {"deny_if": [
  {"conditions": [{"path": "args.command", "op": "regex", "value": "^rm "}], "on_deny": "no rm"}]}}}`

// benchCommandProfile makes run_command's sandbox the same as `airlock exec --image busybox
// --workspace DIR:ro`'s defaults (busybox instead of the built-in profile's host image), so
// the MCP and exec variants start identical containers.
const benchCommandProfile = `image: busybox
seccomp: default
workspace: ro
user: nobody
memory: 256Mi
cpus: 1
pids: 64
timeout: 30s
tmpfs: 64Mi`

// benchLatencies collects one duration per call and summarises them.
type benchLatencies []time.Duration

func (l benchLatencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (l benchLatencies) median() time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchMedians remembers each variant's median so later variants report ratios against it.
type benchMedians struct {
	mu sync.Mutex
	m  map[string]time.Duration
}

func (bm *benchMedians) set(name string, d time.Duration) {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	bm.m[name] = d
}

func (bm *benchMedians) get(name string) time.Duration {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return bm.m[name]
}

// benchMeasure runs call once to warm up, then b.Loop times, and reports median and p95 in ms.
func benchMeasure(b *testing.B, medians *benchMedians, name string, call func() error) benchLatencies {
	return benchMeasurePaced(b, medians, name, nil, call)
}

// benchMeasurePaced is benchMeasure with pace, when not nil, run before each call outside the
// timer (an agent's think time between calls).
func benchMeasurePaced(b *testing.B, medians *benchMedians, name string, pace func(), call func() error) benchLatencies {
	b.Helper()
	if err := call(); err != nil {
		b.Fatalf("%s (warm-up): %v", name, err)
	}
	var l benchLatencies
	for b.Loop() {
		if pace != nil {
			b.StopTimer()
			pace()
			b.StartTimer()
		}
		start := time.Now()
		if err := call(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		l = append(l, time.Since(start))
	}
	med := l.median()
	medians.set(name, med)
	b.ReportMetric(benchMS(med), "median-ms")
	b.ReportMetric(benchMS(l.quantile(0.95)), "p95-ms")
	return l
}

// BenchmarkCallLatency measures running `true` in a fresh busybox container four ways, and the
// MCP path without a container, in one process so the numbers are comparable:
//
//   - runc_run: raw `runc run` of a hand-written bundle on the busybox rootfs (the floor);
//   - backend_run: the runc backend's Run in this process (what `airlock exec` does after
//     start-up: hardened spec, bundle, seccomp, cgroup, clean-up);
//   - airlock_exec: the `airlock exec` binary (backend_run plus process start-up);
//   - mcp_http_run_command: a run_command call of argv ["true"] through a running
//     `airlock serve --http` (all seven stages plus HTTP and JSON-RPC, one reused session);
//   - mcp_http_denied, mcp_http_token_denied, mcp_stdio_denied: the sandbox-free MCP path, a
//     run_command the policy denies (transport, JSON-RPC, decode, schema, policy and the
//     fsynced audit record; no container), over token-less HTTP, HTTP with a bearer token,
//     and stdio.
//
// The MCP variant reports its median as a ratio of exec's and the milliseconds it adds to
// exec and to the in-process backend. On a shared machine the load drifts between variants,
// so a last variant, paired, runs backend, exec and MCP back to back in rotating order and
// reports the median of the per-round differences: the steadier estimate of what the seven
// stages cost.
func BenchmarkCallLatency(b *testing.B) {
	runc := testenv.Runc(b)
	mcpRequireImages(b, benchImage)
	medians := &benchMedians{m: map[string]time.Duration{}}
	calls, auditPath := benchCalls(b, runc)

	for _, name := range []string{"runc_run", "backend_run", "airlock_exec", "mcp_http_run_command",
		"mcp_http_denied", "mcp_http_token_denied", "mcp_stdio_denied"} {
		b.Run(name, func(b *testing.B) {
			benchMeasure(b, medians, name, calls[name])
			if name != "mcp_http_run_command" {
				return
			}
			mcpMed := medians.get(name)
			if exec := medians.get("airlock_exec"); exec > 0 {
				b.ReportMetric(float64(mcpMed)/float64(exec), "mcp/exec-median")
				b.ReportMetric(benchMS(mcpMed-exec), "added-ms-vs-exec")
			}
			if be := medians.get("backend_run"); be > 0 {
				b.ReportMetric(benchMS(mcpMed-be), "added-ms-vs-backend")
			}
			// The pipeline's own timing of its stages, from the audit records: everything
			// but execution (the audit write itself is not in its own record).
			var stages benchLatencies
			for _, rec := range readAudit(b, auditPath) {
				if rec.Decision != "allow" {
					continue
				}
				stages = append(stages, time.Duration((rec.DurationMS-rec.StageMS["execute"])*float64(time.Millisecond)))
			}
			b.ReportMetric(benchMS(stages.median()), "stages-excl-exec-ms")
		})
	}

	b.Run("paired", func(b *testing.B) {
		var vsBackend, vsExec benchLatencies
		benchPaired(b, calls, []string{"backend_run", "airlock_exec", "mcp_http_run_command"}, func(took map[string]time.Duration) {
			vsBackend = append(vsBackend, took["mcp_http_run_command"]-took["backend_run"])
			vsExec = append(vsExec, took["mcp_http_run_command"]-took["airlock_exec"])
		})
		b.ReportMetric(benchMS(vsBackend.median()), "added-ms-vs-backend")
		b.ReportMetric(benchMS(vsExec.median()), "added-ms-vs-exec")
		b.ReportMetric(benchMS(vsBackend.quantile(0.95)), "p95-added-ms-vs-backend")
	})
}

// benchBackend is a runc backend over the shared images and a run directory of the
// benchmark's own, closed when it ends.
func benchBackend(b *testing.B, runc string) *runcbackend.Backend {
	b.Helper()
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
	return backend
}

// benchPaired runs, per b.Loop round, one call of each variant in order, rotating which goes
// first so machine load hits all alike, and hands round the time each took.
func benchPaired(b *testing.B, calls map[string]func() error, order []string, round func(took map[string]time.Duration)) {
	b.Helper()
	n := 0
	for b.Loop() {
		took := map[string]time.Duration{}
		for i := range order {
			name := order[(n+i)%len(order)]
			start := time.Now()
			if err := calls[name](); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			took[name] = time.Since(start)
		}
		n++
		round(took)
	}
}

// benchCalls sets up every variant once (the servers and backends live for the whole
// benchmark) and returns one call of each.
func benchCalls(b *testing.B, runc string) (calls map[string]func() error, auditPath string) {
	b.Helper()
	ctx := context.Background()

	runcRun := benchRuncRun(b, runc)

	backend := benchBackend(b, runc)
	ws := b.TempDir()
	spec, err := sandbox.New(sandbox.WithImage(benchImage), sandbox.WithArgv("true"), sandbox.WithWorkspace(ws, sandbox.ReadOnly))
	if err != nil {
		b.Fatal(err)
	}
	backendRun := func() error {
		res, err := backend.Run(ctx, spec)
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("true exited %d: %s", res.ExitCode, res.Stderr)
		}
		return nil
	}

	e := newMCPEnv(b, benchPolicy, nil)
	e.quiet = true
	e.commandProfile = benchCommandProfile
	airlockExec := func() error {
		out, err := e.command(ctx, "exec", "--image", benchImage, "--workspace", e.workspace+":ro", "--", "true").CombinedOutput()
		if err != nil {
			return fmt.Errorf("airlock exec -- true: %v: %s", err, out)
		}
		return nil
	}

	s := e.startHTTP(b)
	cs := connectHTTP(b, s, "", nil)
	mcpCall := func() error {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command",
			Arguments: map[string]any{"argv": []string{"true"}}})
		if err != nil {
			return err
		}
		if res.IsError {
			raw, _ := json.Marshal(res)
			return fmt.Errorf("run_command true failed: %s", raw)
		}
		return nil
	}

	// Sandbox-free: the whole MCP path (transport, JSON-RPC, decode, schema, policy, the
	// fsynced audit record) for a call the policy denies, so no container starts. Over stdio,
	// over token-less loopback HTTP (which checks the peer's uid on every request), and over
	// HTTP with a bearer token (which does not).
	denied := func(cs *mcp.ClientSession) func() error {
		return func() error {
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command",
				Arguments: map[string]any{"command": "rm -rf /workspace"}})
			if err != nil {
				return err
			}
			if !res.IsError || !strings.HasPrefix(mcpText(res), "[POLICY DENIED]") {
				raw, _ := json.Marshal(res)
				return fmt.Errorf("rm was not denied: %s", raw)
			}
			return nil
		}
	}
	stdio := newMCPEnv(b, benchPolicy, nil)
	stdio.quiet = true
	withToken := newMCPEnv(b, benchPolicy, nil)
	withToken.quiet = true
	token := rand.Text()
	withToken.extraYAML = "http:\n  tokens:\n    - token_env: AIRLOCK_BENCH_TOKEN\n      grant: bench\n"
	withToken.extraEnv = []string{"AIRLOCK_BENCH_TOKEN=" + token}

	return map[string]func() error{
		"runc_run":              runcRun,
		"backend_run":           backendRun,
		"airlock_exec":          airlockExec,
		"mcp_http_run_command":  mcpCall,
		"mcp_http_denied":       denied(cs),
		"mcp_http_token_denied": denied(connectHTTP(b, withToken.startHTTP(b), token, nil)),
		"mcp_stdio_denied":      denied(stdio.connectStdio(b, nil)),
	}, e.audit
}

// benchRuncRun returns one raw `runc run` of benchBundle's container (the floor every variant
// is compared with); it is safe for concurrent use.
func benchRuncRun(b *testing.B, runc string) func() error {
	b.Helper()
	bundle := benchBundle(b)
	runcRoot := b.TempDir()
	var n atomic.Int64
	return func() error {
		id := fmt.Sprintf("airlock-bench-%d-%d", os.Getpid(), n.Add(1))
		cmd := exec.Command(runc, "--root", runcRoot, "run", "--bundle", bundle, id)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("runc run: %v: %s", err, stderr.String())
		}
		return nil
	}
}

// benchBundle writes an OCI bundle that runs /bin/true on the busybox image's rootfs with
// runc's default isolation (namespaces, read-only root, masked paths, no new privileges) and
// no network: the least any Airlock call does.
func benchBundle(b *testing.B) string {
	b.Helper()
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		b.Fatal(err)
	}
	img, err := store.Resolve(context.Background(), benchImage)
	if err != nil {
		testenv.Unavailable(b, "image %s: %v", benchImage, err)
	}
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: img.Rootfs, Readonly: true},
		Process: &specs.Process{
			Args:            []string{"/bin/true"},
			Env:             []string{"PATH=/usr/bin:/bin"},
			Cwd:             "/",
			User:            specs.User{UID: 65534, GID: 65534},
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{},
		},
		Hostname: "airlock-bench",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=65536k"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	dir := b.TempDir()
	raw, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}
