package runc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/cgroup"
	"github.com/airlock-mcp/airlock/seccomp"
)

// BenchmarkRun measures, side by side in one run, (a) Backend.Run of `true` and (b) a bare
// `runc run` of an equivalent hand-written bundle (testdata/raw-config.json: same rootfs,
// namespaces, mounts, limits and the same seccomp filter; no Airlock). The two alternate in
// every iteration so host noise hits both alike. Reported: median and p95 of each, and the
// ratio of the medians (target <= 1.25).
//
//	go test -run '^$' -bench BenchmarkRun -benchtime 100x ./sandbox/runc/
func BenchmarkRun(b *testing.B) {
	be := newTestBackend(b)
	runSpec := spec(b, sandbox.WithArgv("true"))
	raw := newRawBundle(b, be)

	var airlock, bare []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		res, err := be.Run(context.Background(), runSpec)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("Run: %v %+v", err, res)
		}
		airlock = append(airlock, time.Since(start))

		start = time.Now()
		raw.run(b, i)
		bare = append(bare, time.Since(start))
	}
	ma, mr := quantile(airlock, 0.5), quantile(bare, 0.5)
	b.ReportMetric(ms(ma), "airlock-median-ms")
	b.ReportMetric(ms(quantile(airlock, 0.95)), "airlock-p95-ms")
	b.ReportMetric(ms(mr), "runc-median-ms")
	b.ReportMetric(ms(quantile(bare, 0.95)), "runc-p95-ms")
	b.ReportMetric(float64(ma)/float64(mr), "airlock/runc")
	b.ReportMetric(0, "ns/op") // per-iteration time covers both runs; the metrics above split it
}

// TestRawConfigEquivalent keeps testdata/raw-config.json, the hand-written bundle the
// benchmarks (here and integration's BenchmarkExecVsRunc) compare Airlock against, asking runc
// for the same container as `airlock exec -- true`: only the hostname, annotations, cgroup
// path and PATH may differ, none of which changes what runc does or costs.
func TestRawConfigEquivalent(t *testing.T) {
	raw := readRawConfig(t)
	want, err := OCIConfig(spec(t, sandbox.WithArgv("true")), sandbox.Image{Name: "busybox", Rootfs: goldenRootfs}, goldenID, goldenSeccomp)
	if err != nil {
		t.Fatal(err)
	}
	raw.Root.Path = want.Root.Path
	raw.Linux.Seccomp = want.Linux.Seccomp
	raw.Hostname = want.Hostname
	raw.Annotations = want.Annotations
	raw.Process.Env = want.Process.Env
	raw.Linux.CgroupsPath = want.Linux.CgroupsPath
	got, _ := json.MarshalIndent(raw, "", "  ")
	exp, _ := json.MarshalIndent(want, "", "  ")
	if string(got) != string(exp) {
		t.Errorf("testdata/raw-config.json differs from OCIConfig of `true` beyond hostname, annotations, cgroup path and PATH; update it so the benchmarks compare like with like.\nraw (normalised):\n%s\nOCIConfig:\n%s", got, exp)
	}
}

func readRawConfig(t testing.TB) *specs.Spec {
	t.Helper()
	var cfg specs.Spec
	data, err := os.ReadFile(filepath.Join("testdata", "raw-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("testdata/raw-config.json: %v", err)
	}
	return &cfg
}

type rawBundle struct {
	runc, root, dir string
}

// newRawBundle writes testdata/raw-config.json with the test rootfs, a cgroup of its own and
// the default seccomp filter into a bundle dir.
func newRawBundle(b *testing.B, be *Backend) *rawBundle {
	b.Helper()
	cfg := readRawConfig(b)
	img, err := be.images.Resolve(context.Background(), "busybox")
	if err != nil {
		b.Fatal(err)
	}
	sc, err := seccomp.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Root.Path = img.Rootfs
	cfg.Linux.Seccomp = sc
	dir := b.TempDir()
	r := &rawBundle{runc: be.runc, root: filepath.Join(dir, "root"), dir: filepath.Join(dir, "bundle")}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		b.Fatal(err)
	}
	cfg.Linux.CgroupsPath = "/airlock-bench-raw-" + filepath.Base(dir) // a single level: runc removes it whole
	out, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(r.dir, "config.json"), out, 0o600); err != nil {
		b.Fatal(err)
	}
	return r
}

// run is plain `runc run`: it creates, starts, waits for and deletes the container itself.
func (r *rawBundle) run(b *testing.B, i int) {
	cmd := exec.Command(r.runc, "--root", r.root, "run", "--bundle", r.dir, fmt.Sprintf("raw-%d", i))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Run(); err != nil {
		b.Fatalf("raw runc run: %v", err)
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkRemoveStopped compares the two ways of removing a stopped `runc run --keep`
// container: directly (its cgroup dirs and runc state dir; what Run does) and with another
// `runc delete` process. Only the removal is timed.
//
//	go test -run '^$' -bench BenchmarkRemoveStopped -benchtime 50x ./sandbox/runc/
func BenchmarkRemoveStopped(b *testing.B) {
	be := newTestBackend(b)
	img, err := be.images.Resolve(context.Background(), "busybox")
	if err != nil {
		b.Fatal(err)
	}
	sc, err := seccomp.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	if err != nil {
		b.Fatal(err)
	}
	stopped := func(b *testing.B) string {
		id := fmt.Sprintf("airlock-%s-%d", be.token, be.seq.Add(1))
		cfg, err := OCIConfig(spec(b, sandbox.WithArgv("true")), img, id, sc)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Linux.CgroupsPath = cgroup.Path(be.cgroupParent, id)
		bundle := filepath.Join(be.bundles, id)
		data, _ := json.Marshal(cfg)
		if err := os.MkdirAll(bundle, 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command(be.runc, "--root", be.root, "run", "--keep", "--bundle", bundle, id).CombinedOutput(); err != nil {
			b.Fatalf("runc run --keep: %v %s", err, out)
		}
		if err := os.RemoveAll(bundle); err != nil {
			b.Fatal(err)
		}
		return id
	}
	for _, tc := range []struct {
		name   string
		remove func(id string) error
	}{
		{"direct", be.removeStopped},
		{"runc-delete", func(id string) error {
			_, err := be.runcCmd(context.Background(), "delete", id)
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				id := stopped(b)
				b.StartTimer()
				if err := tc.remove(id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	assertNoLeftovers(b, be)
}
