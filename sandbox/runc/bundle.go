package runc

import (
	"errors"
	"fmt"
	"os"
	"path"
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

// checkMountPoints refuses a configuration whose mount targets do not already exist. runc
// would create a missing one inside the image's root directory (before making the root
// read-only) or inside a bind's host source, so one run would change the image every later
// run starts from, or a host directory. A target inside an earlier tmpfs mount (/tmp/x,
// /dev/shm) is created in that tmpfs and is fine.
//
// Targets are resolved inside their root with openat2(RESOLVE_IN_ROOT), exactly as runc
// resolves them: a symlink in the image cannot make the check look at the host instead. Under a
// bind, whose host source the sandboxed command may have written, symlinks are refused
// outright: runc resolves them against the container's root, not the bind's source, so a
// workspace link "cache -> /new" would pass a check made in the source and have runc create
// /new in the image.
func checkMountPoints(cfg *specs.Spec) error {
	for i, m := range cfg.Mounts {
		root, rel := cfg.Root.Path, m.Destination
		what := "image root " + root
		noSymlinks := false
		// The innermost earlier mount containing this target decides where it must exist.
		if outer, r, ok := innermostMount(cfg.Mounts[:i], m.Destination); ok {
			switch outer.Type {
			case "tmpfs", "devpts", "proc", "sysfs":
				continue // created inside a fresh in-memory file system: nothing to check
			case "bind":
				root, rel, what, noSymlinks = outer.Source, r, "mount source "+outer.Source, true
			default:
				return fmt.Errorf("%w: mount target %s lies inside the %s mount at %s; pick a target outside it", sandbox.ErrInvalidSpec, m.Destination, outer.Type, outer.Destination)
			}
		}
		if err := existsInRoot(root, rel, noSymlinks, false); err != nil {
			return fmt.Errorf("%w: mount target %s does not exist in the %s (%v); runc would create it there, changing it for every later run: add it to the image (airlock images build) or pick an existing target", sandbox.ErrInvalidSpec, m.Destination, what, err)
		}
	}
	return nil
}

// checkWorkdir refuses a working directory that does not exist before the run starts. runc
// creates a missing process.cwd (mkdir -p) after the mounts are in place but before the root
// is remounted read-only: a Workdir the image lacks would be created in the shared image
// directory on the host, and every later run of that image would see it; one under an rw bind
// would be created in the host directory. So the directory must already exist: in the image,
// in the source of the bind (or the lower layer of the copy mount) it lies under, or be a
// mount target itself. Under a tmpfs it is created in that run's memory, which is fine.
//
// The path is resolved without following any symlink: runc resolves a symlink against the
// container's root, where mounts change what it points at, so only a symlink-free path is
// checked exactly as runc will see it.
func checkWorkdir(cfg *specs.Spec) error {
	if cfg.Process == nil {
		return nil
	}
	cwd := path.Clean(cfg.Process.Cwd)
	if cwd == "/" {
		return nil
	}
	for _, m := range cfg.Mounts {
		if path.Clean(m.Destination) == cwd {
			return nil // a mount point: checkMountPoints made sure it exists
		}
	}
	root, rel, what := cfg.Root.Path, cwd, "image root "+cfg.Root.Path
	if outer, r, ok := innermostMount(cfg.Mounts, cwd); ok {
		switch outer.Type {
		case "tmpfs", "devpts", "proc", "sysfs":
			return nil // created in a file system that exists for this run only
		case "bind":
			root, rel, what = outer.Source, r, "mount source "+outer.Source
		case "overlay":
			lower := overlayLower(outer)
			if lower == "" {
				return fmt.Errorf("%w: workdir %s lies inside the overlay at %s, which has no lower directory", sandbox.ErrInvalidSpec, cwd, outer.Destination)
			}
			root, rel, what = lower, r, "copy mount source "+lower
		default:
			return fmt.Errorf("%w: workdir %s lies inside the %s mount at %s; pick a directory outside it", sandbox.ErrInvalidSpec, cwd, outer.Type, outer.Destination)
		}
	}
	if err := existsInRoot(root, rel, true, true); err != nil {
		return fmt.Errorf("%w: workdir %s is not an existing directory (without symlinks) in the %s (%v); runc would create it there, changing it for every later run: use a directory that exists, one under /tmp, or the workspace", sandbox.ErrInvalidSpec, cwd, what, err)
	}
	return nil
}

// innermostMount returns the last of mounts (the innermost, since later mounts are mounted on
// top) whose destination strictly contains p, and p relative to it.
func innermostMount(mounts []specs.Mount, p string) (specs.Mount, string, bool) {
	for _, outer := range slices.Backward(mounts) {
		if r, ok := strings.CutPrefix(p, strings.TrimSuffix(outer.Destination, "/")+"/"); ok {
			return outer, r, true
		}
	}
	return specs.Mount{}, "", false
}

// overlayLower is the lowerdir of an overlay mount, or "".
func overlayLower(m specs.Mount) string {
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return v
		}
	}
	return ""
}

// existsInRoot opens rel inside root without leaving it (RESOLVE_IN_ROOT: ".." and absolute
// symlinks stay inside), and with noSymlinks without following any symlink at all. dir
// requires a directory.
func existsInRoot(root, rel string, noSymlinks, dir bool) error {
	d, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if noSymlinks {
		how.Resolve |= unix.RESOLVE_NO_SYMLINKS
	}
	if dir {
		how.Flags |= unix.O_DIRECTORY
	}
	rel = strings.TrimPrefix(rel, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(d, rel, &how)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}
