package containerd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/owner"
	"github.com/airlock-mcp/airlock/sandbox/rundir"
)

// Owner locks (package owner). Every Backend holds an exclusive flock on owners/<token>.lock for
// its lifetime; the kernel drops it when the process dies, however it dies. A reaper that can
// take another owner's lock, or finds none, has proof that the owner is gone, and only then
// touches its containers: Reap never kills a run of a live Airlock process, even one sharing
// this daemon, namespace and state dir.

// reapTimeout bounds the removal of one leftover container.
const reapTimeout = 30 * time.Second

func (b *Backend) lockPath(token string) string { return owner.Path(b.owners, token) }

func (b *Backend) takeOwnerLock() error {
	l, err := owner.Take(b.owners)
	if err != nil {
		return fmt.Errorf("containerd backend: %w", err)
	}
	b.token, b.lock = l.Token(), l
	return nil
}

// ownerState is what Reap knows about an owner token.
type ownerState int

const (
	ownerAlive ownerState = iota // its lock is held (or the token is not one of ours): never touch
	ownerDead                    // its lock could be taken (held now by the reaper): proven dead
	ownerGone                    // no lock file: dead, if the thing in question is this state dir's
)

// lockOwner decides whether the owner of token is alive. For a dead owner whose lock file still
// exists, the returned file holds its lock; the caller removes the file once the owner's
// containers are gone, then closes it.
func (b *Backend) lockOwner(token string) (ownerState, *os.File, error) {
	if token == b.token {
		return ownerAlive, nil, nil
	}
	if !isToken(token) {
		// Not a token this backend makes: the label was not written by Airlock. Leave the
		// container alone rather than guess.
		return ownerAlive, nil, nil
	}
	p := b.lockPath(token)
	f, err := owner.TryLock(p)
	if err != nil {
		return ownerAlive, nil, err
	}
	if f != nil {
		return ownerDead, f, nil
	}
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		// A live owner's lock file exists before its first container does and is removed
		// only after its last one is gone, so checking it after listing the container is
		// race-free. But only for things of this state dir: another one keeps its locks
		// elsewhere (see LabelStateDir).
		return ownerGone, nil, nil
	}
	return ownerAlive, nil, nil
}

// Reap removes what dead Airlock processes of this state dir left in this backend's namespace
// and state dir: their containers (tasks killed and deleted, then the containers), their run
// dirs, shims the daemon lost track of, any cgroup runc left for them, and their lock files.
// Containers of this Backend, of every live owner and of other state dirs are never touched,
// nor is anything outside the namespace.
func (b *Backend) Reap(ctx context.Context) ([]sandbox.Reaped, error) {
	list, err := b.client.Containers(ctx, `labels."airlock"==1`)
	if err != nil {
		return nil, fmt.Errorf("reaping: listing containers in namespace %s: %w", b.namespace, err)
	}
	type ownerInfo struct {
		state ownerState
		lock  *os.File
		err   error // a container of this owner could not be removed
	}
	owners := map[string]*ownerInfo{}
	lookup := func(token string) (*ownerInfo, error) {
		if o, ok := owners[token]; ok {
			return o, nil
		}
		st, f, err := b.lockOwner(token)
		if err != nil {
			return nil, err
		}
		o := &ownerInfo{state: st, lock: f}
		owners[token] = o
		return o, nil
	}
	var reaped []sandbox.Reaped
	var errs []error
	for _, c := range list {
		labels, err := c.Labels(ctx)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if labels[LabelStateDir] != b.stateDir {
			continue // another state dir's: its owners' locks are not here
		}
		o, err := lookup(labels[LabelOwner])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o.state == ownerAlive {
			continue
		}
		r, err := b.reapContainer(ctx, c, labels)
		if err != nil {
			o.err = err
			errs = append(errs, err)
			continue
		}
		reaped = append(reaped, r)
	}
	// Run dirs of dead owners (a run whose container was never created, or already deleted).
	entries, err := os.ReadDir(b.runsDir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range entries {
		token, ok := parseID(e.Name())
		if !ok {
			continue
		}
		o, err := lookup(token)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o.state != ownerAlive { // run dirs are this state dir's by construction
			if err := rundir.Remove(filepath.Join(b.runsDir, e.Name()), rundir.Detach); err != nil {
				o.err = err
				errs = append(errs, err)
			}
		}
	}
	// Cgroups runc left for a dead owner's run that never got as far as a container record
	// (its creation was cut short when the owner died). Cgroups carry no state dir, so only
	// owners proven dead by their lock here count.
	cgs, _ := filepath.Glob(filepath.Join(b.cg.memory, b.cg.parent, "airlock-*"))
	for _, dir := range cgs {
		id := filepath.Base(dir)
		token, ok := parseID(id)
		if !ok {
			continue
		}
		o, err := lookup(token)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o.state == ownerDead {
			if err := b.cg.removeCgroups(id); err != nil {
				o.err = err
				errs = append(errs, err)
			}
		}
	}
	// Shims the daemon lost track of: when an Airlock process dies while the daemon is
	// creating its task, the daemon abandons the creation but not always the shim it started.
	for id, pid := range b.shims() {
		token, _ := parseID(id)
		o, err := lookup(token)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o.state != ownerDead { // shims carry no state dir either
			continue
		}
		if _, err := b.client.LoadContainer(ctx, id); err == nil {
			continue // tracked: the container path above removed it, or reports why not
		}
		b.log.Info().Str("event", "sandbox.reap").Str("container", id).Int("shim_pid", pid).Msg("killing the orphaned shim of a dead airlock process")
		_ = unix.Kill(pid, unix.SIGKILL)
		if err := b.cg.removeCgroups(id); err != nil {
			o.err = err
			errs = append(errs, err)
		}
	}
	// Lock files of dead owners with nothing left, including ones that had no container.
	locks, err := os.ReadDir(b.owners)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range locks {
		if token, ok := strings.CutSuffix(e.Name(), owner.LockSuffix); ok {
			if _, err := lookup(token); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for token, o := range owners {
		if o.lock == nil {
			continue
		}
		if o.err == nil {
			// Removed while locked: a concurrent reaper either failed to lock it or finds
			// it gone; both are fine.
			if err := os.Remove(b.lockPath(token)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		o.lock.Close()
	}
	return reaped, errors.Join(errs...)
}

// reapContainer kills and deletes the task of a dead owner's container, then the container.
func (b *Backend) reapContainer(ctx context.Context, c client.Container, labels map[string]string) (sandbox.Reaped, error) {
	ctx, cancel := context.WithTimeout(ctx, reapTimeout)
	defer cancel()
	r := sandbox.Reaped{ContainerID: c.ID(), Labels: maps.Clone(labels)}
	delete(r.Labels, LabelOwner)
	delete(r.Labels, LabelStateDir)
	delete(r.Labels, "airlock")
	if task, err := c.Task(ctx, nil); err == nil {
		if st, err := task.Status(ctx); err == nil && (st.Status == client.Running || st.Status == client.Paused || st.Status == client.Pausing) {
			r.Running = true
		}
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return r, fmt.Errorf("reaping %s: deleting task: %w", c.ID(), err)
		}
	} else if !errdefs.IsNotFound(err) {
		return r, fmt.Errorf("reaping %s: loading task: %w", c.ID(), err)
	}
	if err := b.cg.removeCgroups(c.ID()); err != nil {
		return r, err
	}
	if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return r, fmt.Errorf("reaping %s: deleting container: %w", c.ID(), err)
	}
	if err := rundir.Remove(filepath.Join(b.runsDir, c.ID()), rundir.Detach); err != nil {
		return r, err
	}
	b.log.Info().Str("event", "sandbox.reap").Str("container", c.ID()).Bool("running", r.Running).
		Str("audit_id", r.Labels[sandbox.LabelAuditID]).Msg("removed leftover of a dead airlock process")
	return r, nil
}

// containerID is the id of an owner's n-th container: "airlock-<owner>-<n>".
func containerID(owner string, n uint64) string {
	return "airlock-" + owner + "-" + strconv.FormatUint(n, 10)
}

// isToken reports whether s is a token owner.NewToken could have made: 12 lower-case hex digits
// (owner.IsToken takes any length up to 32; this backend has only ever made 12).
func isToken(s string) bool { return len(s) == 12 && owner.IsToken(s) }

// parseID splits a container id "airlock-<owner>-<n>" into its owner token.
func parseID(id string) (owner string, ok bool) {
	rest, ok := strings.CutPrefix(id, "airlock-")
	if !ok {
		return "", false
	}
	owner, seq, ok := strings.Cut(rest, "-")
	if !ok || !isToken(owner) || seq == "" {
		return "", false
	}
	for _, c := range []byte(seq) {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return owner, true
}

// shimBinaryPrefix starts the name of every containerd shim binary.
const shimBinaryPrefix = "containerd-shim"

// shims finds the shim processes serving this backend's daemon and namespace, by container id:
// a shim runs as `containerd-shim-runc-v2 -namespace NS -id ID -address ADDR`. Only ids in
// Airlock's format are returned.
func (b *Backend) shims() map[string]int {
	out := map[string]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		data, err := os.ReadFile(d)
		if err != nil || len(data) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), shimBinaryPrefix) {
			continue
		}
		flags := map[string]string{}
		for i := 1; i+1 < len(args); i++ {
			if strings.HasPrefix(args[i], "-") {
				flags[strings.TrimLeft(args[i], "-")] = args[i+1]
			}
		}
		if flags["namespace"] != b.namespace || flags["address"] != b.address {
			continue
		}
		if _, ok := parseID(flags["id"]); !ok {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err == nil {
			out[flags["id"]] = pid
		}
	}
	return out
}
