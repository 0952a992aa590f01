package sandbox

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/rs/zerolog"
)

// OpenOptions are what every backend factory gets. Backend-specific settings (a daemon's
// address, a runtime binary) come from the environment each backend documents, so one
// registry opens every backend the same way.
type OpenOptions struct {
	// StateDir is Airlock's state directory (AIRLOCK_STATE_DIR); each backend keeps its own
	// state in a subdirectory and resolves images from the store there.
	StateDir string
	// RunDir overrides where the backend keeps the private state of its runs ("" = its own
	// subdirectory of StateDir); tests give each backend a directory of its own, so whatever a
	// run leaves behind is theirs to find.
	RunDir string
	// CgroupParent overrides the cgroup every container is placed under ("" = the backend's
	// default, "airlock"); tests use a parent of their own to find what a run left behind.
	CgroupParent string
	Logger       zerolog.Logger
}

// Factory opens one backend. close releases it (the owner lock, the daemon connection) and
// may be nil. An error that means "this backend cannot run here" wraps ErrUnavailable.
type Factory func(ctx context.Context, o OpenOptions) (b Backend, close func() error, err error)

// Registry is the set of backends by the name a config, a flag or a test uses. Adding a
// backend is one entry, not an edit across the tree.
type Registry map[string]Factory

// Names lists the registered backends in order.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// UnknownBackendError is the error of Open for a name no factory is registered under.
type UnknownBackendError struct {
	Name      string
	Available []string
}

func (e *UnknownBackendError) Error() string {
	return fmt.Sprintf("unknown sandbox backend %q; available: %s", e.Name, strings.Join(e.Available, ", "))
}

// Open opens the backend registered as name. It never falls back to another backend: a
// backend that cannot run here is an error, and the caller refuses to run tools.
func (r Registry) Open(ctx context.Context, name string, o OpenOptions) (Backend, func() error, error) {
	f, ok := r[name]
	if !ok {
		return nil, nil, &UnknownBackendError{Name: name, Available: r.Names()}
	}
	b, closeFn, err := f(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	if b == nil {
		return nil, nil, fmt.Errorf("%w: backend %s returned no backend", ErrUnavailable, name)
	}
	if closeFn == nil {
		closeFn = func() error { return nil }
	}
	return b, closeFn, nil
}

// Report is what a backend that drives a daemon says about the runtime behind it, for
// `airlock doctor`: where the daemon is, which versions it runs, and whether it can hold the
// properties every sandbox promises.
type Report struct {
	Endpoint      string   // the daemon's address
	ServerVersion string   // the daemon's own version
	APIVersion    string   // the API version negotiated with it ("" when it has none)
	Runtime       string   // the OCI runtime containers run under (a name or a path)
	RuncVersion   string   // that runtime's runc version, e.g. "1.3.3" ("" when not reported)
	Runtimes      []string // OCI runtimes the daemon has registered (runc, runsc, kata...)
	Seccomp       bool     // the daemon applies seccomp profiles
	CgroupDriver  string   // cgroupfs or systemd
	CgroupVersion string   // "1" or "2"
	Rootless      bool     // the daemon runs without root
	// Remote: the daemon does not share this machine's file systems (a tcp:// Docker host), so
	// nothing of the host can be bind-mounted: no workspace, no host image.
	Remote bool
}

// Reporter is implemented by backends that can describe the daemon behind them.
type Reporter interface {
	Report(ctx context.Context) (Report, error)
}
