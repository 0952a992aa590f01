package rundir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// TestPrepareCopies: the layers of each copy mount are on a tmpfs in the run dir, the upper
// dir as writable as the host directory; Remove takes it all away, whichever way it unmounts.
func TestPrepareCopies(t *testing.T) {
	for _, how := range []Unmount{Detach, DetachIfBusy} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		if err := os.Chmod(src, os.ModeSticky|0o757); err != nil {
			t.Fatal(err)
		}
		mounts := []sandbox.Mount{
			{Source: t.TempDir(), Target: "/ro", Access: sandbox.ReadOnly},
			{Source: src, Target: "/copy", Access: sandbox.CopyOnWrite},
		}
		err := PrepareCopies(dir, mounts, 1<<20)
		if errors.Is(err, sandbox.ErrUnavailable) {
			testenv.Unavailable(t, "mounting a tmpfs: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Join(dir, oci.CopyRoot), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
			t.Errorf("copy root is not a tmpfs: type %#x, %v", st.Type, err)
		}
		if _, err := os.Stat(filepath.Join(dir, oci.CopyDir(0))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("layers for the ro mount: %v", err)
		}
		fi, err := os.Stat(filepath.Join(dir, oci.CopyDir(1), "upper"))
		if err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o757|os.ModeSticky {
			t.Errorf("upper dir: %v, %v; want the host dir's mode", fi, err)
		}
		if _, err := os.Stat(filepath.Join(dir, oci.CopyDir(1), "work")); err != nil {
			t.Errorf("work dir: %v", err)
		}
		if err := Remove(dir, how); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("run dir remains: %v", err)
		}
		if err := Remove(dir, how); err != nil {
			t.Errorf("Remove of a removed dir: %v", err)
		}
	}
}

// TestPrepareCopiesRefusesFile: a copy mount of a file is an invalid spec, not a crash.
func TestPrepareCopiesRefusesFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer Remove(dir, Detach)
	err := PrepareCopies(dir, []sandbox.Mount{{Source: f, Target: "/f", Access: sandbox.CopyOnWrite}}, 1<<20)
	if errors.Is(err, sandbox.ErrUnavailable) {
		testenv.Unavailable(t, "mounting a tmpfs: %v", err)
	}
	if !errors.Is(err, sandbox.ErrInvalidSpec) {
		t.Errorf("err = %v, want ErrInvalidSpec", err)
	}
}

// TestNoCopiesNoTmpfs: without copy mounts nothing is created.
func TestNoCopiesNoTmpfs(t *testing.T) {
	dir := t.TempDir()
	if err := PrepareCopies(dir, []sandbox.Mount{{Source: "/", Target: "/ro", Access: sandbox.ReadOnly}}, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, oci.CopyRoot)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copy root made without copy mounts: %v", err)
	}
}
