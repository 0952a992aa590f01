// Package sandbox describes one run of one command in a fresh, hardened container (Spec), the
// outcome of that run (Result), and the small interface every container backend implements.
//
// A Spec starts from the hardened defaults (see Defaults) and is changed only through Options.
// An option that weakens a default records that it did in Spec.Loosened, and the Result carries
// that list, so an operator can always see which guarantees a run did not have.
package sandbox

import (
	"context"
	"errors"
	"time"

	"github.com/airlock-mcp/airlock/egress"
)

// Backend runs Specs. Each Run uses a new container that no other run has seen and removes
// that container, its bundle/state and its cgroup before returning, whatever happened.
type Backend interface {
	// Name is the backend's registry name: "runc", "docker", "containerd".
	Name() string
	// Run executes spec to completion. A non-nil error means the sandbox itself failed (the
	// command did not run, or its outcome is unknown); a command that ran and failed is a
	// Result with a non-zero ExitCode and a nil error.
	Run(ctx context.Context, spec Spec) (Result, error)
	// Reap removes leftovers of earlier Airlock processes that died without cleaning up and
	// reports each container it removed. It never touches containers of a live Airlock
	// process.
	Reap(ctx context.Context) ([]Reaped, error)
}

// Prestarter is a Backend that can create and start a sandbox before the command it will run
// is known, so a call finds its container ready (package pool keeps a few per shape). The
// prestarted sandbox runs exactly one command and is removed: it is a fresh container all the
// same, only started earlier.
type Prestarter interface {
	// WarmKey is the shape of spec's sandbox: two specs with the same key get identical
	// containers (root, mounts, namespaces, limits, identity, seccomp...) and differ only in
	// what a warm sandbox takes with its command: argv, environment, working directory,
	// stdin, timeout, output caps and labels. ok is false for a spec a prestarted sandbox
	// cannot run (a live stream, an egress proxy, copy-on-write mounts).
	WarmKey(ctx context.Context, spec Spec) (key string, ok bool, err error)
	// Prestart creates and starts a sandbox of spec's shape whose init waits for one
	// command; spec's own command is not run.
	Prestart(ctx context.Context, spec Spec) (Warm, error)
}

// Warm is a prestarted sandbox waiting for its one command.
type Warm interface {
	// Key is the shape it was started for (Prestarter.WarmKey).
	Key() string
	// Run runs spec's command in the sandbox and removes the sandbox, as Backend.Run does;
	// spec must have the sandbox's key. A Result whose Ran is false (with an error) means
	// the command never started and the caller may run it elsewhere. A second Run fails.
	Run(ctx context.Context, spec Spec) (Result, error)
	// Close removes the sandbox if Run has not; it is safe to call more than once.
	Close() error
}

// Labels every container of a tool call carries, so whoever reaps a leftover can tell which
// call it belonged to and append that call's closing record to the right audit log.
const (
	LabelAuditID  = "airlock.audit_id"
	LabelAuditLog = "airlock.audit_log"
	LabelTool     = "airlock.tool"
)

// Reaped is one leftover container Reap removed.
type Reaped struct {
	ContainerID string
	// Labels are the container's labels as it was created with (empty when its
	// configuration was already gone).
	Labels map[string]string
	// Running: a process of the container was still alive when it was removed.
	Running bool
}

// Access is how a host directory is offered to the sandbox.
type Access string

const (
	// ReadOnly: a read-only bind mount (the default for the workspace).
	ReadOnly Access = "ro"
	// ReadWrite: a writable bind mount; writes reach the host. Recorded in Loosened.
	ReadWrite Access = "rw"
	// CopyOnWrite: an overlay whose upper layer lives in the run's private state and is
	// discarded with the container; the host directory is never written.
	CopyOnWrite Access = "copy"
)

// Mount is a host directory or file made visible inside the container. Every mount is
// nosuid and nodev; ReadOnly mounts are also remounted read-only (MS_RDONLY|MS_REMOUNT).
type Mount struct {
	Source string `json:"source"` // absolute host path
	Target string `json:"target"` // absolute path inside the container
	Access Access `json:"access"`
}

// Tmpfs is a size-capped in-memory file system.
type Tmpfs struct {
	Target    string
	SizeBytes int64
	Mode      uint32 // e.g. 01777
}

// User is the numeric identity the command runs as.
type User struct {
	UID uint32
	GID uint32
}

// Limits are the cgroup and rlimit caps of one run.
type Limits struct {
	MemoryBytes int64   // memory limit; swap is set equal so there is no extra swap
	CPUs        float64 // CPU quota in cores, e.g. 1.0
	Pids        int64   // max processes/threads
	NoFile      uint64  // RLIMIT_NOFILE
}

// Network is the network mode of a run.
type Network string

const (
	// NetworkNone: a new, empty network namespace with only loopback.
	NetworkNone Network = "none"
	// NetworkProxy: the same empty namespace (loopback only, no route out), plus one way out
	// through Airlock's egress proxy: the proxy's Unix socket (Spec.Egress) is bind-mounted at
	// EgressSocketTarget, a forwarder started by the sandbox init before the command listens on
	// EgressListen and pipes every accepted connection to that socket, and the command's
	// environment names it as HTTP(S)_PROXY. The proxy on the host decides what is reachable;
	// the sandbox adds no interface, route or resolver.
	NetworkProxy Network = "proxy"
)

// Where the egress proxy appears inside a NetworkProxy sandbox.
const (
	// EgressSocketTarget is where the proxy's Unix socket is bind-mounted; every image has an
	// empty file there as the mount point.
	EgressSocketTarget = "/.airlock/egress.sock"
	// EgressListen is the loopback address the in-sandbox forwarder listens on; the proxy
	// variables of the command's environment point at it.
	EgressListen = "127.0.0.1:3128"
)

// Egress is the host side of a NetworkProxy run.
type Egress struct {
	// Socket is the absolute host path of the proxy's Unix socket. The proxy creates it mode
	// 0666: the sandbox user (65534 by default) must be able to connect. Empty in a spec
	// whose proxy Airlock's runtime starts for Allow: it sets Socket before the backend runs.
	Socket string
	// Allow is the profile's allowlist (see package egress), for whoever starts the proxy;
	// the backends do not read it.
	Allow []string
}

// Seccomp profile names understood by package seccomp.
const (
	SeccompDefault    = "default"
	SeccompFiles      = "files"
	SeccompUnconfined = "unconfined"
)

// Spec is everything one run needs. Build it with New and Options; the zero value is not valid.
type Spec struct {
	Image   string   // image name known to package images: "busybox", "host", ...
	Argv    []string // argv[0] is resolved inside the container's PATH by the backend
	Env     []string // KEY=VALUE; nothing of the host environment is inherited
	Workdir string   // absolute path inside the container

	Mounts []Mount
	Tmpfs  []Tmpfs
	User   User
	Limits Limits

	Seccomp string  // SeccompDefault, SeccompFiles or SeccompUnconfined
	Network Network // NetworkNone, or NetworkProxy with Egress set
	Egress  *Egress // the proxy of a NetworkProxy run; nil otherwise

	// Runtime names an OCI runtime the backend's daemon has registered (runsc, kata, a
	// current runc registered as airlock-runc); "" is the backend's default. The embedded
	// runc backend has no other runtime and refuses any name but "" and "runc".
	Runtime string

	Timeout   time.Duration // wall clock; on expiry every process in the container is killed
	StdoutCap int64         // bytes kept of stdout; the rest is read and discarded
	StderrCap int64         // bytes kept of stderr
	Stdin     []byte        // nil means /dev/null

	// Streams, when not nil, makes the run a live exchange (a stdio MCP server, see Start):
	// the command's stdin is read from Streams.Stdin and its stdout goes to Streams.Stdout as
	// they flow, uncapped, instead of Stdin and the StdoutCap capture. Not part of the
	// container's configuration: the same Spec with or without Streams gets the same sandbox.
	Streams *Streams

	// Labels are attached to the container (OCI annotations, Docker labels) so leftovers can
	// be found; "airlock"="1" is always present.
	Labels map[string]string

	// Loosened names every hardened default an option weakened, e.g. "workspace:rw",
	// "seccomp:unconfined". It is copied into the Result.
	Loosened []string
}

// Result is the outcome of a run that the sandbox completed.
type Result struct {
	ExitCode        int // 124 on timeout; 137 when killed by OOM
	Stdout          []byte
	Stderr          []byte
	StdoutTruncated bool
	StderrTruncated bool
	TimedOut        bool
	OOMKilled       bool
	Duration        time.Duration
	ContainerID     string
	Loosened        []string
	// Ran: the command was started in the container, or may have been, so its effects may
	// exist even when Run also returns an error (a cancellation, a failed cleanup). False
	// when the error means the command never started.
	Ran bool
	// Warm: the command ran in a sandbox started before the call (Prestarter).
	Warm bool
	// Ready: the sandbox was one a pool kept ready, started before the call arrived; false
	// for one prestarted by the call itself (a pool miss), which paid the whole start.
	Ready bool
	// Egress lists the connections the run made through its egress proxy, allowed and
	// refused, when Airlock's runtime ran that proxy (Egress.Allow).
	Egress []egress.Event
}

// Truncated reports whether either stream lost bytes to its cap.
func (r Result) Truncated() bool { return r.StdoutTruncated || r.StderrTruncated }

// Exit codes with a fixed meaning, matching the shell's conventions.
const (
	ExitTimeout = 124
	ExitKilled  = 137
)

// ExitCodeOf is a Result's ExitCode from what a backend saw of a run: ExitTimeout when its
// timeout killed it; ExitKilled when the caller's cancellation did (not the command's own exit)
// or when the OOM killer ended a process and the command still reported success; otherwise the
// command's own code.
func ExitCodeOf(code int, timedOut, cancelled, oomKilled bool) int {
	switch {
	case timedOut:
		return ExitTimeout
	case cancelled, oomKilled && code == 0:
		return ExitKilled
	}
	return code
}

// Errors callers branch on.
var (
	// ErrUnavailable: the backend cannot run containers here (runtime missing, no cgroups...).
	// Callers must refuse the call; Airlock never falls back to running a tool unsandboxed.
	ErrUnavailable = errors.New("sandbox backend unavailable")
	// ErrInvalidSpec: the Spec violates an invariant (relative path, empty argv, ...).
	ErrInvalidSpec = errors.New("invalid sandbox spec")
	// ErrStale: a prestarted sandbox (Warm) could not take its command because it is gone
	// (its init gave up waiting, or was killed); nothing ran, and the command may run in
	// another sandbox.
	ErrStale = errors.New("prestarted sandbox gone")
)

// Image is a root file system a backend can run, as resolved by package images.
type Image struct {
	Name   string  `json:"name"`            // "busybox", "host"
	ID     string  `json:"id"`              // "sha256:<hex>" of the image's content (and, for host, its bind list)
	Rootfs string  `json:"rootfs"`          // absolute host path of the unpacked root file system
	Binds  []Mount `json:"binds,omitempty"` // read-only host binds the image needs (host image)
}

// ImageResolver finds a built image by name. An unknown or unbuilt image is an error that tells
// the operator to run `airlock images build NAME`.
type ImageResolver interface {
	Resolve(ctx context.Context, name string) (Image, error)
}
