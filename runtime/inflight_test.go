package runtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestInflightShutdown: shutdown cancels calls in flight with its cause, cancels a call that
// begins afterwards at once, and wait returns when the last one is done.
func TestInflightShutdown(t *testing.T) {
	f := newInflight()
	ctx, done := f.begin(context.Background(), callKey{})
	if f.wait(0) {
		t.Fatal("wait reported no call in flight")
	}
	f.shutdown(errShuttingDown)
	<-ctx.Done()
	if !errors.Is(context.Cause(ctx), errShuttingDown) {
		t.Errorf("cause %v, want errShuttingDown", context.Cause(ctx))
	}
	late, lateDone := f.begin(context.Background(), callKey{})
	if late.Err() == nil {
		t.Error("a call that began after shutdown was not cancelled")
	}
	go func() { time.Sleep(20 * time.Millisecond); done(); lateDone() }()
	if !f.wait(5 * time.Second) {
		t.Fatal("wait timed out with every call done")
	}
	done() // idempotent
}

// TestInflightBeginDuringWait: calls that begin and end while wait waits (HTTP requests
// arriving during shutdown) are counted without a race or a panic.
func TestInflightBeginDuringWait(t *testing.T) {
	f := newInflight()
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		_, done := f.begin(context.Background(), callKey{})
		go func() {
			_, d2 := f.begin(context.Background(), callKey{})
			d2()
		}()
		go done()
		if !f.wait(5 * time.Second) {
			t.Fatal("wait timed out")
		}
	}
}
