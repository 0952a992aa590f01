package inflight

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
)

func validSpec(t *testing.T) sandbox.Spec {
	t.Helper()
	s, err := sandbox.New(sandbox.WithArgv("true"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStartRefuses(t *testing.T) {
	spec := validSpec(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var r Runs
	if err := r.Start(cancelled, spec, "test"); !errors.Is(err, context.Canceled) {
		t.Errorf("Start(cancelled ctx) = %v, want context.Canceled", err)
	}
	if err := r.Start(context.Background(), sandbox.Spec{}, "test"); !errors.Is(err, sandbox.ErrInvalidSpec) {
		t.Errorf("Start(empty spec) = %v, want ErrInvalidSpec", err)
	}
	if !r.Close() {
		t.Fatal("first Close = false")
	}
	if r.Close() {
		t.Error("second Close = true")
	}
	if err := r.Start(context.Background(), spec, "test"); !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("Start after Close = %v, want ErrUnavailable", err)
	}
}

// TestCloseWaits: Close returns only once every run Start registered is Done.
func TestCloseWaits(t *testing.T) {
	var r Runs
	if err := r.Start(context.Background(), validSpec(t), "test"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned with a run under way")
	case <-time.After(50 * time.Millisecond):
	}
	r.Done()
	<-closed
}

// TestCleanup: a failed cleanup becomes the run's error unless the run already failed.
func TestCleanup(t *testing.T) {
	runErr, cleanupErr := errors.New("run"), errors.New("cleanup")
	tests := []struct {
		name         string
		err, cleanup error
		want         error
	}{
		{"both fine", nil, nil, nil},
		{"cleanup failed", nil, cleanupErr, cleanupErr},
		{"run failed first", runErr, cleanupErr, runErr},
		{"run failed, cleanup fine", runErr, nil, runErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err
			Cleanup(zerolog.Nop(), "airlock-test-1", &err, func() error { return tt.cleanup })
			if err != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
