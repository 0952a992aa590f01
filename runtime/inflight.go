package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errShuttingDown is the cancellation cause of calls cut short because Airlock is stopping
// (a signal, the client's stdin closing, a broken stdout).
var errShuttingDown = errors.New("airlock is shutting down")

// shutdownCause is why calls are cancelled when ctx, a server's lifetime, ends: always
// errShuttingDown, with ctx's own cause (a signal, say) when it has one.
func shutdownCause(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(cause, context.Canceled) || errors.Is(cause, errShuttingDown) {
		return errShuttingDown
	}
	return fmt.Errorf("%w: %v", errShuttingDown, cause)
}

// closeWait bounds how long Close waits for cancelled calls to finish. A cancelled call kills
// its container at once; the backend's own kill path gives up after a few seconds, so this is
// a backstop, not the expected wait.
const closeWait = 15 * time.Second

// inflight tracks the calls a Runtime is running, so shutting down can cancel every one of
// them and wait until each has killed its container and written its audit record. Without it
// a stopping server would either wait for calls to run to their timeout (up to 10 minutes for
// run_tests) or exit under them, leaving containers running and calls unrecorded.
type inflight struct {
	stop   context.Context
	cancel context.CancelCauseFunc

	mu   sync.Mutex
	n    int           // calls in flight
	idle chan struct{} // closed when n drops to 0; a new one when it rises from 0
	// running is every call in flight by what a kill switch or a revocation can target.
	running map[*runningCall]struct{}
}

// callKey is what kill switches and revocations match a call in flight by.
type callKey struct{ tool, grant, session string }

type runningCall struct {
	key    callKey
	cancel context.CancelCauseFunc
}

func newInflight() *inflight {
	stop, cancel := context.WithCancelCause(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &inflight{stop: stop, cancel: cancel, idle: idle, running: map[*runningCall]struct{}{}}
}

// begin registers a call and returns its context: ctx, also cancelled on shutdown (at once
// for a call that begins after it). done must be called when the call has finished
// (recorded).
func (f *inflight) begin(ctx context.Context, key callKey) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	rc := &runningCall{key: key, cancel: cancel}
	f.mu.Lock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.running[rc] = struct{}{}
	f.mu.Unlock()
	stop := context.AfterFunc(f.stop, func() { cancel(context.Cause(f.stop)) })
	if f.stop.Err() != nil {
		cancel(context.Cause(f.stop)) // AfterFunc would, but on another goroutine
	}
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			stop()
			cancel(nil)
			f.mu.Lock()
			delete(f.running, rc)
			if f.n--; f.n == 0 {
				close(f.idle)
			}
			f.mu.Unlock()
		})
	}
}

// cancelWhere cancels each call in flight for which match returns a cause, and reports how
// many it cancelled. A cancelled call kills its container and writes its record as it returns.
func (f *inflight) cancelWhere(match func(callKey) error) int {
	f.mu.Lock()
	var hit []*runningCall
	var causes []error
	for rc := range f.running {
		if err := match(rc.key); err != nil {
			hit, causes = append(hit, rc), append(causes, err)
		}
	}
	f.mu.Unlock()
	for i, rc := range hit {
		rc.cancel(causes[i])
	}
	return len(hit)
}

// count is the number of calls in flight.
func (f *inflight) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// shutdown cancels every call in flight and every later one at once.
func (f *inflight) shutdown(cause error) { f.cancel(cause) }

// wait waits up to d for a moment with no call in flight; false if calls were still running
// when d passed. Calls that begin while it waits are waited for too (after shutdown they are
// cancelled as they begin, so they end at once).
func (f *inflight) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		f.mu.Lock()
		idle, n := f.idle, f.n
		f.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-idle:
		case <-t.C:
			return false
		}
	}
}
