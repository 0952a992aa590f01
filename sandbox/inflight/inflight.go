// Package inflight holds what every backend does around its runs under way: their common start,
// the end of a run whose cleanup failed, and the count that lets Close refuse new runs and wait
// for the ones under way before it releases what they use: the owner lock that keeps reapers
// off their containers, and the daemon connection. A run never outlives its owner's lock, so no
// reaper of another Airlock process takes a live run for a leftover.
package inflight

import (
	"context"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Runs is a backend's count of runs under way. The zero value is open and has none.
type Runs struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Start is the common start of a backend's Run: spec must be valid, ctx not done yet and the
// backend (named backend in the error) not closed. On success the run is registered and the
// caller calls Done once it has removed everything of the run.
func (r *Runs) Start(ctx context.Context, spec sandbox.Spec, backend string) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox run not started: %w", context.Cause(ctx))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("%w: the %s backend is closed", sandbox.ErrUnavailable, backend)
	}
	r.wg.Add(1)
	return nil
}

// Done ends a run Start registered.
func (r *Runs) Done() { r.wg.Done() }

// Close refuses new runs and waits for the ones under way. It reports false if Close was
// called before: the caller has released everything already.
func (r *Runs) Close() bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
	return true
}

// Cleanup runs cleanup, which removes everything of the run of container id; deferred by Run
// so it happens on every path, panics included. A failure is logged as sandbox.cleanup_failed
// and becomes the run's error *err unless it has one already: a caller is never told a run
// left nothing behind when it did.
func Cleanup(log zerolog.Logger, id string, err *error, cleanup func() error) {
	if cerr := cleanup(); cerr != nil {
		log.Error().Err(cerr).Str("event", "sandbox.cleanup_failed").Str("container", id).Msg("container leftovers remain; they are reaped when this process exits and another starts")
		if *err == nil {
			*err = cerr
		}
	}
}
