// Package containerd is Airlock's sandbox backend for a containerd 2 daemon. Each Run creates a
// fresh container in Airlock's own containerd namespace from the hardened OCI spec of package
// oci, runs it through the runc v2 shim with the image store's read-only root directory as its
// root (no snapshot: nothing is unpacked, nothing is written to the image), streams its output
// through FIFOs into capped buffers, enforces the timeout, and deletes the task and the
// container before returning, whatever happened.
//
// Every container carries the label airlock=1 and the owner token of the Backend that made it.
// Each Backend holds an exclusive flock on StateDir/containerd/owners/<token>.lock for its
// lifetime, so Reap can tell a dead Airlock's leftovers (its lock can be taken, or is gone) from
// a live one's containers (its lock cannot be taken).
package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/inflight"
	"github.com/airlock-mcp/airlock/sandbox/owner"
	"github.com/airlock-mcp/airlock/sandbox/runc"
	"github.com/airlock-mcp/airlock/seccomp"
)

// Defaults of Config.
const (
	DefaultAddress   = "/run/containerd/containerd.sock"
	DefaultNamespace = "airlock"
	DefaultRuntime   = "io.containerd.runc.v2"
	// AddressEnv overrides DefaultAddress when Config.Address is empty.
	AddressEnv = "AIRLOCK_CONTAINERD_ADDRESS"
	// DefaultCgroupParent is the cgroup under which every container gets "/<parent>/<id>". It
	// is not the runc backend's "airlock": neither backend's reaper ever sees the other's
	// cgroups.
	DefaultCgroupParent = "airlock-containerd"
)

// Labels (and annotations) the backend adds to every container besides the Spec's labels.
const (
	// LabelOwner holds the owner token of the Backend that started the container.
	LabelOwner = "airlock.owner"
	// LabelStateDir holds the backend state dir (StateDir/containerd) whose owner locks say
	// whether the owner lives. Reap touches only containers of its own state dir: another
	// Airlock sharing the daemon and namespace with another state dir keeps its locks
	// elsewhere, and its containers must not look ownerless.
	LabelStateDir = "airlock.state_dir"
)

// dialTimeout bounds the check that the daemon answers.
const dialTimeout = 5 * time.Second

// Config configures a Backend.
type Config struct {
	// Address is the daemon's socket; "" means $AIRLOCK_CONTAINERD_ADDRESS, else
	// DefaultAddress.
	Address string
	// Namespace is the containerd namespace of every container; default "airlock". Nothing
	// outside it is ever listed, touched or reaped.
	Namespace string
	// StateDir is Airlock's state dir; this backend keeps its owner locks, FIFOs and copy
	// layers under StateDir/containerd (created 0700).
	StateDir string
	// Images resolves Spec.Image to a root directory.
	Images sandbox.ImageResolver
	// Runtime is the containerd runtime type; default "io.containerd.runc.v2".
	Runtime string
	// RuncBinary is the runc the shim runs (its BinaryName option); "" means runc.Find():
	// $AIRLOCK_RUNC, the checkout's .tools/bin/runc, then PATH.
	RuncBinary string
	// CgroupParent is the cgroup every container is placed under ("" = DefaultCgroupParent),
	// a clean relative path.
	CgroupParent string
	Logger       zerolog.Logger
}

// Backend runs sandbox Specs as containerd containers. It is safe for concurrent use.
type Backend struct {
	client    *client.Client
	address   string
	namespace string
	runtime   string
	runc      string
	runcVer   string
	images    sandbox.ImageResolver
	log       zerolog.Logger
	cg        cgroups

	stateDir string // StateDir/containerd
	runsDir  string // per-run private dirs: FIFOs and copy layers
	owners   string

	token string      // owner token, part of every container id and label
	lock  *owner.Lock // held for the Backend's lifetime
	seq   atomic.Uint64

	runs inflight.Runs

	// seccompFor compiles a Spec's seccomp profile; seccomp.OCI outside of tests.
	seccompFor func(profile string, network sandbox.Network) (*specs.LinuxSeccomp, error)
	// afterStart, if set (tests only), is called once the task has been started.
	afterStart func(id string)
}

var _ sandbox.Backend = (*Backend)(nil)

// Open connects to the containerd daemon, checks that it answers and that the runc it will
// hand to the shim enforces seccomp, creates the state dirs and takes this Backend's owner
// lock. An unreachable daemon is an error wrapping sandbox.ErrUnavailable that says how to
// start one. The caller then reaps leftovers of dead Airlock processes (Reap).
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Images == nil {
		return nil, errors.New("containerd backend: no image resolver configured")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("containerd backend: no state directory configured")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: the containerd backend needs root to talk to containerd and mount copy layers (euid %d); run airlock as root or use the docker backend", sandbox.ErrUnavailable, os.Geteuid())
	}
	address := cfg.Address
	if address == "" {
		address = os.Getenv(AddressEnv)
	}
	if address == "" {
		address = DefaultAddress
	}
	ns := cfg.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if err := identifiers.Validate(ns); err != nil {
		return nil, fmt.Errorf("containerd backend: namespace %q: %w", ns, err)
	}
	rt := cfg.Runtime
	if rt == "" {
		rt = DefaultRuntime
	}
	runcBin := cfg.RuncBinary
	if runcBin == "" {
		var err error
		if runcBin, err = runc.Find(); err != nil {
			return nil, err
		}
	}
	if abs, err := filepath.Abs(runcBin); err == nil {
		runcBin = abs // the shim runs in another directory
	}
	runcVer, err := runc.BinaryVersion(ctx, runcBin)
	if err != nil {
		return nil, err
	}
	parent := cfg.CgroupParent
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if parent != filepath.Clean(parent) || strings.HasPrefix(parent, "/") || strings.HasPrefix(parent, "..") {
		return nil, fmt.Errorf("containerd backend: cgroup parent %q must be a clean relative path such as %q", parent, DefaultCgroupParent)
	}
	cg, err := detectCgroups()
	if err != nil {
		return nil, err
	}
	cg.parent = parent
	stateDir, err := filepath.Abs(filepath.Join(cfg.StateDir, "containerd"))
	if err != nil {
		return nil, err
	}

	unavailable := func(err error) error {
		return fmt.Errorf("%w: containerd at %s does not answer (%v); start Airlock's own containerd with `make containerd` (socket /run/airlock-containerd/containerd.sock), or point %s at a running containerd 2 daemon",
			sandbox.ErrUnavailable, address, err, AddressEnv)
	}
	if _, err := os.Stat(address); err != nil {
		return nil, unavailable(err)
	}
	c, err := client.New(address, client.WithDefaultNamespace(ns), client.WithTimeout(dialTimeout))
	if err != nil {
		return nil, unavailable(err)
	}
	vctx, cancel := context.WithTimeout(ctx, dialTimeout)
	_, err = c.Version(vctx)
	cancel()
	if err != nil {
		c.Close()
		return nil, unavailable(err)
	}

	b := &Backend{
		client:     c,
		address:    address,
		namespace:  ns,
		runtime:    rt,
		runc:       runcBin,
		runcVer:    runcVer,
		images:     cfg.Images,
		log:        cfg.Logger.With().Str("backend", "containerd").Logger(),
		cg:         cg,
		stateDir:   stateDir,
		runsDir:    filepath.Join(stateDir, "runs"),
		owners:     filepath.Join(stateDir, "owners"),
		seccompFor: seccomp.OCI,
	}
	// The run dirs hold the FIFOs of every run's output and stdin and the copy layers of copy
	// mounts (workspace contents): only root may read them.
	for _, d := range []string{stateDir, b.runsDir, b.owners} {
		if err := os.MkdirAll(d, 0o700); err == nil {
			err = os.Chmod(d, 0o700)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("containerd backend: creating state dir: %w", err)
		}
	}
	if err := b.takeOwnerLock(); err != nil {
		c.Close()
		return nil, err
	}
	return b, nil
}

// Name is "containerd".
func (b *Backend) Name() string { return "containerd" }

// Close waits for in-flight runs, then releases the owner lock and the connection. Runs after
// Close fail.
func (b *Backend) Close() error {
	if !b.runs.Close() {
		return nil
	}
	// Remove the lock file while still holding the lock, so no reaper ever sees it unlocked
	// while it names this process's (now gone) containers.
	err := b.lock.Release()
	if cerr := b.client.Close(); err == nil {
		err = cerr
	}
	return err
}

// Info is what `airlock doctor` reports about the backend.
type Info struct {
	Address        string `json:"address"`
	Namespace      string `json:"namespace"`
	DaemonVersion  string `json:"daemon_version"`
	DaemonRevision string `json:"daemon_revision"`
	Runtime        string `json:"runtime"`      // e.g. io.containerd.runc.v2
	RuncBinary     string `json:"runc_binary"`  // the runc the shim runs
	RuncVersion    string `json:"runc_version"` // e.g. "runc 1.5.2 (spec 1.3.0, libseccomp 2.5.4)"
	// ShimVersion is the version the daemon's shim for Runtime reports (the daemon runs it
	// with -info): proof the daemon finds a working shim.
	ShimVersion string `json:"shim_version"`
	// Snapshotter is always "none": containers run the image store's root directories
	// read-only in place.
	Snapshotter string `json:"snapshotter"`
	CgroupMode  string `json:"cgroup_mode"` // "v2", "v1 (hybrid)" or "v1"
}

// Info asks the daemon for its version and describes the rest of the setup.
func (b *Backend) Info(ctx context.Context) (Info, error) {
	info := Info{
		Address:     b.address,
		Namespace:   b.namespace,
		Runtime:     b.runtime,
		RuncBinary:  b.runc,
		RuncVersion: b.runcVer,
		Snapshotter: "none",
		CgroupMode:  b.cg.mode,
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	v, err := b.client.Version(ctx)
	if err != nil {
		return info, fmt.Errorf("%w: containerd at %s: %v", sandbox.ErrUnavailable, b.address, err)
	}
	info.DaemonVersion, info.DaemonRevision = v.Version, v.Revision
	ri, err := b.client.RuntimeInfo(ctx, b.runtime, b.runtimeOptions())
	if errdefs.IsNotImplemented(err) || errdefs.IsNotFound(err) {
		return info, nil // a daemon older than 1.7 cannot run the shim's -info; nothing to report
	}
	if err != nil {
		return info, fmt.Errorf("%w: containerd at %s cannot run the %s shim: %v; `make containerd` installs containerd-shim-runc-v2 next to the daemon", sandbox.ErrUnavailable, b.address, b.runtime, err)
	}
	info.ShimVersion = ri.Version.Version
	return info, nil
}

// runtimeOptions are the runc v2 shim's options: the runc binary Airlock checked, and runc's
// state dir next to the daemon's socket (for Airlock's own daemon /run/airlock-containerd/runc,
// not the /run/containerd/runc of a system containerd). Another runtime gets none: it would
// not understand them.
// runtimeFor is the runtime type and options of a Spec.Runtime: the backend's own for "" and
// "runc", else a containerd runtime type the profile names in full (io.containerd.runsc.v1,
// io.containerd.kata.v2), whose shim the daemon must find; it gets no options of Airlock's.
func (b *Backend) runtimeFor(name string) (string, any, error) {
	switch {
	case name == "" || name == "runc":
		return b.runtime, b.runtimeOptions(), nil
	case strings.HasPrefix(name, "io.containerd.") && strings.Count(name, ".") >= 3:
		return name, nil, nil
	}
	return "", nil, fmt.Errorf("%w: runtime %q: the containerd backend needs a runtime type such as io.containerd.runsc.v1 or io.containerd.kata.v2", sandbox.ErrInvalidSpec, name)
}

func (b *Backend) runtimeOptions() any {
	if b.runtime != DefaultRuntime {
		return nil
	}
	return &options.Options{BinaryName: b.runc, Root: filepath.Join(filepath.Dir(b.address), "runc")}
}
