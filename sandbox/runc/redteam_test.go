package runc

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// TestRootRunCannotReadKernelHeapMaps: a profile that runs as the workspace owner runs as
// uid 0 when root owns the workspace (run_tests, write_file in CI). uid 0 without capabilities
// still passes the owner check of /proc's 0400 root files, which map the kernel heap and page
// allocator (slabinfo, vmallocinfo, pagetypeinfo): exploit aids, masked here. The control
// reads the same files on the host, so the test fails if the masks go.
func TestRootRunCannotReadKernelHeapMaps(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Unavailable(t, "running a container as uid 0 needs root (uid %d)", os.Getuid())
	}
	paths := []string{"/proc/slabinfo", "/proc/vmallocinfo", "/proc/pagetypeinfo"}
	var present []string
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		buf := make([]byte, 1)
		if n, _ := f.Read(buf); n == 1 {
			present = append(present, p)
		}
		f.Close()
	}
	if len(present) == 0 {
		testenv.NotApplicable(t, "this kernel exposes none of %v to root on the host, so there is no heap or page map for the sandbox to mask", paths)
	}
	b := newTestBackend(t)
	script := "for p in " + strings.Join(present, " ") + "; do n=$(head -c 64 $p 2>/dev/null | wc -c); echo $p $n; done"
	res, err := b.Run(context.Background(), spec(t, sandbox.WithUser(0, 0), sandbox.WithArgv("sh", "-c", script)))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, res.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) != len(present) {
		t.Fatalf("output %q, want one line per path %v", res.Stdout, present)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, " 0") {
			t.Errorf("uid 0 in the sandbox read %s bytes", l)
		}
	}
	assertNoLeftovers(t, b)
}
