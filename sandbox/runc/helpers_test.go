package runc

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// busyboxApplets are linked into the test rootfs.
var busyboxApplets = []string{
	"sh", "true", "false", "sleep", "cat", "echo", "dd", "yes", "head", "tail", "ls", "id", "tr",
	"hostname", "mount", "ps", "kill", "touch", "mkdir", "rm", "wc", "grep", "env", "ip", "ifconfig", "stat", "nc", "wget", "readlink",
}

// testRootfs builds a tiny root file system from the host's static busybox and the toolbox
// (the sandbox init), with the mount points Airlock uses, in a temporary directory.
func testRootfs(t testing.TB) string {
	t.Helper()
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		testenv.Unavailable(t, "static busybox at %s (apt-get install busybox-static, or run `make setup`)", busybox)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "workspace", "cache", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.Open(busybox)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(root, "bin", "busybox"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	installToolbox(t, root)
	return root
}

// testImages resolves "busybox" to a test rootfs.
type testImages struct{ rootfs string }

func (r testImages) Resolve(_ context.Context, name string) (sandbox.Image, error) {
	if name != "busybox" {
		return sandbox.Image{}, fmt.Errorf("image %q is not built; run `airlock images build %s`", name, name)
	}
	return sandbox.Image{Name: name, ID: "sha256:test", Rootfs: r.rootfs}, nil
}

// newTestBackend makes a Backend over a private state dir and a busybox test rootfs, closed
// (and checked for leftovers) when the test ends.
func newTestBackend(t testing.TB) *Backend {
	t.Helper()
	runcBin := testenv.Runc(t)
	b, err := New(Config{
		Runc:     runcBin,
		StateDir: filepath.Join(t.TempDir(), "state"),
		Images:   testImages{rootfs: testRootfs(t)},
		Logger:   zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		testenv.Unavailable(t, "runc backend: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// spec builds a Spec from Defaults and opts.
func spec(t testing.TB, opts ...sandbox.Option) sandbox.Spec {
	t.Helper()
	s, err := sandbox.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertNoLeftovers checks that no container, bundle or cgroup of b remains.
func assertNoLeftovers(t testing.TB, b *Backend) {
	t.Helper()
	b.removals.Wait() // warm runs remove their records after they return
	for _, dir := range []string{b.root, b.bundles} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("leftover %s/%s", dir, e.Name())
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), b.stateDir) {
		t.Errorf("a mount under %s remains:\n%s", b.stateDir, mi)
	}
	for _, r := range b.cg.roots {
		matches, _ := filepath.Glob(filepath.Join(r, b.cgroupParent, "airlock-"+b.token+"-*"))
		for _, m := range matches {
			t.Errorf("leftover cgroup %s", m)
		}
	}
}
