package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
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

// benchPolicy allows everything: the benchmark measures the pipeline, not a denial.
const benchPolicy = `{"version": "1", "default": "allow"}`

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

// latencies collects one duration per call and summarises them.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (l latencies) median() time.Duration {
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

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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

// measure runs call once to warm up, then b.Loop times, and reports median and p95 in ms.
func measure(b *testing.B, medians *benchMedians, name string, call func() error) latencies {
	b.Helper()
	if err := call(); err != nil {
		b.Fatalf("%s (warm-up): %v", name, err)
	}
	var l latencies
	for b.Loop() {
		start := time.Now()
		if err := call(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		l = append(l, time.Since(start))
	}
	med := l.median()
	medians.set(name, med)
	b.ReportMetric(ms(med), "median-ms")
	b.ReportMetric(ms(l.quantile(0.95)), "p95-ms")
	return l
}

// BenchmarkCallLatency measures running `true` in a fresh busybox container four ways, in one
// process so the numbers are comparable:
//
//   - runc_run: raw `runc run` of a hand-written bundle on the busybox rootfs (the floor);
//   - backend_run: the runc backend's Run in this process (what `airlock exec` does after
//     start-up: hardened spec, bundle, seccomp, cgroup, clean-up);
//   - airlock_exec: the `airlock exec` binary (backend_run plus process start-up);
//   - mcp_http_run_command: a run_command call of argv ["true"] through a running
//     `airlock serve --http` (all seven stages plus HTTP and JSON-RPC, one reused session).
//
// The MCP variant reports its median as a ratio of exec's, and the milliseconds it adds to
// exec and to the in-process backend (the like-for-like cost of the seven stages).
func BenchmarkCallLatency(b *testing.B) {
	runc := testenv.Runc(b)
	mcpRequireImages(b, benchImage)
	medians := &benchMedians{m: map[string]time.Duration{}}

	b.Run("runc_run", func(b *testing.B) {
		bundle := benchBundle(b)
		root := b.TempDir()
		i := 0
		measure(b, medians, "runc_run", func() error {
			i++
			id := fmt.Sprintf("airlock-bench-%d-%d", os.Getpid(), i)
			cmd := exec.Command(runc, "--root", root, "run", "--bundle", bundle, id)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("runc run: %v: %s", err, stderr.String())
			}
			return nil
		})
	})

	b.Run("backend_run", func(b *testing.B) {
		store, err := images.Open(testenv.StateDir())
		if err != nil {
			b.Fatal(err)
		}
		backend, err := runcbackend.New(runcbackend.Config{Runc: runc, StateDir: filepath.Join(b.TempDir(), "run"),
			Images: store, Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		defer backend.Close()
		ws := b.TempDir()
		spec, err := sandbox.New(sandbox.WithImage(benchImage), sandbox.WithArgv("true"), sandbox.WithWorkspace(ws, sandbox.ReadOnly))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		measure(b, medians, "backend_run", func() error {
			res, err := backend.Run(ctx, spec)
			if err != nil {
				return err
			}
			if res.ExitCode != 0 {
				return fmt.Errorf("true exited %d: %s", res.ExitCode, res.Stderr)
			}
			return nil
		})
	})

	b.Run("airlock_exec", func(b *testing.B) {
		e := newMCPEnv(b, benchPolicy, nil)
		measure(b, medians, "airlock_exec", func() error {
			cmd := e.command(context.Background(), "exec", "--image", benchImage,
				"--workspace", e.workspace+":ro", "--", "true")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("airlock exec -- true: %v: %s", err, out)
			}
			return nil
		})
	})

	b.Run("mcp_http_run_command", func(b *testing.B) {
		e := newMCPEnv(b, benchPolicy, nil)
		e.quiet = true
		e.commandProfile = benchCommandProfile
		s := e.startHTTP(b)
		cs := connectHTTP(b, s, "", nil)
		ctx := context.Background()
		measure(b, medians, "mcp_http_run_command", func() error {
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
		})
		if exec := medians.get("airlock_exec"); exec > 0 {
			mcpMed := medians.get("mcp_http_run_command")
			b.ReportMetric(float64(mcpMed)/float64(exec), "mcp/exec-median")
			b.ReportMetric(ms(mcpMed-exec), "added-ms-vs-exec")
		}
		if be := medians.get("backend_run"); be > 0 {
			b.ReportMetric(ms(medians.get("mcp_http_run_command")-be), "added-ms-vs-backend")
		}
	})
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
