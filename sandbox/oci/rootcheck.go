package oci

// Checks every backend that runs an image's root directory in place (runc, and containerd
// without a snapshot) makes before handing a configuration to runc: runc creates missing mount
// points and working directories, and in a shared image directory that would change the image
// for every later run. (Copied from sandbox/runc's bundle checks so another backend can use
// them; sandbox/runc can switch to these and drop its own.)

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// CheckMountPoints refuses a configuration whose mount targets do not already exist. runc
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
//
// The bind at sandbox.EgressSocketTarget must have a Unix socket as its source (not followed
// through a symlink): a regular file or directory there would be shown to the sandbox instead
// of the proxy, and runc would fail late on a missing one.
func CheckMountPoints(cfg *specs.Spec) error {
	for i, m := range cfg.Mounts {
		if m.Destination == sandbox.EgressSocketTarget && m.Type == "bind" {
			fi, err := os.Lstat(m.Source)
			if err == nil && fi.Mode().Type() != fs.ModeSocket {
				err = fmt.Errorf("it is a %s", fi.Mode().Type())
			}
			if err != nil {
				return fmt.Errorf("%w: egress proxy socket %s is not a unix socket (%v); start the egress proxy before the run", sandbox.ErrInvalidSpec, m.Source, err)
			}
		}
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

// CheckWorkdir refuses a working directory that does not exist before the run starts. runc
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
func CheckWorkdir(cfg *specs.Spec) error {
	if cfg.Process == nil {
		return nil
	}
	cwd := path.Clean(cfg.Process.Cwd)
	if cwd == "/" {
		return nil
	}
	for _, m := range cfg.Mounts {
		if path.Clean(m.Destination) == cwd {
			return nil // a mount point: CheckMountPoints made sure it exists
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
