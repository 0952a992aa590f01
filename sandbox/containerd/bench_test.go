package containerd

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// BenchmarkRun measures, side by side in one run on the same daemon, namespace, runc and root
// directory (a private copy of the busybox image: ctr's default spec has mount points the
// image lacks, which runc would create in it):
//
//   - backend: Backend.Run of `true`, hardened spec, sandbox init, FIFOs, cleanup;
//   - ctr-run-rm: `ctr run --rm --rootfs DIR --read-only --seccomp ID true`, containerd's own
//     CLI doing the same create/start/wait/delete cycle (its process start included, as it is
//     for any caller that shells out to ctr).
//
// Each sub-benchmark reports its median and p95; the log line gives the ratio of the medians
// (target backend <= 1.1x ctr run --rm).
//
//	go test -run '^$' -bench BenchmarkRun -benchtime 50x ./sandbox/containerd/
func BenchmarkRun(b *testing.B) {
	rootfs := copyRootfs(b)
	be := openTestBackend(b, testNamespace(b), b.TempDir(), fixedImage{rootfs: rootfs})
	ctr := findCtr(b)
	runSpec := spec(b, sandbox.WithArgv("true"))
	medians := map[string]time.Duration{}

	b.Run("backend", func(b *testing.B) {
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			res, err := be.Run(context.Background(), runSpec)
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("Run: %v %+v", err, res)
			}
			d = append(d, time.Since(start))
		}
		medians["backend"] = report(b, d)
	})
	b.Run("ctr-run-rm", func(b *testing.B) {
		fifos := b.TempDir() // the backend's FIFOs are in its state dir too
		var d []time.Duration
		for i := 0; b.Loop(); i++ {
			id := fmt.Sprintf("bench-ctr-%s-%d", be.token, i)
			cmd := exec.Command(ctr, "--address", be.address, "--namespace", be.namespace,
				"run", "--rm", "--rootfs", "--read-only", "--seccomp", "--runc-binary", be.runc,
				"--runc-root", be.runtimeOptions().(*options.Options).Root, "--fifo-dir", fifos,
				"--cgroup", "/"+DefaultCgroupParent+"/"+id, rootfs, id, "/bin/true")
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("ctr run: %v: %s", err, out)
			}
			d = append(d, time.Since(start))
		}
		medians["ctr-run-rm"] = report(b, d)
	})
	if a, c := medians["backend"], medians["ctr-run-rm"]; a > 0 && c > 0 {
		b.Logf("median backend %.1f ms, ctr run --rm %.1f ms: backend/ctr = %.2f", ms(a), ms(c), float64(a)/float64(c))
	}
}

// report adds the median and p95 of d to b's results and returns the median.
func report(b *testing.B, d []time.Duration) time.Duration {
	med := quantile(d, 0.5)
	b.ReportMetric(ms(med), "median-ms")
	b.ReportMetric(ms(quantile(d, 0.95)), "p95-ms")
	return med
}

// findCtr is the ctr `make containerd` built, or one on PATH.
func findCtr(b *testing.B) string {
	p := filepath.Join(testenv.RepoRoot(b), ".tools", "bin", "ctr")
	if _, err := exec.LookPath(p); err == nil {
		return p
	}
	if p, err := exec.LookPath("ctr"); err == nil {
		return p
	}
	testenv.Unavailable(b, "no ctr binary (run `make containerd`)")
	return ""
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
