// Package rundir keeps the copy-on-write layers of a run inside the run's private directory:
// the overlay upper and work dirs of every sandbox.CopyOnWrite mount, on a size-capped tmpfs
// mounted at <dir>/copy (oci.CopyRoot), so every write of the sandbox lands there and is
// discarded with the directory, and the host directory is never written. All backends share it;
// each decides where its run directory lives and when it is made.
package rundir

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

// HasCopies reports whether any of mounts is a copy mount, i.e. whether PrepareCopies has
// anything to do.
func HasCopies(mounts []sandbox.Mount) bool {
	return slices.ContainsFunc(mounts, func(m sandbox.Mount) bool { return m.Access == sandbox.CopyOnWrite })
}

// PrepareCopies creates the overlay upper and work dirs of every copy mount inside dir (which
// must exist), at dir/oci.CopyDir(i). The upper dir takes the owner and mode of the host
// directory, so the copy is exactly as writable for the sandbox user as an rw bind would be,
// while every write lands in dir and is discarded with it.
//
// The layers live on a tmpfs of at most sizeBytes (the run's memory limit) mounted at
// dir/oci.CopyRoot: otherwise a command given a "safe" copy of the workspace could fill the
// host's disk. Pages written there are charged to the writer's memory cgroup as well.
func PrepareCopies(dir string, mounts []sandbox.Mount, sizeBytes int64) error {
	if !HasCopies(mounts) {
		return nil
	}
	root := filepath.Join(dir, oci.CopyRoot)
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
		layers := filepath.Join(dir, oci.CopyDir(i)) // under the tmpfs
		upper, work := filepath.Join(layers, "upper"), filepath.Join(layers, "work")
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

// Unmount says how Remove unmounts the copy-layer tmpfs.
type Unmount int

const (
	// Detach unmounts lazily at once: the overlay using the layers lives in the container's
	// mount namespace and may outlast the call.
	Detach Unmount = iota
	// DetachIfBusy tries a plain unmount first and falls back to a lazy one: for a backend
	// whose daemon unmounted the overlay when it removed the container.
	DetachIfBusy
)

// Remove unmounts dir's copy-layer tmpfs, if any, and removes dir; a missing dir is not an
// error. RemoveAll never follows symlinks the sandbox planted in a copy layer.
func Remove(dir string, how Unmount) error {
	root := filepath.Join(dir, oci.CopyRoot)
	if how == Detach || !unmounted(unix.Unmount(root, 0)) {
		if err := unix.Unmount(root, unix.MNT_DETACH); !unmounted(err) {
			return fmt.Errorf("unmounting copy layers at %s: %w", root, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing run dir %s: %w", dir, err)
	}
	return nil
}

// unmounted reports whether an unmount that returned err leaves nothing mounted at its target:
// it succeeded, or nothing was mounted there (EINVAL), or there is no such dir (ENOENT).
func unmounted(err error) bool {
	return err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT)
}
