package images

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/airlock-mcp/airlock/sandbox"
)

// digestVersion is mixed into every ID so a change to the walk format changes every ID.
const digestVersion = "airlock-image-v1\n"

// digester computes an image ID: sha256 over the root file system's entries in walk order (for
// each its path, type, permission and special bits, and the link target or the content's size
// and sha256) followed by the bind list. Modification times and owners are left out, so
// rebuilding unchanged content gives the same ID; every image is root-owned by construction
// (see finalize) and a stored tree that is not counts as damaged (see digestTree).
//
// For the host image the binds' CONTENT is not part of the ID, only their sources and targets:
// upgrading a package on the host changes what the image runs without changing its ID.
type digester struct{ h hash.Hash }

func newDigester() digester {
	d := digester{h: sha256.New()}
	io.WriteString(d.h, digestVersion)
	return d
}

func (d digester) dir(rel string, mode uint32) { fmt.Fprintf(d.h, "dir %q %04o\n", rel, mode) }

func (d digester) symlink(rel, target string) { fmt.Fprintf(d.h, "symlink %q %q\n", rel, target) }

func (d digester) file(rel string, mode uint32, size int64, sum string) {
	fmt.Fprintf(d.h, "file %q %04o %d %s\n", rel, mode, size, sum)
}

func (d digester) id(binds []sandbox.Mount) string {
	sorted := slices.Clone(binds)
	slices.SortFunc(sorted, compareMount)
	for _, b := range sorted {
		fmt.Fprintf(d.h, "bind %q %q %q\n", b.Source, b.Target, b.Access)
	}
	return "sha256:" + hex.EncodeToString(d.h.Sum(nil))
}

// digestPlan is the ID the plan's tree will have once materialized.
func digestPlan(p *plan, binds []sandbox.Mount) (string, error) {
	d := newDigester()
	for _, name := range p.paths() {
		e := p.entries[name]
		rel := "."
		if name != "/" {
			rel = name[1:]
		}
		switch {
		case e.kind == kindDir:
			d.dir(rel, unixMode(e.mode))
		case e.kind == kindSymlink:
			d.symlink(rel, e.target)
		case e.src != "":
			sum, size, err := fileSHA256(e.src)
			if err != nil {
				return "", fmt.Errorf("images: hashing %s: %w", e.src, err)
			}
			d.file(rel, unixMode(e.mode), size, sum)
		default:
			s := sha256.Sum256(e.data)
			d.file(rel, unixMode(e.mode), int64(len(e.data)), hex.EncodeToString(s[:]))
		}
	}
	return d.id(binds), nil
}

// digestTree is the ID of the tree at rootfs. When rootOwned is set, an entry not owned by
// 0:0 is an error: the tree is not what Airlock built.
func digestTree(rootfs string, binds []sandbox.Mount, rootOwned bool) (string, error) {
	d := newDigester()
	err := filepath.WalkDir(rootfs, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := de.Info()
		if err != nil {
			return err
		}
		if uid, gid := statOwner(fi); rootOwned && (uid != 0 || gid != 0) {
			return fmt.Errorf("%s is owned by %d:%d, not root", p, uid, gid)
		}
		switch {
		case fi.Mode().IsDir():
			d.dir(rel, unixMode(fi.Mode()))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			d.symlink(rel, target)
		case fi.Mode().IsRegular():
			sum, size, err := fileSHA256(p)
			if err != nil {
				return err
			}
			d.file(rel, unixMode(fi.Mode()), size, sum)
		default:
			// Devices, FIFOs and sockets have no place in an image: the runtime provides /dev.
			return fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("images: hashing %s: %w", rootfs, err)
	}
	return d.id(binds), nil
}

func compareMount(a, b sandbox.Mount) int {
	if a.Target != b.Target {
		if a.Target < b.Target {
			return -1
		}
		return 1
	}
	if a.Source != b.Source {
		if a.Source < b.Source {
			return -1
		}
		return 1
	}
	return 0
}

func fileSHA256(p string) (sum string, size int64, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// unixMode returns the permission and special bits of m in their chmod(2) encoding.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
