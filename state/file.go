package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/internal/flock"
	"github.com/airlock-mcp/airlock/policies"
)

// File is the embedded store: JSON files in one directory, changed under an flock so every
// process sharing the directory (a server, `airlock grant`, a second server) sees one state.
//
//	control.json   grants and kill switches (fsynced: a revocation must survive a crash)
//	counters.json  rate-limit windows in use (rewritten per reservation, not fsynced: a
//	               crash of the machine may lose the last few units; a restart of Airlock
//	               loses none)
//	lock           the flock every change takes
type File struct {
	dir  string
	docs string // the root of documents' directories (Docs); dir unless WithDocsDir
	// mu orders this process's goroutines before they queue on the flock, which is per
	// open file description and so would not exclude them from each other.
	mu sync.Mutex
	// cached counters: reused while counters.json is the file this process last wrote.
	cache   fileCounters
	cacheID fileID
}

// fileID tells one version of a file from another: inode numbers are reused once a replaced
// file is gone, so the change time and size go with it.
type fileID struct {
	ino, size uint64
	ctime     int64
}

func idOf(st *unix.Stat_t) fileID {
	return fileID{ino: st.Ino, size: uint64(st.Size), ctime: st.Ctim.Nano()}
}

// OpenFile opens (creating) the file store in dir.
func OpenFile(dir string, opts ...FileOption) (*File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	// Only Airlock's own user may read grants' hashes or change kill switches.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	f := &File{dir: dir, docs: dir}
	for _, o := range opts {
		o(f)
	}
	// Fail now, not on the first call, when the directory cannot be locked or read.
	if err := f.locked(func() error { _, err := f.readControl(); return err }); err != nil {
		return nil, err
	}
	return f, nil
}

// Describe implements Store.
func (f *File) Describe() string { return "file " + f.dir }

// Close implements Store.
func (f *File) Close() error { return nil }

func (f *File) path(name string) string { return filepath.Join(f.dir, name) }

// locked runs fn holding the store's lock.
func (f *File) locked(fn func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	lf, err := os.OpenFile(f.path("lock"), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("state store %s: %w", f.dir, err)
	}
	defer lf.Close()
	if err := flock.Apply(lf, unix.LOCK_EX); err != nil {
		return fmt.Errorf("state store %s: lock: %w", f.dir, err)
	}
	return fn()
}

func (f *File) readControl() (Control, error) {
	var c Control
	b, err := os.ReadFile(f.path("control.json"))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("state store %s: %w", f.dir, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		// A damaged file is not read as "no grants, no kill switches": that would lift every
		// kill switch. The operator repairs or removes it.
		return c, fmt.Errorf("state store %s: control.json is damaged (%v); repair it or move it away to start over", f.dir, err)
	}
	return c, nil
}

// writeFile replaces name atomically: a reader sees the old or the new file, never half.
// With durable, the file and the directory are fsynced too.
func (f *File) writeFile(name string, v any, durable bool) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return replaceFile(f.dir, name, append(b, '\n'), durable)
}

// changeControl applies fn to control.json under the lock.
func (f *File) changeControl(fn func(*Control) error) error {
	return f.locked(func() error {
		c, err := f.readControl()
		if err != nil {
			return err
		}
		if err := fn(&c); err != nil {
			return err
		}
		c.Version = ""
		return f.writeFile("control.json", c, true)
	})
}

// AddGrant implements Store.
func (f *File) AddGrant(_ context.Context, g Grant) error {
	return f.changeControl(func(c *Control) error {
		grants, err := addGrant(c.Grants, g, time.Now())
		c.Grants = grants
		return err
	})
}

// addGrant is AddGrant's rule on a list, shared by the stores.
func addGrant(grants []Grant, g Grant, now time.Time) ([]Grant, error) {
	if err := CheckGrantName(g.Name); err != nil {
		return grants, err
	}
	for i, old := range grants {
		if old.Name != g.Name {
			continue
		}
		if old.Active(now) {
			return grants, fmt.Errorf("%w: %s is active; revoke it first or choose another name", ErrGrantExists, g.Name)
		}
		grants[i] = g
		return grants, nil
	}
	return append(grants, g), nil
}

// RevokeGrant implements Store.
func (f *File) RevokeGrant(_ context.Context, name string, at time.Time) (Grant, error) {
	var out Grant
	err := f.changeControl(func(c *Control) error {
		var err error
		out, err = revokeGrant(c.Grants, name, at)
		return err
	})
	return out, err
}

func revokeGrant(grants []Grant, name string, at time.Time) (Grant, error) {
	for i := range grants {
		if grants[i].Name == name {
			if grants[i].Revoked.IsZero() {
				grants[i].Revoked = at.UTC()
			}
			return grants[i], nil
		}
	}
	return Grant{}, fmt.Errorf("%w: %s (airlock grant list shows the grants)", ErrNoGrant, name)
}

// SetKill implements Store.
func (f *File) SetKill(_ context.Context, k Kill) error {
	if err := k.Check(); err != nil {
		return err
	}
	return f.changeControl(func(c *Control) error {
		c.Kills = setKill(c.Kills, k)
		return nil
	})
}

func setKill(kills []Kill, k Kill) []Kill {
	for i := range kills {
		if kills[i].Target == k.Target {
			kills[i] = k
			return kills
		}
	}
	return append(kills, k)
}

// ClearKill implements Store.
func (f *File) ClearKill(_ context.Context, t Target) (bool, error) {
	if err := t.Check(); err != nil {
		return false, err
	}
	was := false
	err := f.changeControl(func(c *Control) error {
		n := len(c.Kills)
		c.Kills = slices.DeleteFunc(c.Kills, func(k Kill) bool { return k.Target == t })
		was = len(c.Kills) != n
		return nil
	})
	return was, err
}

// Control implements Store. It reads without the lock: files are replaced by rename, so a
// read sees one whole version.
func (f *File) Control(ctx context.Context) (Control, error) {
	for range 3 {
		v, err := f.Version(ctx)
		if err != nil {
			return Control{}, err
		}
		c, err := f.readControl()
		if err != nil {
			return Control{}, err
		}
		// The version is the file's identity, so it must be the one read: a rename between
		// the two is retried.
		if v2, err := f.Version(ctx); err == nil && v2 == v {
			c.Version = v
			return c, nil
		}
	}
	return Control{}, fmt.Errorf("state store %s: control.json keeps changing; try again", f.dir)
}

// Version implements Store: control.json's inode and change time. Every change writes a new
// file, so a new inode.
func (f *File) Version(context.Context) (string, error) {
	var st unix.Stat_t
	err := unix.Stat(f.path("control.json"), &st)
	if errors.Is(err, unix.ENOENT) {
		return "none", nil
	}
	if err != nil {
		return "", fmt.Errorf("state store %s: %w", f.dir, err)
	}
	id := idOf(&st)
	return strconv.FormatUint(id.ino, 36) + "." + strconv.FormatInt(id.ctime, 36) + "." + strconv.FormatUint(id.size, 36), nil
}

// fileCounters is counters.json: the units used in each counter's current window.
type fileCounters map[string]fileBucket

type fileBucket struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Used  int64     `json:"used"`
}

func counterID(k policies.CounterKey) string {
	return strconv.Quote(k.Counter) + " " + k.Scope + " " + strconv.Quote(k.Subject)
}

// changeCounters applies fn to counters.json under the lock.
func (f *File) changeCounters(fn func(fileCounters) bool) error {
	return f.locked(func() error {
		cs, err := f.readCounters()
		if err != nil {
			return err
		}
		if !fn(cs) {
			return nil
		}
		now := time.Now()
		for id, b := range cs {
			if !b.End.After(now) {
				delete(cs, id)
			}
		}
		f.cache = nil // cs may be the cache, now changed: kept only once written
		if err := f.writeFile("counters.json", cs, false); err != nil {
			return err
		}
		var st unix.Stat_t
		if unix.Stat(f.path("counters.json"), &st) == nil {
			f.cache, f.cacheID = cs, idOf(&st)
		}
		return nil
	})
}

func (f *File) readCounters() (fileCounters, error) {
	var st unix.Stat_t
	err := unix.Stat(f.path("counters.json"), &st)
	if errors.Is(err, unix.ENOENT) {
		return fileCounters{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state store %s: %w", f.dir, err)
	}
	if f.cache != nil && idOf(&st) == f.cacheID {
		return f.cache, nil
	}
	b, err := os.ReadFile(f.path("counters.json"))
	if err != nil {
		return nil, fmt.Errorf("state store %s: %w", f.dir, err)
	}
	cs := fileCounters{}
	if err := json.Unmarshal(b, &cs); err != nil {
		// Starting the budgets over would hand out units already spent: fail closed.
		return nil, fmt.Errorf("state store %s: counters.json is damaged (%v); move it away to reset the budgets", f.dir, err)
	}
	return cs, nil
}

// Reserve implements policies.Counters.
func (f *File) Reserve(k policies.CounterKey, n, max int64) (bool, error) {
	if n < 0 {
		return false, fmt.Errorf("counter %s: negative reservation %d", k.Counter, n)
	}
	got := false
	err := f.changeCounters(func(cs fileCounters) bool {
		id := counterID(k)
		b := cs[id]
		if k.Window.After(b.Start) {
			b = fileBucket{Start: k.Window.UTC(), End: k.End.UTC()}
		}
		// A reservation computed just before a window rolled over counts against the newer
		// window: the conservative choice.
		if n > max || b.Used > max-n {
			return false
		}
		b.Used += n
		cs[id] = b
		got = true
		return true
	})
	return got, err
}

// Release implements policies.Counters.
func (f *File) Release(k policies.CounterKey, n int64) error {
	return f.changeCounters(func(cs fileCounters) bool {
		id := counterID(k)
		b, ok := cs[id]
		if !ok || !b.Start.Equal(k.Window) {
			return false
		}
		b.Used = max(b.Used-n, 0)
		cs[id] = b
		return true
	})
}
