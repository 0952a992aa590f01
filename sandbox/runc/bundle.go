package runc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// copyRoot is the bundle directory holding every copy mount's layers (the parent of oci.CopyDir).
const copyRoot = "copy"

// prepareCopyDirs creates the overlay upper and work dirs of every copy mount inside the run's
// bundle. The upper dir takes the owner and mode of the host directory, so the copy is exactly
// as writable for the sandbox user as an rw bind would be, while every write lands in the
// bundle and is discarded with it.
//
// The layers live on a tmpfs of at most the run's memory limit mounted at <bundle>/copy:
// otherwise a command given a "safe" copy of the workspace could fill the host's disk. Pages
// written there are charged to the writer's memory cgroup as well.
func prepareCopyDirs(bundle string, mounts []sandbox.Mount, sizeBytes int64) error {
	if !slices.ContainsFunc(mounts, func(m sandbox.Mount) bool { return m.Access == sandbox.CopyOnWrite }) {
		return nil
	}
	root := filepath.Join(bundle, copyRoot)
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
		dir := filepath.Join(bundle, oci.CopyDir(i))
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

// resolveBundlePaths makes the bundle-relative overlay dirs OCIConfig emits (see oci.CopyDir)
// absolute under bundle. cfg is modified and returned.
func resolveBundlePaths(cfg *specs.Spec, bundle string) *specs.Spec {
	for i, m := range cfg.Mounts {
		if m.Type != "overlay" {
			continue
		}
		opts := make([]string, len(m.Options))
		for j, o := range m.Options {
			for _, key := range []string{"upperdir=", "workdir="} {
				if v, ok := strings.CutPrefix(o, key); ok && !filepath.IsAbs(v) {
					o = key + filepath.Join(bundle, v)
				}
			}
			opts[j] = o
		}
		cfg.Mounts[i].Options = opts
	}
	return cfg
}

// removeBundle unmounts the copy-layer tmpfs, if any, and removes the bundle dir. RemoveAll
// never follows symlinks the sandbox planted in a copy layer.
func removeBundle(bundle string) error {
	root := filepath.Join(bundle, copyRoot)
	if err := unix.Unmount(root, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting copy layers %s: %w", root, err)
	}
	if err := os.RemoveAll(bundle); err != nil {
		return fmt.Errorf("removing bundle %s: %w", bundle, err)
	}
	return nil
}
