package owner

import (
	"errors"
	"os"
	"slices"
	"testing"
)

// TestReapOnlyDeadOwners: a live owner's lock cannot be taken, so Reap skips it; a dead
// owner's (its descriptor closed, as the kernel does when a process dies) is reaped, and its
// lock file removed only when the reap succeeded.
func TestReapOnlyDeadOwners(t *testing.T) {
	dir := t.TempDir()
	self, err := Take(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer self.Release()
	live, err := Take(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release()
	dead, err := Take(dir)
	if err != nil {
		t.Fatal(err)
	}
	dead.f.Close() // the process died: the kernel dropped its lock, the file stays
	failing, err := Take(dir)
	if err != nil {
		t.Fatal(err)
	}
	failing.f.Close()

	var reaped []string
	err = Reap(dir, self.Token(), func(token string) error {
		reaped = append(reaped, token)
		if token == failing.Token() {
			return errors.New("cleanup failed")
		}
		return nil
	})
	if err == nil {
		t.Error("Reap hid the failed reap")
	}
	slices.Sort(reaped)
	want := []string{dead.Token(), failing.Token()}
	slices.Sort(want)
	if !slices.Equal(reaped, want) {
		t.Errorf("reaped %v, want the dead owners %v", reaped, want)
	}
	if Listed(dir, dead.Token()) {
		t.Error("the reaped owner's lock file remains")
	}
	if !Listed(dir, failing.Token()) {
		t.Error("the lock file of an owner whose reap failed was removed; nobody would retry")
	}
	for _, l := range []*Lock{self, live} {
		if !Listed(dir, l.Token()) {
			t.Errorf("live owner %s lost its lock file", l.Token())
		}
	}
}

// TestReleaseRemovesLockFile: a closed owner is no longer listed, so its leftovers (if any)
// are reaped by the next reaper.
func TestReleaseRemovesLockFile(t *testing.T) {
	dir := t.TempDir()
	l, err := Take(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !IsToken(l.Token()) {
		t.Errorf("token %q is not a token", l.Token())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.Path()); !os.IsNotExist(err) || Listed(dir, l.Token()) {
		t.Errorf("lock file still there after Release (stat err %v)", err)
	}
}

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{"0a1b2c": true, "": false, "ABC": false, "a-b": false, "../x": false, "0123456789abcdef0123456789abcdef0": false} {
		if IsToken(s) != want {
			t.Errorf("IsToken(%q) = %v, want %v", s, !want, want)
		}
	}
}
