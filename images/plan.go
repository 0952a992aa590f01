package images

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// plan is an image described before anything is written: every entry of the root file system
// with its exact mode. The image ID is computed from the plan (hashing the source files), so
// rebuilding unchanged content finds the stored image without writing a single file; a plan
// is only materialized into a directory when its ID is not in the store yet.
type plan struct {
	entries map[string]*entry // by image path ("/", "/bin", "/bin/sh", ...)
}

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
)

type entry struct {
	kind     entryKind
	mode     fs.FileMode // permission and sticky bits; set-id bits are never planned
	implicit bool        // a parent directory nobody asked for explicitly (0755)
	data     []byte      // file content, unless src is set
	src      string      // host file whose content is copied
	target   string      // symlink target
}

func newPlan() *plan {
	return &plan{entries: map[string]*entry{"/": {kind: kindDir, mode: 0o755}}}
}

// clean validates an image path and returns it absolute and clean.
func cleanPath(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" || strings.Contains(p, "\x00") {
		return "", fmt.Errorf("images: invalid path %q inside the image", p)
	}
	return c, nil
}

func (p *plan) has(name string) bool {
	c, err := cleanPath(name)
	if err != nil {
		return false
	}
	_, ok := p.entries[c]
	return ok
}

// add records e at name, creating missing parents as 0755 directories.
func (p *plan) add(name string, e *entry) error {
	c, err := cleanPath(name)
	if err != nil {
		return err
	}
	if err := p.parents(c); err != nil {
		return err
	}
	if old, ok := p.entries[c]; ok {
		if old.kind == kindDir && e.kind == kindDir {
			old.mode, old.implicit = e.mode, false
			return nil
		}
		return fmt.Errorf("images: %s is planned twice", c)
	}
	p.entries[c] = e
	return nil
}

func (p *plan) parents(c string) error {
	parent := path.Dir(c)
	if parent == "/" {
		return nil
	}
	if e, ok := p.entries[parent]; ok {
		if e.kind != kindDir {
			return fmt.Errorf("images: %s is not a directory in the image", parent)
		}
		return nil
	}
	if err := p.parents(parent); err != nil {
		return err
	}
	p.entries[parent] = &entry{kind: kindDir, mode: 0o755, implicit: true}
	return nil
}

func (p *plan) dir(name string, mode fs.FileMode) error {
	return p.add(name, &entry{kind: kindDir, mode: mode & (fs.ModePerm | fs.ModeSticky)})
}

func (p *plan) file(name string, data []byte, mode fs.FileMode) error {
	return p.add(name, &entry{kind: kindFile, mode: mode.Perm(), data: data})
}

// copyFile plans a copy of the regular host file src; its set-id bits are never carried over
// because mode replaces them.
func (p *plan) copyFile(name, src string, mode fs.FileMode) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("images: %s is not a regular file", src)
	}
	return p.add(name, &entry{kind: kindFile, mode: mode.Perm(), src: src})
}

func (p *plan) symlink(name, target string) error {
	if target == "" || strings.Contains(target, "\x00") {
		return fmt.Errorf("images: invalid symlink target %q for %s", target, name)
	}
	return p.add(name, &entry{kind: kindSymlink, target: target})
}

// paths returns the planned paths in the order filepath.WalkDir visits a directory tree:
// depth first, each directory's names in lexical order.
func (p *plan) paths() []string {
	out := make([]string, 0, len(p.entries))
	for k := range p.entries {
		out = append(out, k)
	}
	slices.SortFunc(out, compareWalkOrder)
	return out
}

// compareWalkOrder orders image paths component by component ("/a/b" before "/a-c"), which is
// the order of filepath.WalkDir.
func compareWalkOrder(a, b string) int {
	if a == b {
		return 0
	}
	if a == "/" {
		return -1
	}
	if b == "/" {
		return 1
	}
	as, bs := strings.Split(a[1:], "/"), strings.Split(b[1:], "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := strings.Compare(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return len(as) - len(bs)
}

// materialize writes the plan under root, which must exist and be empty.
func (p *plan) materialize(root string) error {
	t := tree{root: root}
	for _, name := range p.paths() {
		e := p.entries[name]
		var err error
		switch {
		case name == "/":
			err = os.Chmod(root, e.mode)
		case e.kind == kindDir:
			err = t.dir(name, e.mode)
		case e.kind == kindSymlink:
			err = t.symlink(name, e.target)
		case e.src != "":
			err = t.copyFile(name, e.src, e.mode)
		default:
			err = t.file(name, e.data, e.mode)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
