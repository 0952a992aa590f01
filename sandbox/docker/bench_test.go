package docker

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// BenchmarkRunTrue compares one `true` through the backend (fully hardened: Airlock's seccomp
// profile, the sandbox init, limits, no network, labels, removal) with `docker run --rm
// --network none <same image> true` through the docker CLI, side by side in one run. Each
// reports its median as ms/median; the cli line also reports backend/cli, the ratio of the
// medians.
func BenchmarkRunTrue(b *testing.B) {
	be := newTestBackend(b)
	s := spec(b, sandbox.WithArgv("true"))
	img, err := be.images.Resolve(context.Background(), "busybox")
	if err != nil {
		b.Fatal(err)
	}
	ref, err := be.image(context.Background(), img)
	if err != nil {
		b.Fatal(err)
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		testenv.Unavailable(b, "no docker CLI on PATH to compare the backend with")
	}
	medians := map[string]time.Duration{}
	b.Run("backend", func(b *testing.B) {
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			res, err := be.Run(context.Background(), s)
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("res %+v err %v", res, err)
			}
			d = append(d, time.Since(start))
		}
		medians["backend"] = report(b, d)
	})
	b.Run("cli", func(b *testing.B) {
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			if out, err := exec.Command(docker, "run", "--rm", "--network", "none", ref, "true").CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v: %s", err, out)
			}
			d = append(d, time.Since(start))
		}
		medians["cli"] = report(b, d)
		if medians["backend"] > 0 {
			// The ratio rides on this line: a parent benchmark prints no metrics of its own.
			b.ReportMetric(float64(medians["backend"])/float64(medians["cli"]), "backend/cli")
		}
	})
	// The same comparison with the two alternating run by run, so a change of load on the
	// machine during the benchmark (other tests, builds) hits both alike.
	b.Run("interleaved", func(b *testing.B) {
		var db, dc []time.Duration
		for b.Loop() {
			start := time.Now()
			if res, err := be.Run(context.Background(), s); err != nil || res.ExitCode != 0 {
				b.Fatalf("res %+v err %v", res, err)
			}
			db = append(db, time.Since(start))
			start = time.Now()
			if out, err := exec.Command(docker, "run", "--rm", "--network", "none", ref, "true").CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v: %s", err, out)
			}
			dc = append(dc, time.Since(start))
		}
		slices.Sort(db)
		slices.Sort(dc)
		mb, mc := db[len(db)/2], dc[len(dc)/2]
		b.ReportMetric(float64(mb.Microseconds())/1000, "backend-ms/median")
		b.ReportMetric(float64(mc.Microseconds())/1000, "cli-ms/median")
		b.ReportMetric(float64(mb)/float64(mc), "backend/cli")
	})
}

func report(b *testing.B, d []time.Duration) time.Duration {
	slices.Sort(d)
	m := d[len(d)/2]
	b.ReportMetric(float64(m.Microseconds())/1000, "ms/median")
	return m
}
