// Package owner tells the leftovers of a dead Airlock process from the live containers of
// another one. Every backend instance holds an exclusive flock on <dir>/<token>.lock for its
// lifetime (Take); the kernel drops the lock when the process dies, however it dies. A reaper
// that can take another owner's lock (Reap) has proof that the owner is gone, and only then
// touches its containers: a reaper never kills a run of a live Airlock process, even one
// sharing the directory. The token is part of every container's name or labels, so each
// container can be traced to its owner.
package owner

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LockSuffix ends every published lock file: <dir>/<token>.lock.
const LockSuffix = ".lock"

// TmpPrefix marks a lock file that is being created; it is renamed into place only once
// locked, so a reaper never sees an unlocked lock file of a live owner.
const TmpPrefix = ".new-"

// TmpGrace is how old a ".new-" lock file must be before Reap treats it as a dead process's:
// creating and locking it takes microseconds.
const TmpGrace = time.Minute

// Lock is an owner's exclusive lock, held from Take to Release.
type Lock struct {
	dir   string
	token string
	f     *os.File
}

// Take creates and locks a new owner lock with a fresh token in dir (which must exist).
func Take(dir string) (*Lock, error) {
	token, err := NewToken()
	if err != nil {
		return nil, fmt.Errorf("owner token: %w", err)
	}
	f, err := lockedTempFile(dir)
	if err != nil {
		return nil, fmt.Errorf("creating owner lock: %w", err)
	}
	_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n") // for people reading the dir
	if err := publish(f, Path(dir, token)); err != nil {
		f.Close()
		return nil, fmt.Errorf("publishing owner lock: %w", err)
	}
	return &Lock{dir: dir, token: token, f: f}, nil
}

// Token is the owner's token: 12 lower-case hex digits.
func (l *Lock) Token() string { return l.token }

// Path is the lock file's path.
func (l *Lock) Path() string { return Path(l.dir, l.token) }

// Release removes the lock file while still holding the lock, so no reaper ever sees it
// unlocked while it names this owner's (now gone) containers, then drops the lock. Release
// only after the owner's last container is gone.
func (l *Lock) Release() error {
	err := os.Remove(l.Path())
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path is the lock file of token in dir.
func Path(dir, token string) string { return filepath.Join(dir, token+LockSuffix) }

// NewToken returns a random owner token.
func NewToken() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// IsToken reports whether s has the form of an owner token: 1 to 32 lower-case hex digits.
// A reaper checks it before it builds paths or filters from a name it read.
func IsToken(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// lockedTempFile returns an exclusively locked file in dir that no other process can see yet.
// A lock file must never be visible unlocked: a concurrent Reap would take it for a dead
// owner's, lock it and delete it, and this process could not start. O_TMPFILE gives an
// unnamed file; on file systems without it, a ".new-" name stands in, which Reap leaves alone
// while it is young (see TmpGrace).
func lockedTempFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	var f *os.File
	if err == nil {
		f = os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)"))
	} else {
		name, terr := NewToken()
		if terr != nil {
			return nil, terr
		}
		f, err = os.OpenFile(filepath.Join(dir, TmpPrefix+name), os.O_CREATE|os.O_EXCL|os.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if strings.Contains(filepath.Base(f.Name()), TmpPrefix) {
			_ = os.Remove(f.Name())
		}
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return f, nil
}

// publish gives the locked file f its final name.
func publish(f *os.File, dst string) error {
	if strings.Contains(filepath.Base(f.Name()), TmpPrefix) {
		if err := os.Rename(f.Name(), dst); err != nil {
			_ = os.Remove(f.Name())
			return err
		}
		return nil
	}
	// An O_TMPFILE file is linked into place through its /proc descriptor.
	return unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
}

// TryLock takes the lock file at p if its owner is dead. It returns nil, nil when the owner
// is alive (or the file is gone).
func TryLock(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	return f, nil
}

// Reap calls reap(token) for every dead owner in dir other than self, holding the dead
// owner's lock while it runs, and removes the lock file once reap succeeded (so a failed reap
// is retried by the next reaper). Live owners, young ".new-" files and names that are not
// tokens are skipped. It returns every error, joined.
func Reap(dir, self string, reap func(token string) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reaping: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		token, ok := strings.CutSuffix(name, LockSuffix)
		if !ok {
			token, ok = strings.CutPrefix(name, TmpPrefix)
			if info, err := e.Info(); ok && (err != nil || time.Since(info.ModTime()) < TmpGrace) {
				continue // possibly a starting process between create and lock
			}
		}
		if !ok || token == self || !IsToken(token) {
			continue
		}
		p := filepath.Join(dir, name)
		f, err := TryLock(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f == nil {
			continue // alive
		}
		err = reap(token)
		if err == nil {
			// Removed while locked: a concurrent reaper either failed to lock it or
			// finds it gone; both are fine.
			err = os.Remove(p)
		}
		f.Close()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Listed reports whether token still has a lock file in dir (locked or being created). A live
// owner's lock file exists before its first container does and is removed only after its last
// one is gone, so a reaper that lists a container first and then finds its owner unlisted has
// found a leftover, race-free.
func Listed(dir, token string) bool {
	for _, p := range []string{Path(dir, token), filepath.Join(dir, TmpPrefix+token)} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}
