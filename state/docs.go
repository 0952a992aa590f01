package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/internal/flock"
)

// WithDocsDir puts the file store's documents under dir/<kind>/ instead of the store's own
// directory: where Airlock kept the gateway's pins before the state store held them
// ($AIRLOCK_STATE_DIR/pins), so they carry over.
func WithDocsDir(dir string) FileOption { return func(f *File) { f.docs = dir } }

// FileOption configures OpenFile.
type FileOption func(*File)

func (f *File) docDir(kind string) string { return filepath.Join(f.docs, kind) }

// DocLocation implements Docs: the document's file.
func (f *File) DocLocation(kind, name string) string {
	return filepath.Join(f.docDir(kind), name+".json")
}

// UpdateDoc implements Docs. The lock is a file of its own (<name>.lock): the document is
// replaced by rename, and a lock on it would lock a file no longer at the path. flock locks
// belong to an open file, so goroutines of one process exclude each other as processes do.
func (f *File) UpdateDoc(_ context.Context, kind, name string, fn func([]byte) ([]byte, bool, error)) error {
	if err := errors.Join(CheckDocName(kind), CheckDocName(name)); err != nil {
		return err
	}
	dir := f.docDir(kind)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	lp := filepath.Join(dir, name+".lock")
	lf, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	defer lf.Close()
	if err := flock.Apply(lf, unix.LOCK_EX); err != nil {
		return fmt.Errorf("state store: locking %s: %w", lp, err)
	}
	old, err := f.readDoc(kind, name)
	if err != nil {
		return err
	}
	next, write, err := fn(old)
	if err != nil || !write {
		return err
	}
	p := f.DocLocation(kind, name)
	if next == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state store: %w", err)
		}
		return syncDir(dir)
	}
	if string(next) == string(old) {
		return nil
	}
	return replaceFile(dir, name+".json", next, true)
}

// ReadDoc implements Docs. Documents are replaced by rename, so a reader without the lock
// sees one whole version.
func (f *File) ReadDoc(_ context.Context, kind, name string) ([]byte, error) {
	if err := errors.Join(CheckDocName(kind), CheckDocName(name)); err != nil {
		return nil, err
	}
	return f.readDoc(kind, name)
}

func (f *File) readDoc(kind, name string) ([]byte, error) {
	p := f.DocLocation(kind, name)
	fh, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxDocBytes+1))
	if err != nil {
		return nil, fmt.Errorf("state store: reading %s: %w", p, err)
	}
	if len(b) > MaxDocBytes {
		return nil, fmt.Errorf("state store: %s is larger than %d bytes", p, MaxDocBytes)
	}
	if b == nil {
		b = []byte{} // present but empty is not absent
	}
	return b, nil
}

// ListDocs implements Docs.
func (f *File) ListDocs(_ context.Context, kind string) ([]string, error) {
	if err := CheckDocName(kind); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(f.docDir(kind))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	var out []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && e.Type().IsRegular() && CheckDocName(name) == nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// replaceFile replaces dir/name atomically (a temporary file renamed over it) and, with
// durable, durably: the file is fsynced before the rename and the directory after it.
func replaceFile(dir, name string, b []byte, durable bool) error {
	p := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("state store: writing %s: %w", p, err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("state store: writing %s: %w", p, err)
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state store: fsync %s: %w", dir, err)
	}
	return nil
}
