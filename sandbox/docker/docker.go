// Package docker is Airlock's Docker Engine sandbox backend. Every Run builds the hardened OCI
// configuration of package oci (the one source of Airlock's hardening, shared with the runc
// backend), translates it into Docker's typed create request (Translate), runs it in a fresh
// container through the Engine API (never `docker` command lines), streams its output through
// the attach connection into capped buffers, enforces the timeout, and force-removes the
// container, its anonymous volumes and its private run directory before returning, whatever
// happened.
//
// Images are not pulled: each image's root file system is imported into the daemon once, under
// a content-addressed tag (airlock/<name>:<id prefix>). The client negotiates the Engine API
// down to 1.41 (Docker 20.10, Debian 12's docker.io).
//
// Like the runc backend, each Backend holds an owner lock (package owner) in
// StateDir/docker/owners for its lifetime and labels its containers with its token and its
// state directory, so Reap removes only the containers of dead Airlock processes that shared
// this state directory.
//
// # What Docker cannot express
//
// Translate maps every hardening property of the OCI spec to a Docker field (TestTranslateParity
// checks them one by one) and refuses what it cannot map. A few properties Docker fixes for
// every container; each gap below is covered by what still stops the attack, and
// TestDockerDifferences observes that inside a real container:
//
//   - Binds have no nosuid/nodev option. no_new_privileges makes exec ignore setuid bits and
//     file capabilities, and Docker's device cgroup (only null, zero, full, random, urandom,
//     tty, console, ptmx, pts) refuses a device node found in a bind.
//   - The device cgroup cannot be narrowed to deny-all as in the OCI spec; its remaining mknod
//     rule is unusable without CAP_MKNOD.
//   - /dev is Docker's: a 64 MiB executable tmpfs (not 64 KiB, noexec), mode 755 root, so only
//     a run as uid 0 can write it, bounded by the memory limit like /tmp, which is already
//     writable and executable. Docker adds /dev/mqueue, private to the run's IPC namespace.
//   - /sys/fs/cgroup is always mounted: the hierarchies read-only under a mode 555 tmpfs,
//     scoped by the private cgroup namespace to the run's own cgroup.
//   - The root's mount propagation is the runtime's default (rslave, not rprivate): host
//     mount events can reach the container, nothing propagates out.
//   - Docker adds HOSTNAME=airlock to the environment (the host name is no secret: it is
//     Airlock's, not the host's).
package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/inflight"
	"github.com/airlock-mcp/airlock/sandbox/owner"
)

// DefaultHost is the daemon address when neither Config.Host nor $DOCKER_HOST names one.
const DefaultHost = "unix:///var/run/docker.sock"

// MinAPIVersion is the oldest Engine API the backend runs on: Docker 20.10, which is the first
// with the private cgroup namespace mode and non-recursive binds it relies on.
const MinAPIVersion = "1.41"

// Labels the backend adds to every container, besides the Spec's.
const (
	// LabelOwner holds the owner token of the Backend that created the container.
	LabelOwner = "airlock.docker.owner"
	// LabelState holds the backend's state directory, so backends with different state
	// directories on one daemon never reap each other's containers.
	LabelState = "airlock.docker.state"
	// LabelImageID is set on imported images: the Airlock image ID the tag was made from.
	LabelImageID = "airlock.image.id"
)

// pingTimeout bounds the daemon checks of Open.
const pingTimeout = 10 * time.Second

// Config configures a Backend.
type Config struct {
	// Host is the daemon address; "" means $DOCKER_HOST, else DefaultHost.
	Host string
	// StateDir is Airlock's state directory; the backend keeps its own under StateDir/docker.
	StateDir string
	// Images resolves Spec.Image to the root file system to import.
	Images sandbox.ImageResolver
	// Runtime is the OCI runtime registered with the daemon (runsc, kata, ...), "" = the
	// daemon's default.
	Runtime string
	// CgroupParent is the cgroup every container is placed under ("" = the daemon's default);
	// with the cgroupfs driver a path such as "airlock", with the systemd driver a slice.
	CgroupParent string
	Logger       zerolog.Logger
}

// Backend runs sandbox Specs on a Docker daemon. It is safe for concurrent use.
type Backend struct {
	cli     *client.Client
	host    string
	local   bool // the daemon shares this machine's file systems (unix socket)
	runtime string
	cgroup  string // Config.CgroupParent
	dir     string // StateDir/docker
	owners  string
	runs    string
	images  sandbox.ImageResolver
	log     zerolog.Logger

	lock *owner.Lock
	seq  atomic.Uint64

	imgMu    sync.Mutex
	imported map[string]*importState // Airlock image ID -> import of it

	running inflight.Runs
}

var _ sandbox.Backend = (*Backend)(nil)

// Open connects to the daemon, negotiates the API version, checks that the daemon can run
// Airlock's sandboxes (API >= 1.41, seccomp, the configured runtime), creates
// StateDir/docker and takes this Backend's owner lock. An unreachable or unsuitable daemon is
// an error wrapping sandbox.ErrUnavailable that says what to do. The caller then reaps
// leftovers of dead Airlock processes (Reap).
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Images == nil {
		return nil, errors.New("docker backend: no image resolver configured")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("docker backend: no state directory configured")
	}
	host := cfg.Host
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = DefaultHost
	}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("%w: docker host %q: %v; set DOCKER_HOST to a daemon address such as %s", sandbox.ErrUnavailable, host, err, DefaultHost)
	}
	b := &Backend{cli: cli, host: host, local: strings.HasPrefix(host, "unix://"), runtime: cfg.Runtime, cgroup: cfg.CgroupParent,
		images: cfg.Images, log: cfg.Logger.With().Str("backend", "docker").Logger(), imported: map[string]*importState{}}
	if err := b.check(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		cli.Close()
		return nil, err
	}
	b.dir = filepath.Join(stateDir, "docker")
	b.owners, b.runs = filepath.Join(b.dir, "owners"), filepath.Join(b.dir, "runs")
	// The run directories hold the copy layers of copy mounts: only root may read them.
	for _, d := range []string{stateDir, b.dir, b.owners, b.runs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			cli.Close()
			return nil, fmt.Errorf("docker backend: creating state dir: %w", err)
		}
	}
	for _, d := range []string{b.dir, b.owners, b.runs} {
		if err := os.Chmod(d, 0o700); err != nil {
			cli.Close()
			return nil, fmt.Errorf("docker backend: securing state dir: %w", err)
		}
	}
	l, err := owner.Take(b.owners)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker backend: %w", err)
	}
	b.lock = l
	return b, nil
}

// check pings the daemon with API version negotiation and checks what Run relies on.
func (b *Backend) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	ping, err := b.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil && ping.APIVersion != "" {
		// The daemon answered, with a version below what the client negotiates at all.
		return fmt.Errorf("%w: the docker daemon at %s speaks Engine API %s; Airlock needs %s or newer (Docker 20.10+): %v; upgrade Docker or use the runc backend", sandbox.ErrUnavailable, b.host, ping.APIVersion, MinAPIVersion, err)
	}
	if err != nil {
		return fmt.Errorf("%w: the docker daemon at %s does not answer: %v; start it (`make docker` in a checkout, or `systemctl start docker`), set DOCKER_HOST, or use the runc backend", sandbox.ErrUnavailable, b.host, err)
	}
	if v := b.cli.ClientVersion(); versions.LessThan(v, MinAPIVersion) {
		return fmt.Errorf("%w: the docker daemon at %s speaks Engine API %s; Airlock needs %s or newer (Docker 20.10+); upgrade Docker or use the runc backend", sandbox.ErrUnavailable, b.host, v, MinAPIVersion)
	}
	if ping.OSType != "" && ping.OSType != "linux" {
		return fmt.Errorf("%w: the docker daemon at %s runs %s containers; Airlock's sandboxes are Linux containers", sandbox.ErrUnavailable, b.host, ping.OSType)
	}
	info, err := b.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return fmt.Errorf("%w: docker info at %s: %v", sandbox.ErrUnavailable, b.host, err)
	}
	if !slices.ContainsFunc(info.Info.SecurityOptions, func(o string) bool { return o == "name=seccomp" || strings.HasPrefix(o, "name=seccomp,") }) {
		// Never run without the filter the profile asks for.
		return fmt.Errorf("%w: the docker daemon at %s has no seccomp support (security options %v); Airlock refuses to run sandboxes without its seccomp profile: use a daemon built with seccomp, or the runc backend", sandbox.ErrUnavailable, b.host, info.Info.SecurityOptions)
	}
	if b.runtime != "" {
		if _, ok := info.Info.Runtimes[b.runtime]; !ok {
			return fmt.Errorf("%w: runtime %q is not registered with the docker daemon at %s (registered: %s); register it (dockerd --add-runtime %s=PATH or \"runtimes\" in daemon.json) or leave the runtime empty for the daemon's default",
				sandbox.ErrUnavailable, b.runtime, b.host, strings.Join(slices.Sorted(maps.Keys(info.Info.Runtimes)), ", "), b.runtime)
		}
	}
	return nil
}

// Name is "docker".
func (b *Backend) Name() string { return "docker" }

// Close waits for in-flight runs, then releases the owner lock and the client. Runs after
// Close fail.
func (b *Backend) Close() error {
	if !b.running.Close() {
		return nil
	}
	err := b.lock.Release()
	if cerr := b.cli.Close(); err == nil {
		err = cerr
	}
	return err
}

// Info is what doctor reports about the daemon.
type Info struct {
	Host             string   // daemon address
	Local            bool     // unix socket: host binds (host image, workspace) work
	ServerVersion    string   // e.g. "20.10.24+dfsg1"
	APIVersion       string   // the negotiated Engine API version
	ServerAPIVersion string   // the daemon's newest API version
	DefaultRuntime   string   // the daemon's default OCI runtime
	Runtime          string   // the runtime Airlock's containers use ("" = DefaultRuntime)
	Runtimes         []string // registered runtimes, sorted
	RuncVersion      string   // the daemon's runc version, when reported
	RuncCommit       string   // the daemon's runc commit, when reported
	ContainerdVer    string   // containerd version, when reported
	CgroupDriver     string   // cgroupfs or systemd
	CgroupVersion    string   // "1" or "2"
	Seccomp          bool     // the daemon enforces seccomp profiles
	Rootless         bool
	SecurityOptions  []string // as the daemon reports them
}

// Info asks the daemon for what doctor shows.
func (b *Backend) Info(ctx context.Context) (Info, error) {
	in, err := b.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("docker info at %s: %w", b.host, err)
	}
	ver, err := b.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("docker version at %s: %w", b.host, err)
	}
	i := in.Info
	out := Info{
		Host: b.host, Local: b.local, ServerVersion: i.ServerVersion, APIVersion: b.cli.ClientVersion(),
		ServerAPIVersion: ver.APIVersion, DefaultRuntime: i.DefaultRuntime, Runtime: b.runtime,
		Runtimes: slices.Sorted(maps.Keys(i.Runtimes)), RuncCommit: i.RuncCommit.ID,
		CgroupDriver: i.CgroupDriver, CgroupVersion: i.CgroupVersion,
		SecurityOptions: slices.Clone(i.SecurityOptions),
	}
	for _, c := range ver.Components {
		switch strings.ToLower(c.Name) {
		case "runc":
			out.RuncVersion = c.Version
		case "containerd":
			out.ContainerdVer = c.Version
		}
	}
	for _, o := range i.SecurityOptions {
		switch {
		case o == "name=seccomp" || strings.HasPrefix(o, "name=seccomp,"):
			out.Seccomp = true
		case o == "name=rootless":
			out.Rootless = true
		}
	}
	return out, nil
}
