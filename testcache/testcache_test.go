package testcache

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// Prepare makes one cache per workspace, owned by the run's user, that keeps its contents
// between runs; List names it with its workspace; Clear removes it, read-only module
// directories included.
func TestCacheLifecycle(t *testing.T) {
	state := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	a := New(state, "/srv/a", 0)
	dir, err := a.Prepare(uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range subdirs {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", sub, err)
		}
	}
	if u, g := owner(t, filepath.Join(dir, "go-build")); u != uid || g != gid {
		t.Errorf("owner %d:%d, want %d:%d", u, g, uid, gid)
	}
	// A module as Go leaves it: read-only files in read-only directories.
	mod := filepath.Join(dir, "go-mod", "example.test", "m@v1.0.0")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "m.go"), []byte("package m\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(mod, 0o555); err != nil {
		t.Fatal(err)
	}
	if again, err := a.Prepare(uid, gid); err != nil || again != dir {
		t.Fatalf("second Prepare: %q %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(mod, "m.go")); err != nil {
		t.Errorf("the cache lost its contents between runs: %v", err)
	}
	b := New(state, "/srv/b", 0)
	if other, err := b.Prepare(uid, gid); err != nil || other == dir {
		t.Fatalf("another workspace shares the cache: %q %v", other, err)
	}
	es, err := List(state)
	if err != nil || len(es) != 2 {
		t.Fatalf("List: %+v %v", es, err)
	}
	if es[0].Workspace != "/srv/a" || es[0].Bytes != int64(len("package m\n")+len("/srv/a\n")) {
		t.Errorf("largest cache %+v, want /srv/a's", es[0])
	}
	if ok, err := Clear(state, "/srv/a"); !ok || err != nil {
		t.Fatalf("Clear: %v %v", ok, err)
	}
	if _, err := os.Stat(a.Dir()); !os.IsNotExist(err) {
		t.Errorf("cleared cache still there: %v", err)
	}
	if ok, _ := Clear(state, "/srv/a"); ok {
		t.Error("Clear found a cache that was cleared")
	}
	if n, err := ClearAll(state); n != 1 || err != nil {
		t.Errorf("ClearAll: %d %v", n, err)
	}
}

// A cache measured past its size is cleared before the next run.
func TestCacheClearedPastItsSize(t *testing.T) {
	state := t.TempDir()
	c := New(state, "/srv/a", 1024)
	dir, err := c.Prepare(os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "npm", "blob")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		n, busy := c.size, c.measuring
		c.mu.Unlock()
		if !busy && n > 1024 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache was not measured past its size (size %d)", n)
		}
		if !busy {
			c.measureLater()
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.Prepare(os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(big); !os.IsNotExist(err) {
		t.Errorf("a cache past its size was kept: %v", err)
	}
}

// A cache owned by another user (the profile's user changed) is started afresh, so the run's
// user can write it.
func TestCacheOwnerChange(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("not applicable: changing a cache's owner needs root")
	}
	state := t.TempDir()
	c := New(state, "/srv/a", 0)
	dir, err := c.Prepare(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pip", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(65534, 65534); err != nil {
		t.Fatal(err)
	}
	if u, _ := owner(t, filepath.Join(dir, "pip")); u != 65534 {
		t.Errorf("owner %d, want 65534", u)
	}
	if _, err := os.Stat(filepath.Join(dir, "pip", "x")); !os.IsNotExist(err) {
		t.Errorf("root's cache was handed to another user: %v", err)
	}
}
