package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Owner locks. Every Backend holds an exclusive flock on owners/<token>.lock for its lifetime;
// the kernel drops it when the process dies, however it dies. A reaper that can take another
// owner's lock has proof that the owner is gone, and only then touches its containers: Reap
// never kills a run of a live Airlock process, even one sharing this state dir.

const lockSuffix = ".lock"

// tmpLockPrefix marks a lock file that is being created; it is renamed into place only once
// locked, so a reaper never sees an unlocked lock file of a live owner.
const tmpLockPrefix = ".new-"

func (b *Backend) lockPath(token string) string {
	return filepath.Join(b.owners, token+lockSuffix)
}

func (b *Backend) takeOwnerLock() error {
	token, err := newToken()
	if err != nil {
		return fmt.Errorf("runc backend: owner token: %w", err)
	}
	f, err := lockedTempFile(b.owners)
	if err != nil {
		return fmt.Errorf("runc backend: creating owner lock: %w", err)
	}
	_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n") // for people reading the dir
	if err := publish(f, b.lockPath(token)); err != nil {
		f.Close()
		return fmt.Errorf("runc backend: publishing owner lock: %w", err)
	}
	b.token, b.lock = token, f
	return nil
}

// lockedTempFile returns an exclusively locked file in dir that no other process can see yet.
// A lock file must never be visible unlocked: a concurrent Reap would take it for a dead
// owner's, lock it and delete it, and this process could not start. O_TMPFILE gives an
// unnamed file; on file systems without it, a ".new-" name stands in, which Reap leaves alone
// while it is young (see tmpLockGrace).
func lockedTempFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	var f *os.File
	if err == nil {
		f = os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)"))
	} else {
		name, terr := newToken()
		if terr != nil {
			return nil, terr
		}
		f, err = os.OpenFile(filepath.Join(dir, tmpLockPrefix+name), os.O_CREATE|os.O_EXCL|os.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if strings.Contains(filepath.Base(f.Name()), tmpLockPrefix) {
			_ = os.Remove(f.Name())
		}
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return f, nil
}

// publish gives the locked file f its final name.
func publish(f *os.File, dst string) error {
	if strings.Contains(filepath.Base(f.Name()), tmpLockPrefix) {
		if err := os.Rename(f.Name(), dst); err != nil {
			_ = os.Remove(f.Name())
			return err
		}
		return nil
	}
	// An O_TMPFILE file is linked into place through its /proc descriptor.
	return unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
}

// tmpLockGrace is how old a ".new-" lock file must be before Reap treats it as a dead
// process's: creating and locking it takes microseconds.
const tmpLockGrace = time.Minute

// tryLock takes the lock file at p if its owner is dead. It returns nil, nil when the owner
// is alive (or the file is gone).
func tryLock(p string) (*os.File, error) {
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

// Reap removes what dead Airlock processes left behind in this state dir: their containers
// (killed and deleted with `runc delete --force`), bundles, cgroups and lock files. A
// container whose owner's lock file is gone entirely (its owner closed or was reaped) is a
// leftover too. Containers of this Backend and of every live owner are never touched.
func (b *Backend) Reap(ctx context.Context) ([]sandbox.Reaped, error) {
	entries, err := os.ReadDir(b.owners)
	if err != nil {
		return nil, fmt.Errorf("reaping: %w", err)
	}
	var reaped []sandbox.Reaped
	var errs []error
	for _, e := range entries {
		name := e.Name()
		token, ok := strings.CutSuffix(name, lockSuffix)
		if !ok {
			token, ok = strings.CutPrefix(name, tmpLockPrefix)
			if info, err := e.Info(); ok && (err != nil || time.Since(info.ModTime()) < tmpLockGrace) {
				continue // possibly a starting process between create and lock
			}
		}
		if !ok || token == b.token || !isToken(token) {
			continue
		}
		p := filepath.Join(b.owners, name)
		f, err := tryLock(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f == nil {
			continue // alive
		}
		var r []sandbox.Reaped
		r, err = b.reapOwner(ctx, token)
		reaped = append(reaped, r...)
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
	// Leftovers whose owner has no lock file at all. A live owner's lock file exists before
	// its first container does and is removed only after its last one is gone, so checking
	// it after listing the container is race-free.
	for _, dir := range []string{b.root, b.bundles} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			owner, ok := parseID(e.Name())
			if !ok || owner == b.token || b.ownerListed(owner) {
				continue
			}
			r, err := b.reapContainer(ctx, e.Name())
			if err != nil {
				errs = append(errs, err)
			}
			if r != nil {
				reaped = append(reaped, *r)
			}
		}
	}
	return reaped, errors.Join(errs...)
}

func isToken(s string) bool {
	_, ok := parseID("airlock-" + s + "-0")
	return ok
}

// ownerListed reports whether owner still has a lock file (locked or being created).
func (b *Backend) ownerListed(owner string) bool {
	for _, p := range []string{b.lockPath(owner), filepath.Join(b.owners, tmpLockPrefix+owner)} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// reapOwner removes every container, bundle and cgroup of the dead owner token.
func (b *Backend) reapOwner(ctx context.Context, token string) ([]sandbox.Reaped, error) {
	prefix := "airlock-" + token + "-"
	ids := map[string]bool{}
	for _, dir := range []string{b.root, b.bundles} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				ids[e.Name()] = true
			}
		}
	}
	// Cgroups of runs that died before runc recorded them: the token proves they are the
	// dead owner's, whichever state dir they came from.
	for _, r := range b.cg.roots {
		matches, _ := filepath.Glob(filepath.Join(r, b.cgroupParent, prefix+"*"))
		for _, m := range matches {
			ids[filepath.Base(m)] = true
		}
	}
	var reaped []sandbox.Reaped
	var errs []error
	for id := range ids {
		if _, ok := parseID(id); !ok {
			continue
		}
		r, err := b.reapContainer(ctx, id)
		if err != nil {
			errs = append(errs, err)
		}
		if r != nil {
			reaped = append(reaped, *r)
		}
	}
	return reaped, errors.Join(errs...)
}

// reapContainer force-deletes container id and removes its bundle. It reports the container
// with the labels its bundle recorded (read before the bundle goes), and whether any of its
// processes was still alive; nil when the container was not removed.
func (b *Backend) reapContainer(ctx context.Context, id string) (*sandbox.Reaped, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bundle := filepath.Join(b.bundles, id)
	r := &sandbox.Reaped{ContainerID: id, Labels: bundleLabels(bundle), Running: b.hasProcesses(id)}
	b.log.Info().Str("event", "sandbox.reap").Str("container", id).Bool("running", r.Running).
		Str("audit_id", r.Labels[sandbox.LabelAuditID]).Msg("removing leftover of a dead airlock process")
	if err := b.cleanup(&runState{id: id, started: true, orphan: true}, bundle); err != nil {
		return nil, err
	}
	return r, nil
}

// bundleLabels reads the labels (OCI annotations) of the bundle's config, without Airlock's
// own bookkeeping ones. A missing or unreadable config gives none: the container is still
// reaped, it just cannot be tied to a call.
func bundleLabels(bundle string) map[string]string {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		return map[string]string{}
	}
	defer f.Close()
	var cfg struct {
		Annotations map[string]string `json:"annotations"`
	}
	// The config is Airlock's own file in a root-only directory; the cap only guards against
	// a damaged one.
	if json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(&cfg) != nil || cfg.Annotations == nil {
		return map[string]string{}
	}
	delete(cfg.Annotations, AnnotationOwner)
	return cfg.Annotations
}

// hasProcesses reports whether any cgroup of container id still lists a process.
func (b *Backend) hasProcesses(id string) bool {
	for _, dir := range b.cg.paths(CgroupsPath(b.cgroupParent, id)) {
		if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(bytes.TrimSpace(procs)) > 0 {
			return true
		}
	}
	return false
}
