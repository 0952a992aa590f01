package containerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// Each run has a private directory StateDir/containerd/runs/<id> (0700) holding its FIFOs and,
// for copy mounts, the overlay layers. It is removed before Run returns; Reap removes those of
// dead owners.

// copyRoot is the run-dir directory holding every copy mount's layers (the parent of
// oci.CopyDir).
const copyRoot = "copy"

// fifoDir is the run-dir directory holding the stdio FIFOs.
const fifoDir = "fifo"

// prepareCopyDirs creates the overlay upper and work dirs of every copy mount inside the run's
// dir. The upper dir takes the owner and mode of the host directory, so the copy is exactly as
// writable for the sandbox user as an rw bind would be, while every write lands in the run dir
// and is discarded with it.
//
// The layers live on a tmpfs of at most the run's memory limit mounted at <runDir>/copy:
// otherwise a command given a "safe" copy of the workspace could fill the host's disk.
func prepareCopyDirs(runDir string, mounts []sandbox.Mount, sizeBytes int64) error {
	if !slices.ContainsFunc(mounts, func(m sandbox.Mount) bool { return m.Access == sandbox.CopyOnWrite }) {
		return nil
	}
	root := filepath.Join(runDir, copyRoot)
	if err := os.Mkdir(root, 0o700); err != nil {
		return fmt.Errorf("copy layers: %w", err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", sizeBytes)); err != nil {
		return fmt.Errorf("%w: mounting the tmpfs for copy layers at %s: %v", sandbox.ErrUnavailable, root, err)
	}
	for i, m := range mounts {
		if m.Access != sandbox.CopyOnWrite {
			continue
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("%w: copy mount %s: %v", sandbox.ErrInvalidSpec, m.Target, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: copy mount %s: source %s is not a directory; use access ro or rw for a file", sandbox.ErrInvalidSpec, m.Target, m.Source)
		}
		dir := filepath.Join(runDir, oci.CopyDir(i))
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("copy mount %s: %w", m.Target, err)
			}
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if err := os.Lchown(upper, int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("copy mount %s: %w", m.Target, err)
			}
		}
		if err := os.Chmod(upper, fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid)); err != nil {
			return fmt.Errorf("copy mount %s: %w", m.Target, err)
		}
	}
	return nil
}

// removeRunDir unmounts the copy-layer tmpfs, if any, and removes the run dir. RemoveAll never
// follows symlinks the sandbox planted in a copy layer.
func removeRunDir(runDir string) error {
	root := filepath.Join(runDir, copyRoot)
	if err := unix.Unmount(root, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting copy layers %s: %w", root, err)
	}
	if err := os.RemoveAll(runDir); err != nil {
		return fmt.Errorf("removing run dir %s: %w", runDir, err)
	}
	return nil
}
