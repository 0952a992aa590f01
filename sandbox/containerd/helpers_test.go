package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/owner"
)

// testAddress is the daemon the tests use: $AIRLOCK_CONTAINERD_ADDRESS, else the one
// `make containerd` starts.
func testAddress() string {
	if a := os.Getenv(AddressEnv); a != "" {
		return a
	}
	return "/run/airlock-containerd/containerd.sock"
}

// storeImages resolves images from the store `make setup` built; a missing image is a
// missing capability.
func storeImages(t testing.TB) sandbox.ImageResolver {
	t.Helper()
	st, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store at %s: %v", testenv.StateDir(), err)
	}
	if _, err := st.Resolve(context.Background(), "busybox"); err != nil {
		testenv.Unavailable(t, "busybox image: %v (run `make images`)", err)
	}
	return st
}

// fixedImage resolves every name to one rootfs (a private copy, for tests that let a
// foreign tool such as ctr write into it).
type fixedImage struct{ rootfs string }

func (f fixedImage) Resolve(_ context.Context, name string) (sandbox.Image, error) {
	return sandbox.Image{Name: name, ID: "sha256:test", Rootfs: f.rootfs}, nil
}

// testNamespace is a namespace of the test's own, so that assertNoLeftovers sees only what
// the test's backends made, whatever runs in parallel.
func testNamespace(t testing.TB) string {
	tok, err := owner.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return "airlock-test-" + tok
}

// newTestBackend opens a Backend on the test daemon in a fresh namespace over a private state
// dir, closed (and checked for leftovers, and its namespace removed) when the test ends.
func newTestBackend(t testing.TB) *Backend {
	t.Helper()
	return openTestBackend(t, testNamespace(t), t.TempDir(), storeImages(t))
}

func openTestBackend(t testing.TB, ns, stateDir string, imgs sandbox.ImageResolver) *Backend {
	t.Helper()
	runcBin := testenv.Runc(t)
	b, err := Open(context.Background(), Config{
		Address:    testAddress(),
		Namespace:  ns,
		StateDir:   stateDir,
		Images:     imgs,
		RuncBinary: runcBin,
		Logger:     zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if errors.Is(err, sandbox.ErrUnavailable) {
		testenv.Unavailable(t, "containerd backend: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		c, err := Open(context.Background(), Config{Address: testAddress(), Namespace: ns, StateDir: stateDir, Images: imgs, RuncBinary: runcBin, Logger: zerolog.Nop()})
		if err != nil {
			t.Errorf("reopening to check namespace %s: %v", ns, err)
			return
		}
		defer c.Close()
		leftovers(t, c, b.token)
		// Also proves the namespace is empty: containerd refuses to delete one that is not.
		if err := c.client.NamespaceService().Delete(context.Background(), ns); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("removing test namespace %s: %v", ns, err)
		}
		// The daemon's and runc's (empty) per-namespace dirs, for Airlock's own daemon.
		dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(c.address), "*", ns))
		for _, d := range dirs {
			_ = os.Remove(d)
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

// assertNoLeftovers checks that nothing of b remains: no container, task or lease in its
// namespace, no run dir, no mount under its state dir.
func assertNoLeftovers(t testing.TB, b *Backend) {
	t.Helper()
	leftovers(t, b, b.token)
}

// leftovers checks b's namespace and state dir for anything of owner token.
func leftovers(t testing.TB, b *Backend, token string) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), b.namespace)
	cs, err := b.client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		t.Errorf("leftover container %s in namespace %s", c.ID(), b.namespace)
	}
	tasks, err := b.client.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks.Tasks {
		t.Errorf("leftover task %s (pid %d) in namespace %s", p.ID, p.Pid, b.namespace)
	}
	leases, err := b.client.LeasesService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		t.Errorf("leftover lease %s in namespace %s", l.ID, b.namespace)
	}
	entries, err := os.ReadDir(b.runsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("leftover run dir %s/%s", b.runsDir, e.Name())
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), b.stateDir) {
		t.Errorf("a mount under %s remains:\n%s", b.stateDir, mi)
	}
	matches, _ := filepath.Glob(filepath.Join(b.cg.memory, b.cg.parent, "airlock-"+token+"-*"))
	for _, m := range matches {
		t.Errorf("leftover cgroup %s", m)
	}
}

// hasProcess reports whether a host process has marker as one of its arguments.
func hasProcess(marker string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(b), "\x00"), marker) {
			return true
		}
	}
	return false
}

// waitGone polls until no host process carries marker (the kernel reaps asynchronously).
func waitGone(t *testing.T, marker string) {
	t.Helper()
	for range 100 {
		if !hasProcess(marker) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("a process with argument %s survived its sandbox", marker)
}

// uniqueSleep is a sleep duration no other process on the host has as its argument.
func uniqueSleep() string {
	return fmt.Sprintf("%d", 900000+time.Now().UnixNano()%99999)
}

// copyRootfs copies the store's busybox rootfs into a private directory.
func copyRootfs(t testing.TB) string {
	t.Helper()
	img, err := storeImages(t).Resolve(context.Background(), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", img.Rootfs, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v: %s", img.Rootfs, err, out)
	}
	return dst
}
