// Package images builds the root file systems Airlock's sandboxes run on, locally (no registry
// is reachable), and keeps them content-addressed under <stateDir>/images:
//
//	images/.lock                     flock held by every build
//	images/sha256/<hex>/rootfs       one unpacked root file system per image ID
//	images/names/<name>.json         the sandbox.Image a name currently resolves to
//	images/tmp/                      builds in progress, renamed into sha256/ when complete
//
// An image ID is "sha256:<hex>" over a deterministic walk of the rootfs (paths, types, modes,
// owners, link targets, file contents) plus, for the host image, its bind list. The host
// image's binds expose the host's /usr and a few /etc files whose content is NOT part of the
// ID: a package upgrade on the host changes what the host image runs but not its ID.
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// ToolboxPath is where the static airlock-toolbox binary lives inside every image.
const ToolboxPath = "/.airlock/bin/airlock-toolbox"

// Errors callers branch on.
var (
	// ErrNotBuilt: the image name is known but has not been built in this store.
	ErrNotBuilt = errors.New("image not built")
	// ErrUnknown: no image of that name can be built.
	ErrUnknown = errors.New("unknown image")
)

// defaultPruneAfter is how long an image directory stays on disk after no name refers to it.
// A sandbox that resolved the old image just before a rebuild may still be running on it;
// removing its files under it would change what that run sees.
const defaultPruneAfter = time.Hour

// Store is the on-disk image store at <stateDir>/images. It is safe for concurrent use by
// several goroutines and processes: builds serialise on a file lock, and readers only ever
// see complete directories and index files because both are renamed into place.
type Store struct {
	dir        string
	hostRoot   string        // "" means "/"; tests build the host image from a fake tree
	pruneAfter time.Duration // how long unreferenced image directories are kept
}

// Open opens (creating it with mode 0700 if missing) the image store under stateDir.
func Open(stateDir string) (*Store, error) {
	if stateDir == "" {
		return nil, errors.New("images: empty state directory (set AIRLOCK_STATE_DIR)")
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("images: state directory %s: %w", stateDir, err)
	}
	dir := filepath.Join(abs, "images")
	// 0700: image trees are root's, and nobody else needs to list or alter them.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("images: creating store %s: %w", dir, err)
	}
	// Refuse a store someone else can write: whoever can replace a rootfs or a name index
	// chooses the programs every sandbox runs, and the binds the host image gets.
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if uid, _ := statOwner(fi); int(uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("images: store %s is owned by uid %d with mode %v: it must belong to uid %d and not be writable by group or others (chown %d %s && chmod 700 %s)",
			dir, uid, fi.Mode().Perm(), os.Geteuid(), os.Geteuid(), dir, dir)
	}
	return &Store{dir: dir, pruneAfter: defaultPruneAfter}, nil
}

// Dir is the store's directory, <stateDir>/images.
func (s *Store) Dir() string { return s.dir }

// BuildOptions configure one build.
type BuildOptions struct {
	// Toolbox is the host path of the static airlock-toolbox binary baked into the image at
	// ToolboxPath. Required.
	Toolbox string
	// Busybox is the host path of a static busybox for the busybox image; "" means
	// DefaultBusybox (Debian's busybox-static).
	Busybox string
}

// Names lists the images Build knows how to make.
func Names() []string { return []string{"busybox", "host"} }

func known(name string) bool { return slices.Contains(Names(), name) }

func unknownError(name string) error {
	return fmt.Errorf("image %q: %w: buildable images are %s", name, ErrUnknown, strings.Join(Names(), ", "))
}

// notBuilt is the error for a known image without a build; errors.Is(err, ErrNotBuilt) holds.
type notBuilt struct{ name string }

func (e notBuilt) Error() string {
	return fmt.Sprintf("image %q is not built: run `airlock images build %s` (or make setup)", e.name, e.name)
}

func (e notBuilt) Is(target error) bool { return target == ErrNotBuilt }

func notBuiltError(name string) error { return notBuilt{name: name} }

// Build builds the image called name and points the name at it. Building content that is
// already in the store reuses it (same ID, nothing copied), so rebuilding is cheap.
func (s *Store) Build(ctx context.Context, name string, opts BuildOptions) (sandbox.Image, error) {
	if !known(name) {
		return sandbox.Image{}, unknownError(name)
	}
	if err := checkToolbox(opts.Toolbox); err != nil {
		return sandbox.Image{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return sandbox.Image{}, err
	}
	defer unlock()
	s.cleanTmp(filepath.Join(s.dir, "tmp"))

	p := newPlan()
	var binds []sandbox.Mount
	switch name {
	case "busybox":
		err = buildBusybox(ctx, p, opts)
	case "host":
		binds, err = buildHost(ctx, p, s.hostRoot, opts)
	}
	if err != nil {
		return sandbox.Image{}, fmt.Errorf("building image %q: %w", name, err)
	}
	slices.SortFunc(binds, compareMount)
	id, err := digestPlan(p, binds)
	if err != nil {
		return sandbox.Image{}, err
	}
	final := s.imageDir(id)
	img := sandbox.Image{Name: name, ID: id, Rootfs: filepath.Join(final, "rootfs"), Binds: binds}

	// Unchanged content: the stored tree is reused once it re-hashes to its ID, so an edited
	// or half-deleted tree is never handed out again.
	if got, err := digestTree(img.Rootfs, binds, os.Geteuid() == 0); err != nil || got != id {
		if err := s.materialize(ctx, p, id, binds, final); err != nil {
			return sandbox.Image{}, fmt.Errorf("building image %q: %w", name, err)
		}
	}
	if err := s.writeIndex(img); err != nil {
		return sandbox.Image{}, err
	}
	if err := s.prune(); err != nil {
		return sandbox.Image{}, err
	}
	return img, nil
}

// materialize writes plan p in a temporary directory, checks that the tree hashes to id, and
// renames it to final. Called with the lock held.
func (s *Store) materialize(ctx context.Context, p *plan, id string, binds []sandbox.Mount, final string) error {
	tmpRoot := filepath.Join(s.dir, "tmp")
	if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	work, err := os.MkdirTemp(tmpRoot, "build-")
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(work) // no-op once renamed into sha256/
	rootfs := filepath.Join(work, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := p.materialize(rootfs); err != nil {
		return err
	}
	if err := finalize(rootfs); err != nil {
		return err
	}
	got, err := digestTree(rootfs, binds, os.Geteuid() == 0)
	if err != nil {
		return err
	}
	if got != id {
		// A source file (busybox, the toolbox) changed while it was being copied.
		return fmt.Errorf("images: the built tree hashes to %s, not the planned %s: a source file changed during the build; build again", got, id)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.install(work, final)
}

// install renames the finished build at work to final. A tree already at final did not hash
// to its ID (the caller checked): it is moved aside rather than deleted, because a running
// sandbox may still be using it; cleanTmp removes it after pruneAfter.
func (s *Store) install(work, final string) error {
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if _, err := os.Lstat(final); err == nil {
		stale := filepath.Join(s.dir, "tmp", fmt.Sprintf("stale-%s-%d", filepath.Base(final), time.Now().UnixNano()))
		if err := os.Rename(final, stale); err != nil {
			return fmt.Errorf("images: moving damaged %s aside: %w", final, err)
		}
		now := time.Now()
		_ = os.Chtimes(stale, now, now)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("images: %w", err)
	}
	if err := os.Rename(work, final); err != nil {
		return fmt.Errorf("images: installing %s: %w", final, err)
	}
	return syncDir(filepath.Dir(final))
}

func (s *Store) imageDir(id string) string {
	return filepath.Join(s.dir, "sha256", strings.TrimPrefix(id, "sha256:"))
}

func (s *Store) indexPath(name string) string {
	return filepath.Join(s.dir, "names", name+".json")
}

// writeIndex points img.Name at img, atomically (temp file, fsync, rename). When the name
// moves to a new ID, the old image directory's mtime is set to now: prune keeps it for
// pruneAfter from that moment.
func (s *Store) writeIndex(img sandbox.Image) error {
	data, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	data = append(data, '\n')
	p := s.indexPath(img.Name)
	old, err := os.ReadFile(p)
	if err == nil && string(old) == string(data) {
		return nil
	}
	if err == nil {
		var prev sandbox.Image
		if json.Unmarshal(old, &prev) == nil && prev.ID != img.ID && validID(prev.ID) {
			now := time.Now()
			_ = os.Chtimes(s.imageDir(prev.ID), now, now)
		}
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+img.Name+".json.tmp-")
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("images: writing %s: %w", f.Name(), err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("images: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("images: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("images: updating %s: %w", p, err)
	}
	return syncDir(dir)
}

// readIndex returns the image name currently points at.
func (s *Store) readIndex(name string) (sandbox.Image, error) {
	data, err := os.ReadFile(s.indexPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return sandbox.Image{}, notBuiltError(name)
	} else if err != nil {
		return sandbox.Image{}, fmt.Errorf("images: reading index of %q: %w", name, err)
	}
	var img sandbox.Image
	if err := json.Unmarshal(data, &img); err != nil {
		return sandbox.Image{}, fmt.Errorf("images: index %s is damaged (%v): rebuild with `airlock images build %s`", s.indexPath(name), err, name)
	}
	// The index only ever points into this store; anything else was edited by hand and is
	// refused rather than run as a root file system.
	if img.Name != name || !validID(img.ID) || img.Rootfs != filepath.Join(s.imageDir(img.ID), "rootfs") {
		return sandbox.Image{}, fmt.Errorf("images: index %s does not describe an image of this store: rebuild with `airlock images build %s`", s.indexPath(name), name)
	}
	return img, nil
}

func validID(id string) bool {
	hex, ok := strings.CutPrefix(id, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Resolve returns the built image called name; it implements sandbox.ImageResolver.
func (s *Store) Resolve(ctx context.Context, name string) (sandbox.Image, error) {
	if err := ctx.Err(); err != nil {
		return sandbox.Image{}, err
	}
	if !known(name) {
		return sandbox.Image{}, unknownError(name)
	}
	img, err := s.readIndex(name)
	if err != nil {
		return sandbox.Image{}, err
	}
	if fi, err := os.Stat(img.Rootfs); err != nil || !fi.IsDir() {
		return sandbox.Image{}, notBuiltError(name)
	}
	return img, nil
}

var _ sandbox.ImageResolver = (*Store)(nil)

// List returns every built image, sorted by name.
func (s *Store) List() ([]sandbox.Image, error) {
	var out []sandbox.Image
	for _, name := range Names() {
		img, err := s.readIndex(name)
		if errors.Is(err, ErrNotBuilt) {
			continue
		} else if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b sandbox.Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// prune removes image directories no name refers to once they have been unreferenced for
// pruneAfter. Called with the lock held.
func (s *Store) prune() error {
	referenced := map[string]bool{}
	for _, name := range Names() {
		img, err := s.readIndex(name)
		if err != nil {
			continue
		}
		referenced[filepath.Base(s.imageDir(img.ID))] = true
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	for _, e := range entries {
		if referenced[e.Name()] {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < s.pruneAfter {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, "sha256", e.Name())); err != nil {
			return fmt.Errorf("images: pruning %s: %w", e.Name(), err)
		}
	}
	return nil
}

// cleanTmp removes builds that a crashed process left behind (no build can be running: the
// caller holds the lock) and damaged images moved aside more than pruneAfter ago.
func (s *Store) cleanTmp(tmpRoot string) {
	entries, err := os.ReadDir(tmpRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(tmpRoot, e.Name())
		if strings.HasPrefix(e.Name(), "stale-") {
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < s.pruneAfter {
				continue
			}
		}
		_ = os.RemoveAll(p)
	}
}

// lock takes the store's exclusive build lock, waiting until ctx is done.
func (s *Store) lock(ctx context.Context) (unlock func(), err error) {
	p := filepath.Join(s.dir, ".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("images: opening lock %s: %w", p, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("images: locking %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("images: waiting for another build to finish (lock %s): %w", p, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("images: syncing %s: %w", dir, err)
	}
	return nil
}
