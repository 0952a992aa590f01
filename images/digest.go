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

// digest is the image ID: sha256 over a deterministic walk of rootfs (lexical order; for each
// entry its path, type, permission and special bits, owner, and the link target or the content's
// sha256) followed by the bind list. Modification times are left out so rebuilding unchanged
// content gives the same ID.
//
// For the host image the binds' CONTENT is not part of the ID, only their sources and targets:
// upgrading a package on the host changes what the image runs without changing its ID.
func digest(rootfs string, binds []sandbox.Mount) (string, error) {
	h := sha256.New()
	io.WriteString(h, digestVersion)
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		uid, gid := statOwner(fi)
		mode := unixMode(fi.Mode())
		switch {
		case fi.Mode().IsDir():
			fmt.Fprintf(h, "dir %q %04o %d %d\n", rel, mode, uid, gid)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "symlink %q %q %d %d\n", rel, target, uid, gid)
		case fi.Mode().IsRegular():
			sum, err := fileSHA256(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "file %q %04o %d %d %d %s\n", rel, mode, uid, gid, fi.Size(), sum)
		default:
			// Devices, FIFOs and sockets have no place in an image: the runtime provides /dev.
			return fmt.Errorf("images: %s: unsupported file type %s", p, fi.Mode().Type())
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("images: hashing %s: %w", rootfs, err)
	}
	sorted := slices.Clone(binds)
	slices.SortFunc(sorted, func(a, b sandbox.Mount) int { return compareMount(a, b) })
	for _, b := range sorted {
		fmt.Fprintf(h, "bind %q %q %q\n", b.Source, b.Target, b.Access)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
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

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
