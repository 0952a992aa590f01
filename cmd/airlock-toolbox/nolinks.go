package main

// The file tools never follow a link. A policy judges the path it is given ("notes.txt"), so
// the file that is read or written must be the file that path names: a committed symlink
// notes.txt -> .env, or a hard link of .env named notes.txt, would otherwise hand back a
// secret the policy refuses by name (workspace.json denies "**/.env"), and a symlinked
// directory g -> .git would let "g/config" rewrite .git/config. So every component of a path
// is opened with openat(O_NOFOLLOW) from the directory before it (openat2's
// RESOLVE_NO_SYMLINKS is not available: seccomp refuses openat2, see seccomp/profiles.go), a
// symlink in any component is refused with an error that names its target, so the agent can
// ask for the target by name and the policy judges that, and a regular file with more than one
// hard link is refused because its other names cannot be known.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// linkError refuses a path because one of its components is a link.
type linkError struct {
	path   string // the component that is a link, relative to the workspace
	target string // a symlink's target as stored; empty for a hard link
	links  uint64 // a hard-linked file's link count
	rest   string // the components of the requested path after the link
}

func (e *linkError) Error() string {
	if e.links > 0 {
		return fmt.Sprintf("%s has %d hard links: it is also reachable under other names, which a policy may refuse, "+
			"so the file tools do not read or write it; ask the user to replace it with a copy of its own",
			display(e.path), e.links)
	}
	if to, ok := linkTargetInWorkspace(e.path, e.target); ok {
		return fmt.Sprintf("%s is a symlink to %q; the file tools do not follow links, because the policy judges "+
			"the path it is given: use the path %q instead", display(e.path), e.target, path.Join(to, e.rest))
	}
	return fmt.Sprintf("%s is a symlink to %q, outside the workspace; the file tools do not follow links",
		display(e.path), e.target)
}

// linkTargetInWorkspace is the workspace-relative path a symlink at linkRel points to, when it
// stays inside the workspace lexically. The answer is only a name to ask for: the tools judge
// and open it afresh, refusing it in turn if it is itself a link.
func linkTargetInWorkspace(linkRel, target string) (string, bool) {
	var p string
	switch {
	case target == "" || strings.IndexByte(target, 0) >= 0:
		return "", false
	case target == workspaceRoot:
		return ".", true
	case strings.HasPrefix(target, workspaceRoot+"/"):
		p = path.Clean(strings.TrimPrefix(target, workspaceRoot+"/"))
	case path.IsAbs(target):
		return "", false
	default:
		p = path.Join(path.Dir(linkRel), target)
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}

// readLinkAt returns the target of the symlink name in dirfd ("" if it cannot be read).
func readLinkAt(dirfd int, name string) string {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil || n < 0 {
		return ""
	}
	return string(buf[:n])
}

// openWorkspace opens the workspace root itself; it is the mount point, not a link.
func openWorkspace(root string) (*os.File, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("opening workspace: %w", err)
	}
	return os.NewFile(uintptr(fd), "workspace"), nil
}

// walkDirs opens the directory rel inside ws one component at a time with
// O_NOFOLLOW|O_DIRECTORY. With create, missing components are made (mode 0755). A component
// that is a symlink is refused with a *linkError, one that is not a directory with an error
// saying so, so the directory opened is the lexical path itself. ws stays open.
func walkDirs(ws *os.File, rel string, create bool) (*os.File, error) {
	fd, err := retryEINTR(func() (int, error) { return unix.Dup(int(ws.Fd())) })
	if err != nil {
		return nil, fmt.Errorf("opening workspace: %w", err)
	}
	unix.CloseOnExec(fd)
	cur := os.NewFile(uintptr(fd), ".")
	if rel == "." {
		return cur, nil
	}
	done := "."
	comps := strings.Split(rel, "/")
	for i, comp := range comps {
		done = path.Join(done, comp)
		fd, err := openAtNoFollow(int(cur.Fd()), comp, unix.O_RDONLY|unix.O_DIRECTORY)
		if create && errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(int(cur.Fd()), comp, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				cur.Close()
				return nil, fmt.Errorf("%s: mkdir: %w", display(done), errnoText(err))
			}
			fd, err = openAtNoFollow(int(cur.Fd()), comp, unix.O_RDONLY|unix.O_DIRECTORY)
		}
		if err != nil {
			err = componentErr(int(cur.Fd()), comp, done, err)
			if le := (*linkError)(nil); errors.As(err, &le) {
				le.rest = path.Join(comps[i+1:]...)
			}
			cur.Close()
			return nil, err
		}
		cur.Close()
		cur = os.NewFile(uintptr(fd), comp)
	}
	return cur, nil
}

// notDirError says that a path component is not a directory.
type notDirError struct{ path string }

func (e *notDirError) Error() string { return display(e.path) + " is not a directory" }

// openFileNoLinks opens the regular file rel inside ws for reading without following a link in
// any component, and refuses a file with more than one hard link. O_NONBLOCK stops a FIFO
// planted in the workspace from hanging the call until the timeout.
func openFileNoLinks(ws *os.File, rel string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	if rel == "." {
		return nil, st, errors.New("path names the workspace itself; use list_directory")
	}
	dir, err := walkDirs(ws, path.Dir(rel), false)
	if err != nil {
		return nil, st, withRest(err, path.Base(rel))
	}
	defer dir.Close()
	return openRegularAt(int(dir.Fd()), path.Base(rel), rel)
}

// withRest appends tail to the rest of a *linkError's path, so its suggestion names the whole
// path to use.
func withRest(err error, tail string) error {
	if le := (*linkError)(nil); errors.As(err, &le) {
		le.rest = path.Join(le.rest, tail)
	}
	return err
}

// openRegularAt opens name in dirfd (rel is how it is reported) for reading: no symlink, a
// regular file, exactly one hard link.
func openRegularAt(dirfd int, name, rel string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := openAtNoFollow(dirfd, name, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, st, componentErr(dirfd, name, rel, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, st, fmt.Errorf("%s: %w", display(rel), errnoText(err))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		f.Close()
		return nil, st, fmt.Errorf("%s is a directory; use list_directory", display(rel))
	default:
		f.Close()
		return nil, st, fmt.Errorf("%s is not a regular file", display(rel))
	}
	if st.Nlink > 1 {
		f.Close()
		return nil, st, &linkError{path: rel, links: uint64(st.Nlink)}
	}
	return f, st, nil
}

// componentErr explains why opening name (reported as rel) in dirfd failed. O_NOFOLLOW fails
// with ELOOP on a symlink, and with ENOTDIR when O_DIRECTORY is also set, so a failed open is
// looked at again without following to say which it was.
func componentErr(dirfd int, name, rel string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		if st, serr := fstatAtNoFollow(dirfd, name); serr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return &linkError{path: rel, target: readLinkAt(dirfd, name)}
		}
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: no such file or directory", display(rel))
	case errors.Is(err, unix.ENOTDIR):
		return &notDirError{path: rel}
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: permission denied", display(rel))
	case errors.Is(err, unix.ENXIO):
		return fmt.Errorf("%s is not a regular file", display(rel))
	}
	return fmt.Errorf("%s: %w", display(rel), errnoText(err))
}

// openAtNoFollow is openat(dirfd, name, flags|O_NOFOLLOW|O_CLOEXEC), retried on EINTR.
func openAtNoFollow(dirfd int, name string, flags int) (int, error) {
	return retryEINTR(func() (int, error) {
		return unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		fd, err := f()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
}

func fstatAtNoFollow(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// errnoText keeps an errno's message and drops nothing else; errors here never carry a host path.
func errnoText(err error) error {
	var en unix.Errno
	if errors.As(err, &en) {
		return en
	}
	return err
}

// readDirNames lists a directory opened by fd, unsorted. Names only: os.File.ReadDir would
// stat entries by a path built from the file's name, which is not a path here.
func readDirNames(d *os.File) ([]string, error) {
	return d.Readdirnames(-1)
}
