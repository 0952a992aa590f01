package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// testImages is the image store `make images` built ($AIRLOCK_STATE_DIR); a test that needs
// an image that is not built is skipped loudly (a failure under AIRLOCK_REQUIRE_SANDBOX).
func testImages(t testing.TB, names ...string) sandbox.ImageResolver {
	t.Helper()
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store at %s: %v (run `make images`)", testenv.StateDir(), err)
	}
	for _, n := range append([]string{"busybox"}, names...) {
		if _, err := store.Resolve(context.Background(), n); err != nil {
			testenv.Unavailable(t, "image %s: %v (run `make images`)", n, err)
		}
	}
	return store
}

// newTestBackend opens the docker backend on the local daemon over a private state dir, closed
// (and checked for leftovers) when the test ends. The run directories' tmpfs mounts need root.
func newTestBackend(t testing.TB, opts ...func(*Config)) *Backend {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the docker backend's tests need root (euid %d) for the daemon socket and copy-layer mounts", os.Geteuid())
	}
	cfg := Config{
		StateDir: filepath.Join(t.TempDir(), "state"),
		Images:   testImages(t),
		Logger:   zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if errors.Is(err, sandbox.ErrUnavailable) {
		testenv.Unavailable(t, "docker backend: %v (run `make docker`)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		assertNoLeftovers(t, b)
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

// assertNoLeftovers checks that the daemon holds no container of b's state dir, that no run
// directory and no mount under the state dir remains, and that no anonymous volume of a copy
// mount of b survived.
func assertNoLeftovers(t testing.TB, b *Backend) {
	t.Helper()
	ctx := context.Background()
	list, err := b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", "airlock=1", LabelState+"="+b.dir)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		t.Errorf("leftover container %s %v (%s)", c.ID, c.Names, c.State)
	}
	entries, err := os.ReadDir(b.runs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("leftover run directory %s/%s", b.runs, e.Name())
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), b.dir) {
		t.Errorf("a mount under %s remains:\n%s", b.dir, mi)
	}
	vols, err := b.cli.VolumeList(ctx, client.VolumeListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols.Items {
		if strings.Contains(v.Options["o"], b.runs) {
			t.Errorf("leftover copy volume %s (%v)", v.Name, v.Options)
		}
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
	for range 200 {
		if !hasProcess(marker) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("a process with argument %s survived its sandbox", marker)
}

func uniqueSleep() string {
	return fmt.Sprintf("%d", 900000+time.Now().UnixNano()%99999)
}
