package runc

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// TestOwnerLocksSurviveConcurrentReaps starts many backends on one state dir while each of
// them reaps. A lock file that became visible before it was locked would be taken for a dead
// owner's and deleted by a concurrent Reap, and its process could not start.
func TestOwnerLocksSurviveConcurrentReaps(t *testing.T) {
	runcPath := testenv.Runc(t)
	state := t.TempDir()
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	backends := make(chan *Backend, n)
	for range n {
		wg.Go(func() {
			b, err := New(Config{Runc: runcPath, StateDir: state, Images: testImages{rootfs: t.TempDir()}, Logger: zerolog.Nop()})
			if err != nil {
				errs <- err
				return
			}
			backends <- b
			if _, err := b.Reap(context.Background()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	close(backends)
	for err := range errs {
		t.Error(err)
	}
	live := 0
	for b := range backends {
		live++
		if _, err := os.Stat(b.lockPath(b.token)); err != nil {
			t.Errorf("owner lock of a live backend is gone: %v", err)
		}
		defer b.Close()
	}
	if live != n {
		t.Fatalf("%d of %d backends started", live, n)
	}
}

// TestReapLeavesYoungTempLocks: a ".new-" file (the fallback when O_TMPFILE is missing) may
// belong to a process between creating and locking it, so Reap leaves it alone while young
// and removes it once it is stale.
func TestReapLeavesYoungTempLocks(t *testing.T) {
	runcPath := testenv.Runc(t)
	state := t.TempDir()
	b, err := New(Config{Runc: runcPath, StateDir: state, Images: testImages{rootfs: t.TempDir()}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tok, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	young := filepath.Join(b.owners, tmpLockPrefix+tok)
	if err := os.WriteFile(young, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Fatalf("Reap removed a young temp lock: %v", err)
	}
	old := time.Now().Add(-2 * tmpLockGrace)
	if err := os.Chtimes(young, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(young); !os.IsNotExist(err) {
		t.Fatalf("Reap kept a stale temp lock (stat err %v)", err)
	}
}
