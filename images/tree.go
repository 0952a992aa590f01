package images

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// tree writes one root file system under root. Every mode is set explicitly with chmod after
// creation, so the result (and therefore the image ID) does not depend on the builder's umask.
type tree struct {
	root string
}

// abs maps a path inside the image ("/etc/passwd" or "etc/passwd") to the host path.
func (t tree) abs(rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if clean == "/" || strings.Contains(rel, "\x00") {
		return "", fmt.Errorf("images: invalid path %q inside the image", rel)
	}
	return filepath.Join(t.root, filepath.FromSlash(clean)), nil
}

// dir creates the directory rel (and any missing parents, 0755) with exactly mode.
func (t tree) dir(rel string, mode fs.FileMode) error {
	p, err := t.abs(rel)
	if err != nil {
		return err
	}
	if err := t.parents(p); err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("images: %w", err)
	}
	if err := os.Chmod(p, mode); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// parents creates the missing parents of host path p with mode 0755.
func (t tree) parents(p string) error {
	parent := filepath.Dir(p)
	if parent == t.root {
		return nil
	}
	if fi, err := os.Lstat(parent); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("images: %s exists and is not a directory", parent)
		}
		return nil
	}
	if err := t.parents(parent); err != nil {
		return err
	}
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("images: %w", err)
	}
	return os.Chmod(parent, 0o755)
}

// file writes data to rel with exactly mode.
func (t tree) file(rel string, data []byte, mode fs.FileMode) error {
	p, err := t.abs(rel)
	if err != nil {
		return err
	}
	if err := t.parents(p); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return os.Chmod(p, mode)
}

// copyFile copies the regular host file src to rel with exactly mode; set-id bits of src are
// never carried over because mode replaces them.
func (t tree) copyFile(rel, src string, mode fs.FileMode) error {
	p, err := t.abs(rel)
	if err != nil {
		return err
	}
	if err := t.parents(p); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("images: %s is not a regular file", src)
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("images: copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return os.Chmod(p, mode)
}

// symlink creates rel pointing at target (resolved inside the container at run time).
func (t tree) symlink(rel, target string) error {
	p, err := t.abs(rel)
	if err != nil {
		return err
	}
	if err := t.parents(p); err != nil {
		return err
	}
	if err := os.Symlink(target, p); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// finalize makes the tree root-owned (when the builder is root) and strips set-uid/set-gid
// bits everywhere. The sandbox already runs with no_new_privileges, but an image without
// set-id files stays safe on a backend or profile that forgets it.
func finalize(root string) error {
	chown := os.Geteuid() == 0
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if chown {
			if err := os.Lchown(p, 0, 0); err != nil {
				return fmt.Errorf("images: %w", err)
			}
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			if err := os.Chmod(p, fi.Mode()&^(fs.ModeSetuid|fs.ModeSetgid)); err != nil {
				return fmt.Errorf("images: stripping set-id bits of %s: %w", p, err)
			}
		}
		return nil
	})
}

// checkToolbox refuses a toolbox that cannot run in the images: it must be a regular file,
// and an ELF toolbox must be statically linked because the busybox image has no C library
// or dynamic loader.
func checkToolbox(p string) error {
	if p == "" {
		return errors.New("images: no toolbox given: build bin/airlock-toolbox with `make build` and pass its path")
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("images: toolbox %s: %w (build it with make build)", p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("images: toolbox %s is not a regular file", p)
	}
	f, err := elf.Open(p)
	if err != nil {
		return nil // not ELF (e.g. a script in tests): nothing more to check
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("images: toolbox %s is dynamically linked and cannot run in the busybox image: build it with CGO_ENABLED=0 (make build)", p)
		}
	}
	return nil
}

// statOwner returns the numeric owner of fi.
func statOwner(fi fs.FileInfo) (uid, gid uint32) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid
	}
	return 0, 0
}
