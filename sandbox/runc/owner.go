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
	"strings"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/cgroup"
	"github.com/airlock-mcp/airlock/sandbox/owner"
)

// Owner locks (package owner). Every Backend holds an exclusive flock on owners/<token>.lock for
// its lifetime; the kernel drops it when the process dies, however it dies. A reaper that can
// take another owner's lock has proof that the owner is gone, and only then touches its
// containers: Reap never kills a run of a live Airlock process, even one sharing this state dir.

// Names the tests use for the owner package's parts.
const (
	tmpLockPrefix = owner.TmpPrefix
	tmpLockGrace  = owner.TmpGrace
)

func (b *Backend) lockPath(token string) string { return owner.Path(b.owners, token) }

func tryLock(p string) (*os.File, error) { return owner.TryLock(p) }

func newToken() (string, error) { return owner.NewToken() }

func (b *Backend) takeOwnerLock() error {
	l, err := owner.Take(b.owners)
	if err != nil {
		return fmt.Errorf("runc backend: %w", err)
	}
	b.token, b.lock = l.Token(), l
	return nil
}

// Reap removes what dead Airlock processes left behind in this state dir: their containers
// (killed and deleted with `runc delete --force`), bundles, cgroups and lock files. A
// container whose owner's lock file is gone entirely (its owner closed or was reaped) is a
// leftover too. Containers of this Backend and of every live owner are never touched.
func (b *Backend) Reap(ctx context.Context) ([]sandbox.Reaped, error) {
	var reaped []sandbox.Reaped
	var errs []error
	if err := owner.Reap(b.owners, b.token, func(token string) error {
		r, err := b.reapOwner(ctx, token)
		reaped = append(reaped, r...)
		return err
	}); err != nil {
		errs = append(errs, err)
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
			tok, ok := parseID(e.Name())
			if !ok || tok == b.token || b.ownerListed(tok) {
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

// ownerListed reports whether owner still has a lock file (locked or being created).
func (b *Backend) ownerListed(token string) bool { return owner.Listed(b.owners, token) }

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
	if json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(&cfg) != nil {
		return map[string]string{}
	}
	if cfg.Annotations == nil {
		cfg.Annotations = map[string]string{}
	}
	delete(cfg.Annotations, AnnotationOwner)
	// A warm container gets its call's labels only when the call claims it (warm.go).
	if raw, err := os.ReadFile(filepath.Join(bundle, claimLabels)); err == nil {
		var claimed map[string]string
		if json.Unmarshal(raw, &claimed) == nil {
			for k, v := range claimed {
				cfg.Annotations[k] = v
			}
		}
	}
	return cfg.Annotations
}

// hasProcesses reports whether any cgroup of container id still lists a process.
func (b *Backend) hasProcesses(id string) bool {
	for _, dir := range b.cg.paths(cgroup.Path(b.cgroupParent, id)) {
		if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(bytes.TrimSpace(procs)) > 0 {
			return true
		}
	}
	return false
}
