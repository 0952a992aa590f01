package images

import (
	"context"
	"os"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// BenchmarkResolve is the per-call cost of finding an image (stage 4 of every tool call).
// Baseline: BenchmarkReadIndexFile, the bare read of the index file Resolve parses.
func BenchmarkResolve(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Resolve(ctx, "busybox"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadIndexFile(b *testing.B) {
	s := benchStore(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := os.ReadFile(s.indexPath("busybox")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRebuildUnchanged is `airlock images build busybox` when nothing changed (every
// `make setup`). Baseline: BenchmarkBuildFresh, a build into an empty store.
func BenchmarkRebuildUnchanged(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Build(ctx, "busybox", BuildOptions{Toolbox: toolboxV1}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildFresh(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.Build(ctx, "busybox", BuildOptions{Toolbox: toolboxV1}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	if _, err := os.Stat(DefaultBusybox); err != nil {
		testenv.Unavailable(b, "static busybox at %s (apt-get install busybox-static, or make setup)", DefaultBusybox)
	}
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Build(context.Background(), "busybox", BuildOptions{Toolbox: toolboxV1}); err != nil {
		b.Fatal(err)
	}
	return s
}
