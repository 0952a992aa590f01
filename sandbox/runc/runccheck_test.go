package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// fakeRunc writes a script that prints version (runc's --version output) and counts its calls.
func fakeRunc(t *testing.T, dir, version string) (bin string, calls func() int) {
	t.Helper()
	bin = filepath.Join(dir, "runc")
	count := filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho x >> '" + count + "'\nprintf '" + version + "'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, func() int {
		data, _ := os.ReadFile(count)
		return strings.Count(string(data), "x")
	}
}

const (
	versionSeccomp   = `runc version 1.5.2\nspec: 1.3.0\ngo: go1.26.8\nlibseccomp: 2.5.4\n`
	versionNoSeccomp = `runc version 1.5.2\nspec: 1.3.0\ngo: go1.26.8\n`
)

// TestCheckRuncRemembers: Open asks a runc binary for its version once, and again whenever the
// binary changes; a runc without seccomp is refused every time and never remembered.
func TestCheckRuncRemembers(t *testing.T) {
	ctx := context.Background()
	t.Run("asked once per binary", func(t *testing.T) {
		dir := t.TempDir()
		bin, calls := fakeRunc(t, dir, versionSeccomp)
		state := filepath.Join(dir, "state")
		if err := os.Mkdir(state, 0o700); err != nil {
			t.Fatal(err)
		}
		b := &Backend{runc: bin, stateDir: state}
		for range 3 {
			if err := b.checkRunc(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := calls(); n != 1 {
			t.Fatalf("runc --version ran %d times for one unchanged binary; want 1", n)
		}
		data, err := os.ReadFile(filepath.Join(state, runcCheckFile))
		if err != nil || !strings.Contains(string(data), "libseccomp 2.5.4") {
			t.Fatalf("remembered answer = %q, %v", data, err)
		}
		// A touched (rebuilt, replaced) binary is asked again.
		later := time.Now().Add(time.Hour)
		if err := os.Chtimes(bin, later, later); err != nil {
			t.Fatal(err)
		}
		if err := b.checkRunc(ctx); err != nil {
			t.Fatal(err)
		}
		if n := calls(); n != 2 {
			t.Fatalf("runc --version ran %d times after the binary changed; want 2", n)
		}
		// Another binary at another path is asked too, even with the same contents.
		other := filepath.Join(dir, "runc2")
		if err := os.Link(bin, other); err != nil {
			t.Fatal(err)
		}
		b2 := &Backend{runc: other, stateDir: state}
		if err := b2.checkRunc(ctx); err != nil {
			t.Fatal(err)
		}
		if n := calls(); n != 3 {
			t.Fatalf("runc --version ran %d times for a runc at a new path; want 3", n)
		}
	})
	t.Run("without seccomp refused every time", func(t *testing.T) {
		dir := t.TempDir()
		bin, calls := fakeRunc(t, dir, versionNoSeccomp)
		b := &Backend{runc: bin, stateDir: dir}
		for i := range 2 {
			err := b.checkRunc(ctx)
			if !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), "without seccomp") {
				t.Fatalf("call %d: err = %v; want ErrUnavailable naming the missing seccomp support", i, err)
			}
		}
		if n := calls(); n != 2 {
			t.Fatalf("runc --version ran %d times; a refusal must not be remembered (want 2)", n)
		}
		if _, err := os.Stat(filepath.Join(dir, runcCheckFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused runc was remembered: %v", err)
		}
	})
	t.Run("a stale answer for another binary is not trusted", func(t *testing.T) {
		dir := t.TempDir()
		good, _ := fakeRunc(t, filepath.Join(dir), versionSeccomp)
		b := &Backend{runc: good, stateDir: dir}
		if err := b.checkRunc(ctx); err != nil {
			t.Fatal(err)
		}
		// The same path now holds a runc without seccomp (a new inode).
		if err := os.Remove(good); err != nil {
			t.Fatal(err)
		}
		fakeRunc(t, dir, versionNoSeccomp)
		if err := b.checkRunc(ctx); !errors.Is(err, sandbox.ErrUnavailable) {
			t.Fatalf("replaced runc without seccomp: err = %v; want ErrUnavailable", err)
		}
	})
}

// TestParseID pins the container id grammar Reap relies on to attribute leftovers:
// ^airlock-([0-9a-f]{1,32})-([0-9]+)$.
func TestParseID(t *testing.T) {
	for _, c := range []struct {
		id, owner string
		ok        bool
	}{
		{"airlock-0123456789ab-7", "0123456789ab", true},
		{"airlock-f-0", "f", true},
		{"airlock-" + strings.Repeat("a", 32) + "-123", strings.Repeat("a", 32), true},
		{"airlock-" + strings.Repeat("a", 33) + "-1", "", false},
		{"airlock--1", "", false},
		{"airlock-ab-", "", false},
		{"airlock-ab", "", false},
		{"airlock-AB-1", "", false},
		{"airlock-ab-1x", "", false},
		{"airlock-ab-1-2", "", false},
		{"airlock-ag-1", "", false},
		{"xairlock-ab-1", "", false},
		{"airlock-ab-+1", "", false},
		{"", "", false},
	} {
		owner, ok := parseID(c.id)
		if owner != c.owner || ok != c.ok {
			t.Errorf("parseID(%q) = %q, %v; want %q, %v", c.id, owner, ok, c.owner, c.ok)
		}
	}
}
