package images

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// tarEpoch is every entry's modification time, so the same image always gives the same bytes.
func tarEpoch() time.Time { return time.Unix(0, 0).UTC() }

// WriteTar writes img's root file system to w as an uncompressed tar, the form Docker's image
// import and containerd's content store take. The output is deterministic: entries in walk
// order, owner 0:0, modification time 1970-01-01. Binds are not part of the tar; a backend
// adds img.Binds as read-only bind mounts, as for runc.
func WriteTar(ctx context.Context, img sandbox.Image, w io.Writer) error {
	tw := tar.NewWriter(w)
	root := img.Rootfs
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(unixMode(fi.Mode())),
			ModTime: tarEpoch(),
			Uname:   "root",
			Gname:   "root",
			Format:  tar.FormatPAX,
		}
		switch {
		case fi.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case fi.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = fi.Size()
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, err := io.Copy(tw, f); err != nil {
			return err
		} else if n != hdr.Size {
			return fmt.Errorf("%s changed size while being archived", p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("images: archiving image %q: %w", img.Name, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("images: archiving image %q: %w", img.Name, err)
	}
	return nil
}
