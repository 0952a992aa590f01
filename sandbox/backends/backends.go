// Package backends is the registry of Airlock's sandbox backends: the one place that knows
// every concrete backend. `airlock serve`, `call`, `exec`, `doctor` and the escape suite all
// open their backend through Default, so a backend is added here and nowhere else.
package backends

import (
	"context"
	"os"
	"path/filepath"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/containerd"
	"github.com/airlock-mcp/airlock/sandbox/docker"
	"github.com/airlock-mcp/airlock/sandbox/runc"
)

// Default is a new registry of every backend this build has.
func Default() sandbox.Registry {
	return sandbox.Registry{
		"runc":       openRunc,
		"docker":     openDocker,
		"containerd": openContainerd,
	}
}

// openRunc opens the embedded runc backend: runc found by runc.Find, run state under
// StateDir/run (or RunDir), images from the store in StateDir, and a check that runc enforces seccomp.
func openRunc(ctx context.Context, o sandbox.OpenOptions) (sandbox.Backend, func() error, error) {
	// The first Run of a process compiles the seccomp profiles and builds JSON encoders (a
	// millisecond or two). Do that now, on another core, while the backend opens its state
	// dir, takes its owner lock and checks runc; Run then finds the work done (or waits for
	// the rest). It is pure; errors surface again, and refuse the run, when Run meets them.
	compiled := make(chan struct{})
	go func() {
		defer close(compiled)
		runc.Prewarm()
	}()
	store, err := images.Open(o.StateDir)
	if err != nil {
		<-compiled
		return nil, nil, err
	}
	run := o.RunDir
	if run == "" {
		run = filepath.Join(o.StateDir, "run")
	}
	b, err := runc.Open(ctx, runc.Config{
		StateDir:     run,
		Images:       store,
		CgroupParent: o.CgroupParent,
		Logger:       o.Logger,
	})
	if err != nil {
		<-compiled
		return nil, nil, err
	}
	return b, func() error { <-compiled; return b.Close() }, nil
}

// openDocker opens the Docker Engine backend: the daemon at $DOCKER_HOST (else the local
// socket), images imported from the store in StateDir, its own state under StateDir/docker
// (or RunDir). Containers run under $AIRLOCK_DOCKER_RUNTIME (a runtime registered with the
// daemon, e.g. a current runc as airlock-runc when the daemon's own runc is too old), else the
// daemon's default, unless a profile names one.
func openDocker(ctx context.Context, o sandbox.OpenOptions) (sandbox.Backend, func() error, error) {
	store, err := images.Open(o.StateDir)
	if err != nil {
		return nil, nil, err
	}
	state := o.StateDir
	if o.RunDir != "" {
		state = o.RunDir
	}
	b, err := docker.Open(ctx, docker.Config{StateDir: state, Images: store, Runtime: os.Getenv("AIRLOCK_DOCKER_RUNTIME"), CgroupParent: o.CgroupParent, Logger: o.Logger})
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

// openContainerd opens the containerd backend: the daemon at $AIRLOCK_CONTAINERD_ADDRESS (else
// the system socket), its own namespace, the image store's root directories run in place, and
// the runc runc.Find finds, handed to the runc v2 shim.
func openContainerd(ctx context.Context, o sandbox.OpenOptions) (sandbox.Backend, func() error, error) {
	store, err := images.Open(o.StateDir)
	if err != nil {
		return nil, nil, err
	}
	state := o.StateDir
	if o.RunDir != "" {
		state = o.RunDir
	}
	b, err := containerd.Open(ctx, containerd.Config{StateDir: state, Images: store, CgroupParent: o.CgroupParent, Logger: o.Logger})
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}
