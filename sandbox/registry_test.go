package sandbox

import (
	"context"
	"errors"
	"slices"
	"testing"
)

type nopBackend struct{}

func (nopBackend) Name() string                              { return "nop" }
func (nopBackend) Run(context.Context, Spec) (Result, error) { return Result{}, nil }
func (nopBackend) Reap(context.Context) ([]Reaped, error)    { return nil, nil }

func TestRegistryOpen(t *testing.T) {
	boom := errors.New("daemon not reachable")
	reg := Registry{
		"ok":     func(context.Context, OpenOptions) (Backend, func() error, error) { return nopBackend{}, nil, nil },
		"broken": func(context.Context, OpenOptions) (Backend, func() error, error) { return nil, nil, boom },
		"empty":  func(context.Context, OpenOptions) (Backend, func() error, error) { return nil, nil, nil },
	}
	if got, want := reg.Names(), []string{"broken", "empty", "ok"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}

	b, closeFn, err := reg.Open(context.Background(), "ok", OpenOptions{})
	if err != nil || b == nil || closeFn == nil {
		t.Fatalf("Open(ok) = %v, close nil %v, %v; want a backend and a close func", b, closeFn == nil, err)
	}
	if err := closeFn(); err != nil {
		t.Errorf("close: %v", err)
	}

	// An unknown name is an error that lists the choices; there is no fallback backend.
	_, _, err = reg.Open(context.Background(), "podman", OpenOptions{})
	var unknown *UnknownBackendError
	if !errors.As(err, &unknown) || unknown.Name != "podman" || !slices.Equal(unknown.Available, reg.Names()) {
		t.Errorf("Open(podman) = %v, want an UnknownBackendError listing %v", err, reg.Names())
	}
	if _, _, err := reg.Open(context.Background(), "broken", OpenOptions{}); !errors.Is(err, boom) {
		t.Errorf("Open(broken) = %v, want the factory's error", err)
	}
	// A factory that returns no backend and no error must not hand the caller a nil backend.
	if _, _, err := reg.Open(context.Background(), "empty", OpenOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Open(empty) = %v, want ErrUnavailable", err)
	}
}
