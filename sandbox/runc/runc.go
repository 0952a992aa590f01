// Package runc is Airlock's embedded default sandbox backend: no daemon, one `runc run` per
// call. Each Run writes an OCI bundle (see OCIConfig) into a private state directory, runs the
// command in a fresh container, streams its output into capped buffers, enforces the timeout,
// and removes the container, its cgroup and its bundle before returning, whatever happened.
//
// Several Airlock processes can share a state directory and a host: each Backend holds an
// exclusive flock on StateDir/owners/<token>.lock for its lifetime and names its containers
// airlock-<token>-<n>, so Reap can tell the leftovers of a dead process (its lock can be
// taken) from the live containers of another one (its lock cannot).
package runc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/inflight"
	"github.com/airlock-mcp/airlock/sandbox/owner"
	"github.com/airlock-mcp/airlock/seccomp"
)

// Config configures a Backend.
type Config struct {
	Runc         string                // runc binary path
	StateDir     string                // private run state root; created 0700: bundles/, root/ (runc --root), owners/
	Images       sandbox.ImageResolver // resolves Spec.Image -> sandbox.Image{Rootfs, Binds}
	CgroupParent string                // default "airlock"; cgroupsPath "/<parent>/<id>"
	Logger       zerolog.Logger
}

// Backend runs sandbox Specs with runc. It is safe for concurrent use.
type Backend struct {
	runc         string
	stateDir     string
	bundles      string
	root         string
	owners       string
	images       sandbox.ImageResolver
	cgroupParent string
	log          zerolog.Logger
	cg           cgroups

	token string      // this Backend's owner token, part of every container id
	lock  *owner.Lock // flock held for the Backend's lifetime
	seq   atomic.Uint64

	priming atomic.Bool // a no-op cgroup migration is under way (see startPriming)

	runs inflight.Runs
	// removals are warm sandboxes' records being removed after their call returned.
	removals sync.WaitGroup

	// seccompFor compiles a Spec's seccomp profile; seccomp.OCI outside of tests.
	seccompFor func(profile string, network sandbox.Network) (*specs.LinuxSeccomp, error)
	// afterStart, if set (tests only), is called once runc has been started.
	afterStart func(id string)
}

var _ sandbox.Backend = (*Backend)(nil)

// Find locates the runc binary: $AIRLOCK_RUNC, then "runc" next to the running executable,
// then <exe dir>/../.tools/bin/runc (a checkout's `make setup`), then PATH.
func Find() (string, error) {
	if p := os.Getenv("AIRLOCK_RUNC"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w: AIRLOCK_RUNC=%s is not an executable file; run `make setup` to build runc, or unset AIRLOCK_RUNC", sandbox.ErrUnavailable, p)
	}
	var looked []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		for _, c := range []string{filepath.Join(dir, "runc"), filepath.Join(dir, "..", ".tools", "bin", "runc")} {
			if isExecutable(c) {
				return filepath.Clean(c), nil
			}
			looked = append(looked, filepath.Clean(c))
		}
	}
	if p, err := exec.LookPath("runc"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: no runc binary (looked at $AIRLOCK_RUNC, %s and PATH); run `make setup` to build runc with seccomp, or set AIRLOCK_RUNC",
		sandbox.ErrUnavailable, strings.Join(looked, ", "))
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// New validates cfg, creates the state directories (0700) and takes this Backend's owner lock.
// It does not reap; Open does.
func New(cfg Config) (*Backend, error) {
	if cfg.Runc == "" || !isExecutable(cfg.Runc) {
		return nil, fmt.Errorf("%w: runc binary %q is not an executable file; run `make setup` or set AIRLOCK_RUNC", sandbox.ErrUnavailable, cfg.Runc)
	}
	if cfg.Images == nil {
		return nil, errors.New("runc backend: no image resolver configured")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: the runc backend needs root to create namespaces and cgroups (euid %d); run airlock as root or use the docker backend", sandbox.ErrUnavailable, os.Geteuid())
	}
	if cfg.StateDir == "" {
		return nil, errors.New("runc backend: no state directory configured")
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	parent := cfg.CgroupParent
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if parent != filepath.Clean(parent) || strings.HasPrefix(parent, "/") || strings.Contains(parent, "..") {
		return nil, fmt.Errorf("runc backend: cgroup parent %q must be a clean relative path such as %q", parent, DefaultCgroupParent)
	}
	cg, err := detectCgroups(cgroupRoot)
	if err != nil {
		return nil, err
	}
	b := &Backend{
		runc:         cfg.Runc,
		stateDir:     stateDir,
		bundles:      filepath.Join(stateDir, "bundles"),
		root:         filepath.Join(stateDir, "root"),
		owners:       filepath.Join(stateDir, "owners"),
		images:       cfg.Images,
		cgroupParent: parent,
		log:          cfg.Logger.With().Str("backend", "runc").Logger(),
		cg:           cg,
		seccompFor:   seccomp.OCI,
	}
	// The state holds every run's config (its environment may carry secrets) and the copy
	// layers of copy mounts: only root may read it.
	for _, d := range []string{stateDir, b.bundles, b.root, b.owners} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runc backend: creating state dir: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("runc backend: securing state dir: %w", err)
		}
	}
	if err := b.takeOwnerLock(); err != nil {
		return nil, err
	}
	return b, nil
}

// Open is the usual way to get the runc backend: New, with runc found by Find when cfg.Runc
// is empty, then a check that runc enforces seccomp (once per runc binary; see checkRunc).
// The caller then reaps leftovers of dead Airlock processes (Reap) and records them in the
// audit logs of the calls they belonged to (pipeline.RecordReaped).
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Runc == "" {
		bin, err := Find()
		if err != nil {
			return nil, err
		}
		cfg.Runc = bin
	}
	b, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.checkRunc(ctx); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

// Name is "runc".
func (b *Backend) Name() string { return "runc" }

// Version reports runc's version, e.g. "runc 1.5.2 (spec 1.3.0, libseccomp 2.5.4)" (see
// BinaryVersion).
func (b *Backend) Version(ctx context.Context) (string, error) { return BinaryVersion(ctx, b.runc) }

// BinaryVersion reports the version of the runc binary bin, e.g. "runc 1.5.2 (spec 1.3.0,
// libseccomp 2.5.4)". A runc built without seccomp is an error wrapping sandbox.ErrUnavailable
// (the version string is still returned for doctor): it refuses every config that carries a
// filter, so no sandbox could run.
func BinaryVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s --version: %v; run `make setup` to build runc, or set AIRLOCK_RUNC", sandbox.ErrUnavailable, bin, err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "runc version "); ok {
			fields["runc"] = strings.TrimSpace(v)
		} else if k, v, ok := strings.Cut(line, ":"); ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	v := fmt.Sprintf("runc %s (spec %s", fields["runc"], fields["spec"])
	if fields["libseccomp"] == "" {
		return v + ", no seccomp)", fmt.Errorf("%w: %s was built without seccomp support and would refuse every sandbox; run `make setup` to build runc with the seccomp tag", sandbox.ErrUnavailable, bin)
	}
	return v + ", libseccomp " + fields["libseccomp"] + ")", nil
}

// Close waits for in-flight runs, then releases the owner lock. Runs after Close fail.
func (b *Backend) Close() error {
	if !b.runs.Close() {
		return nil
	}
	// The lock file goes while the lock is still held, so no reaper ever sees it unlocked
	// while it names this process's (now gone) containers.
	return b.lock.Release()
}

// runcCmd runs a short runc management command (kill, delete) and returns its combined output.
func (b *Backend) runcCmd(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.runc, append([]string{"--root", b.root}, args...)...)
	cmd.Env = runcEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// runcEnv is runc's whole environment: nothing of Airlock's own environment (tokens, keys)
// reaches runc or, through it, the container.
func runcEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
}
