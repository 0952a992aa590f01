package flock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestApply(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	a, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := Apply(a, unix.LOCK_EX); err != nil {
		t.Fatalf("first lock: %v", err)
	}
	// A second open file description cannot take the lock while the first holds it.
	if err := Apply(b, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("second lock while held: %v, want EWOULDBLOCK", err)
	}
	if err := Apply(a, unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := Apply(b, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("second lock after unlock: %v", err)
	}
}
