// Package testcache keeps the caches of test toolchains (Go's build and module caches, npm's
// and pip's) between run_tests calls, one set per workspace, outside the workspace, under
// Airlock's state directory.
//
// run_tests runs on a throwaway copy of the workspace with a fresh /tmp, so without a cache
// every run of a Go project compiles the standard library again: 24 s for a trivial project.
// With the cache mounted read-write into the test sandbox the second run takes about a second.
//
// What a cache may hold is what that workspace's tests wrote: a test can put anything in it,
// and the next run of the same workspace reads it. That is the trust the workspace already
// has (its tests run its own code), so caches are never shared between workspaces. A cache
// that grows past its size is cleared; `airlock cache clear` clears one by hand.
package testcache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target is where a cache is mounted inside the test sandbox (under /tmp, which is the
// sandbox's own tmpfs, so no mount point is created in the shared image).
const Target = "/tmp/airlock-cache"

// Env points the toolchains at the cache inside the sandbox.
func Env() []string {
	return []string{
		"GOCACHE=" + Target + "/go-build",
		"GOMODCACHE=" + Target + "/go-mod",
		"npm_config_cache=" + Target + "/npm",
		"PIP_CACHE_DIR=" + Target + "/pip",
	}
}

// subdirs are the caches' directories, one per toolchain.
var subdirs = [...]string{"go-build", "go-mod", "npm", "pip"}

// DefaultMax is a workspace's cache size before it is cleared.
const DefaultMax = 2 << 30

// workspaceFile names, in a cache directory, the workspace it belongs to.
const workspaceFile = "workspace"

// Root is where the caches live under a state directory.
func Root(stateDir string) string { return filepath.Join(stateDir, "cache") }

// Key is the directory name of a workspace's cache: a hash of its real path.
func Key(workspace string) string {
	sum := sha256.Sum256([]byte(workspace))
	return hex.EncodeToString(sum[:8])
}

// Cache is one workspace's cache.
type Cache struct {
	dir       string
	workspace string
	max       int64

	mu        sync.Mutex
	size      int64 // as last measured; -1 before
	measuring bool
}

// New returns the cache of workspace (a real, absolute path) under stateDir, capped at max
// bytes (0: DefaultMax). Nothing is created until Prepare.
func New(stateDir, workspace string, max int64) *Cache {
	if max <= 0 {
		max = DefaultMax
	}
	return &Cache{dir: filepath.Join(Root(stateDir), Key(workspace)), workspace: workspace, max: max, size: -1}
}

// Root is the state directory the caches live under, whose file system they fill.
func (c *Cache) Root() string { return filepath.Dir(filepath.Dir(c.dir)) }

// Dir is the cache's host directory.
func (c *Cache) Dir() string { return c.dir }

// Prepare makes the cache ready for a run as uid:gid and returns the host directory to mount
// at Target. A cache
// last measured over its size, or owned by another user (the profile's user changed), is
// cleared first. After Prepare the cache's size is measured again in the background.
func (c *Cache) Prepare(uid, gid int) (string, error) {
	c.mu.Lock()
	over := c.size > c.max
	if over {
		c.size = -1
	}
	c.mu.Unlock()
	if fi, err := os.Stat(c.dir); err == nil {
		if data, err := os.Stat(filepath.Join(c.dir, "data")); err == nil {
			fi = data
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if over || (ok && (int(st.Uid) != uid || int(st.Gid) != gid)) {
			if err := clearDir(c.dir); err != nil {
				return "", fmt.Errorf("test cache %s: clearing: %w", c.dir, err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(c.dir), 0o700); err != nil {
		return "", fmt.Errorf("test cache: %w", err)
	}
	if err := os.Mkdir(c.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("test cache: %w", err)
	}
	data := filepath.Join(c.dir, "data")
	for _, d := range append([]string{""}, subdirs[:]...) {
		p := filepath.Join(data, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return "", fmt.Errorf("test cache: %w", err)
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return "", fmt.Errorf("test cache %s: %w", p, err)
		}
	}
	// Beside what is mounted, so that a test cannot change which workspace the cache says it
	// belongs to.
	if err := writeWorkspaceFile(c.dir, c.workspace); err != nil {
		return "", err
	}
	c.measureLater()
	return data, nil
}

func writeWorkspaceFile(dir, workspace string) error {
	p := filepath.Join(dir, workspaceFile)
	if b, err := os.ReadFile(p); err == nil && string(b) == workspace+"\n" {
		return nil
	}
	if err := os.WriteFile(p, []byte(workspace+"\n"), 0o444); err != nil {
		return fmt.Errorf("test cache: %w", err)
	}
	return nil
}

// measureLater measures the cache's size in the background, one walk at a time.
func (c *Cache) measureLater() {
	c.mu.Lock()
	if c.measuring {
		c.mu.Unlock()
		return
	}
	c.measuring = true
	c.mu.Unlock()
	go func() {
		// After the run has had time to fill it; a run still going is measured next time.
		time.Sleep(time.Second)
		n, _ := size(c.dir)
		c.mu.Lock()
		c.size, c.measuring = n, false
		c.mu.Unlock()
	}()
}

// size adds up the bytes of the regular files under dir.
func size(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished while walking: not counted
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// clearDir removes dir and everything in it. Go makes its module cache read-only, so
// directories are made writable first where a removal is refused.
func clearDir(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || os.Geteuid() == 0 {
		// Root needs no write permission to remove; and chmod by name follows a symlink a
		// test run might swap in.
		return err
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// Entry describes one cache on disk.
type Entry struct {
	Dir       string `json:"dir"`
	Workspace string `json:"workspace"`
	Bytes     int64  `json:"bytes"`
}

// List returns the caches under stateDir, largest first.
func List(stateDir string) ([]Entry, error) {
	des, err := os.ReadDir(Root(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(Root(stateDir), de.Name())
		ws, _ := os.ReadFile(filepath.Join(dir, workspaceFile))
		n, _ := size(dir)
		out = append(out, Entry{Dir: dir, Workspace: strings.TrimSpace(string(ws)), Bytes: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	return out, nil
}

// Clear removes the cache of workspace (a real, absolute path). It reports whether there was
// one.
func Clear(stateDir, workspace string) (bool, error) {
	dir := filepath.Join(Root(stateDir), Key(workspace))
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return true, clearDir(dir)
}

// ClearAll removes every cache under stateDir and returns how many there were.
func ClearAll(stateDir string) (int, error) {
	es, err := List(stateDir)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, e := range es {
		errs = append(errs, clearDir(e.Dir))
	}
	return len(es), errors.Join(errs...)
}

// Reserve is the free space a test run must leave on the file system that holds the caches
// (and usually Airlock's audit log): below it, Guard stops the run.
const Reserve = 1 << 30

// Free reports the bytes available to unprivileged writers on dir's file system.
func Free(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// ErrDiskLow is the cause of a run Guard stopped.
var ErrDiskLow = errors.New("the test cache's file system fell below its free-space reserve")

// Guard watches dir's file system while a run writes its cache there, and calls stop with
// ErrDiskLow when its free space falls below reserve (Reserve in Airlock): a single run can
// write past its cache's size (which is measured between runs), but never fill the disk that
// holds the audit log. It returns when done is closed.
func Guard(dir string, reserve uint64, interval time.Duration, done <-chan struct{}, stop func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if free, err := Free(dir); err == nil && free < reserve {
			stop(ErrDiskLow)
			return
		}
	}
}
