package runtime

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/pool"
	"github.com/airlock-mcp/airlock/state"
)

//go:embed defaultpolicy.json
var defaultPolicy []byte

// DefaultPolicy is the embedded policy used when the config names none. See docs/config.md.
func DefaultPolicy() []byte { return slices.Clone(defaultPolicy) }

// DefaultHTTPAddr is where `airlock serve --http` listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8811"

// DefaultGrant is the grant id of stdio, CLI and token-less loopback HTTP callers.
const DefaultGrant = "local"

// Overrides are command-line settings that win over the config file.
type Overrides struct {
	Workspace string // --workspace
	Policy    string // --policy
	Backend   string // --backend
	StateDir  string // $AIRLOCK_STATE_DIR
}

// Resolve fills defaults and makes every path absolute: relative paths in the file are relative
// to the file's directory; command-line paths to the current directory.
func (c *Config) Resolve(o Overrides) error {
	base, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("current directory: %w", err)
	}
	cwd := base
	if c.File != "" {
		base = filepath.Dir(c.File)
	}
	abs := func(p, dir string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	switch {
	case o.Workspace != "":
		c.Workspace = abs(o.Workspace, cwd)
	case c.Workspace != "":
		c.Workspace = abs(c.Workspace, base)
	default:
		c.Workspace = cwd
	}
	// The bind-mount source must be the real directory: a symlinked workspace path could be
	// repointed between the check and the mount.
	ws, err := filepath.EvalSymlinks(c.Workspace)
	if err != nil {
		return &ConfigError{File: c.File, Line: c.line("workspace"), Path: "workspace", Msg: fmt.Sprintf("%v (set --workspace or workspace:)", err)}
	}
	c.Workspace = ws
	if err := checkNotHostRoot(ws, o.StateDir); err != nil {
		return &ConfigError{File: c.File, Line: c.line("workspace"), Path: "workspace", Msg: err.Error()}
	}
	if o.Policy != "" {
		c.Policy = abs(o.Policy, cwd)
	} else {
		c.Policy = abs(c.Policy, base)
	}
	if o.Backend != "" {
		c.Backend = o.Backend
	}
	c.stateDir = o.StateDir
	if c.Backend == "" {
		c.Backend = "runc"
	}
	if c.Grant.ID == "" {
		c.Grant.ID = DefaultGrant
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = DefaultHTTPAddr
	}
	if c.Audit.Path == "" {
		if o.StateDir == "" {
			return errors.New("audit: no audit.path in the config and no state directory (set AIRLOCK_STATE_DIR)")
		}
		c.Audit.Path = filepath.Join(o.StateDir, "audit", "audit.jsonl")
	} else {
		c.Audit.Path = abs(c.Audit.Path, base)
	}
	if err := c.resolveState(base, o.StateDir); err != nil {
		return err
	}
	if !isRedisURL(c.State) && within(realPath(c.State), ws) {
		// Inside the workspace, write_file could lift kill switches, mint grants and refill
		// budgets.
		return &ConfigError{File: c.File, Line: c.line("state"), Path: "state",
			Msg: fmt.Sprintf("state directory %s lies inside the workspace %s, where tools can rewrite it; put it outside (default $AIRLOCK_STATE_DIR/state)", c.State, ws)}
	}
	if within(realPath(c.Audit.Path), ws) {
		// write_file runs as the workspace's owner, who then owns the log too: an agent could
		// rewrite the whole chain (it is unkeyed) with its own calls left out, and read_file
		// would show it every other session's records.
		return &ConfigError{File: c.File, Line: c.line("audit"), Path: "audit.path",
			Msg: fmt.Sprintf("audit log %s lies inside the workspace %s, where the tools it records can rewrite it; put it outside (default $AIRLOCK_STATE_DIR/audit/audit.jsonl)", c.Audit.Path, ws)}
	}
	for name, p := range c.Profiles {
		for i, m := range p.Mounts {
			if _, err := os.Stat(m.Source); err != nil {
				return c.errAt(fmt.Sprintf("mount source: %v", err), "profiles", name, "mounts", i, "source")
			}
			if real, err := filepath.EvalSymlinks(m.Source); err == nil {
				if err := checkNotHostRoot(real, o.StateDir); err != nil {
					return c.errAt("mount source: "+err.Error(), "profiles", name, "mounts", i, "source")
				}
			}
		}
	}
	for name, u := range c.Upstreams {
		for i, m := range u.Mounts {
			u.Mounts[i].Source = abs(m.Source, base)
			if _, err := os.Stat(u.Mounts[i].Source); err != nil {
				return c.errAt(fmt.Sprintf("mount source: %v", err), "upstreams", name, "mounts", i, "source")
			}
			if real, err := filepath.EvalSymlinks(u.Mounts[i].Source); err == nil {
				if err := checkNotHostRoot(real, o.StateDir); err != nil {
					return c.errAt("mount source: "+err.Error(), "upstreams", name, "mounts", i, "source")
				}
				u.Mounts[i].Source = real
			}
		}
	}
	return nil
}

// resolveState makes c.State a Redis URL or an absolute directory (default stateDir/state);
// relative paths are relative to base, the config file's directory.
func (c *Config) resolveState(base, stateDir string) error {
	switch {
	case isRedisURL(c.State):
	case c.State == "":
		if stateDir == "" {
			return errors.New("state: no state in the config and no state directory (set AIRLOCK_STATE_DIR)")
		}
		c.State = filepath.Join(stateDir, "state")
	case !filepath.IsAbs(c.State):
		c.State = filepath.Join(base, c.State)
	}
	// The default directory keeps its documents (the gateway's pins) in stateDir, where pins
	// lived before the store held them: pins left behind would be taken afresh on first use,
	// letting a tool changed meanwhile in unreviewed. Another directory keeps its own.
	c.docsDir = ""
	if stateDir != "" && !isRedisURL(c.State) && filepath.Clean(c.State) == filepath.Join(stateDir, "state") {
		c.docsDir = filepath.Clean(stateDir)
	}
	return nil
}

// ResolveState resolves only the config's state, for commands that use nothing else (airlock
// grant, kill, resume): they need no workspace.
func (c *Config) ResolveState(stateDir string) error {
	base, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("current directory: %w", err)
	}
	if c.File != "" {
		base = filepath.Dir(c.File)
	}
	if c.Grant.ID == "" {
		c.Grant.ID = DefaultGrant
	}
	return c.resolveState(base, stateDir)
}

// checkNotHostRoot refuses to mount the host root or a directory holding Airlock's state. A
// workspace of "/" (the current directory of a service started with WorkingDirectory=/) would
// let write_file, which runs as the workspace's owner, rewrite /etc/passwd or cron as root;
// one holding the state directory would let a tool rewrite the bundles, images and audit log
// of other sandboxes. airlock exec refuses the same directories.
func checkNotHostRoot(dir, stateDir string) error {
	if dir == "/" {
		return fmt.Errorf("%q is the host root; serve a project directory instead (--workspace DIR)", dir)
	}
	if stateDir == "" {
		return nil
	}
	state, err := filepath.Abs(stateDir)
	if err != nil {
		return nil
	}
	if real, err := filepath.EvalSymlinks(state); err == nil {
		state = real
	}
	if state == dir || strings.HasPrefix(state, dir+"/") || strings.HasPrefix(dir, state+"/") {
		return fmt.Errorf("%q overlaps Airlock's state directory %s; serve a project directory instead (--workspace DIR)", dir, state)
	}
	return nil
}

// within reports whether p is dir or lies below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// realPath resolves the symlinks of the longest existing prefix of an absolute path (the audit
// log and its directory may not exist yet).
func realPath(p string) string {
	p = filepath.Clean(p)
	var rest []string
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// LoadPolicy reads the configured policy, or the embedded default.
func (c *Config) LoadPolicy() (*policies.Policy, error) {
	if c.Policy == "" {
		p, err := policies.Parse("default policy (embedded)", defaultPolicy)
		if err != nil {
			return nil, fmt.Errorf("embedded default policy: %w", err)
		}
		return p, nil
	}
	return policies.Load(c.Policy)
}

// newEngine is the policy engine of a runtime: at start and at every reload. path_within
// judges absolute paths against /workspace: that is the path agents see, and the one the
// file tools accept.
func newEngine(pol *policies.Policy, counters policies.Counters) *policies.Engine {
	return policies.NewEngine(pol, counters, policies.WithWorkspace(sandbox.WorkspaceTarget))
}

// Options are what Open needs besides the config.
type Options struct {
	StateDir string
	// Backends is the registry cfg.Backend is looked up in (backends.Default outside tests).
	Backends sandbox.Registry
	Logger   zerolog.Logger
	// ProgressInterval is how often a running tool reports MCP progress; 0 means 1 s.
	ProgressInterval time.Duration
	// State, when set, is used instead of the store the config names (cfg.State); the
	// runtime closes it.
	State state.Store
	// Prestart keeps sandboxes started ahead of calls (the config's pool): for a server,
	// not for a one-shot command, whose sandboxes would only be started to be removed.
	Prestart bool
}

// Runtime is a resolved config bound to a policy engine, a backend and a pipeline.
type Runtime struct {
	cfg       *Config
	tools     []*Tool
	byName    map[string]*Tool
	pipe      *pipeline.Pipeline
	store     state.Store
	control   *control
	stopWatch func()
	servers   liveServers
	// pending are the calls waiting for an answer in the console; nil without a console.
	pending      *pendingApprovals
	counts       callCounts
	started      time.Time
	reloadMu     sync.Mutex
	closeBackend func() error
	log          zerolog.Logger
	approvals    *approvals
	calls        *inflight
	gw           *gateway // nil without upstreams
	// histories are the MCP sessions' histories (history.go); the zero value is ready.
	histories sessionHistories
	// tel is the metrics and traces of the calls; gate, pool and probe are what the gauges
	// and the readiness check read (see metricsstate.go, health.go).
	tel   *telemetry
	gate  *runGate
	pool  *pool.Pool
	probe sandbox.Backend
	ready *readiness
}

// Open builds the runtime for a resolved config. It refuses to start without a working
// backend: Airlock never runs a tool unsandboxed.
func Open(ctx context.Context, cfg *Config, o Options) (*Runtime, error) {
	tools, err := BuildTools(cfg)
	if err != nil {
		return nil, err
	}
	pol, err := cfg.LoadPolicy()
	if err != nil {
		return nil, err
	}
	// path_within judges absolute paths against /workspace: that is the path agents see, and
	// the one the file tools accept.
	store := o.State
	if store == nil {
		if store, err = cfg.OpenState(ctx); err != nil {
			return nil, err
		}
	}
	ctl := newControl(store, o.Logger)
	engine := newEngine(pol, store)
	backend, closeBackend, err := o.Backends.Open(ctx, cfg.Backend, sandbox.OpenOptions{StateDir: o.StateDir, Logger: o.Logger})
	var unknown *sandbox.UnknownBackendError
	if errors.As(err, &unknown) {
		store.Close()
		return nil, &ConfigError{File: cfg.File, Line: cfg.line("backend"), Path: "backend", Msg: unknown.Error()}
	}
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("sandbox backend %s is not usable, refusing to start (tools never run unsandboxed): %w", cfg.Backend, err)
	}
	closeSandbox := closeBackend
	closeBackend = func() error {
		err := closeSandbox()
		if serr := store.Close(); err == nil {
			err = serr
		}
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Audit.Path), 0o700); err != nil {
		closeBackend()
		return nil, fmt.Errorf("audit directory: %w", err)
	}
	ptools := make([]pipeline.Tool, len(tools))
	byName := map[string]*Tool{}
	for i, t := range tools {
		ptools[i] = t
		byName[t.Name()] = t
	}
	maxPids, maxMem := hostRunBudget()
	// One gate for the tools' runs and the stdio upstreams' servers, which hold their share
	// of the budget for as long as they live.
	edir, cleanEgress, err := egressDir(o.StateDir)
	if err != nil {
		closeBackend()
		return nil, err
	}
	gate := newRunGate(maxPids, maxMem)
	// Sandboxes started ahead of calls hold their share of the budget while they wait and
	// give it up before a call would wait for it.
	size := cfg.Pool.size()
	if !o.Prestart {
		size = 0
	}
	pooled := pool.New(backend, pool.Config{Size: size, MaxShapes: cfg.Pool.MaxShapes,
		MaxAge: time.Duration(cfg.Pool.MaxAge), Budget: gate, Logger: o.Logger})
	gate.shed = pooled.Shed
	closeAll := closeBackend
	closeBackend = func() error {
		defer cleanEgress()
		// The ready sandboxes go before the backend, which waits for every run it has.
		_ = pooled.Close()
		return closeAll()
	}
	tel, err := newTelemetry(ctx, cfg, o.Logger)
	if err != nil {
		closeBackend()
		return nil, err
	}
	opened := false
	defer func() {
		if !opened {
			tel.close()
		}
	}()
	proxied := egressBackend{Backend: cacheGuardBackend{Backend: pooled}, dir: edir, base: cfg.Egress.resolved, log: o.Logger,
		count: tel.m.egressEvent}
	gated := gatedBackend{Backend: observedBackend{Backend: proxied, m: tel.m}, gate: gate}
	pipe, err := pipeline.New(pipeline.Config{
		Tools:      ptools,
		Policy:     engine,
		Stop:       ctl,
		Backend:    gated,
		AuditPath:  cfg.Audit.Path,
		Workspace:  cfg.Workspace,
		RecordArgs: cfg.Audit.RecordArgs,
		Logger:     o.Logger,
		Observer:   tel,

		ProgressInterval: o.ProgressInterval,
		AuditRotate:      cfg.Audit.Rotate.resolved,
	})
	if err != nil {
		closeBackend()
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	appr, err := newApprovals()
	if err != nil {
		pipe.Close()
		closeBackend()
		return nil, err
	}
	reserved := map[string]bool{}
	for name := range byName {
		reserved[name] = true
	}
	gw, err := newGateway(cfg, pipe, gated, store, reserved, o.Logger, tel.callMeta)
	if err != nil {
		pipe.Close()
		closeBackend()
		return nil, err
	}
	ReapLeftovers(ctx, backend, o.Logger)
	r := &Runtime{cfg: cfg, tools: tools, byName: byName, pipe: pipe, store: store, control: ctl,
		closeBackend: closeBackend, log: o.Logger, approvals: appr, calls: newInflight(), gw: gw, started: time.Now(),
		tel: tel, gate: gate, pool: pooled, probe: gatedBackend{Backend: backend, gate: gate}}
	if cfg.Console.Enabled {
		timeout := time.Duration(cfg.Console.ApprovalTimeout)
		if timeout == 0 {
			timeout = approvalTTL
		}
		r.pending = newPendingApprovals(timeout)
	}
	r.ready = newReadiness(r)
	tel.m.bind(r)
	opened = true
	// The watcher lives as long as the runtime: Close stops it.
	wctx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); ctl.watch(wctx, r.calls) }()
	policyWatched := make(chan struct{})
	go func() { defer close(policyWatched); r.watchPolicy(wctx) }()
	r.stopWatch = func() { stopWatch(); <-watched; <-policyWatched }
	return r, nil
}

// ReapLeftovers removes what dead Airlock processes left in backend and closes, in each
// call's own audit log, the calls whose containers it removed. Leftovers cost resources, not
// isolation, so failures are logged and serving goes on.
func ReapLeftovers(ctx context.Context, backend sandbox.Backend, log zerolog.Logger) {
	reaped, err := backend.Reap(ctx)
	if err != nil {
		log.Warn().Err(err).Str("event", "sandbox.reap_failed").Msg("could not remove every leftover of a dead airlock process")
	}
	if err := pipeline.RecordReaped(reaped, backend.Name(), time.Now()); err != nil {
		log.Error().Err(err).Str("event", "audit.error").Msg("reaped containers of interrupted calls could not all be recorded")
	}
}

// Shutdown cancels every call in flight (their containers are killed and their records
// written as the calls return) and refuses new ones. It does not wait; Close does.
func (r *Runtime) Shutdown(cause error) { r.calls.shutdown(cause) }

// Close cancels the calls still in flight, waits (bounded) for them to kill their containers
// and write their audit records, then closes the backend and the pipeline (flushing the audit
// log).
func (r *Runtime) Close() error {
	r.stopWatch()
	r.calls.shutdown(errShuttingDown)
	if !r.calls.wait(closeWait) {
		r.log.Error().Str("event", "runtime.close_timeout").Dur("waited", closeWait).
			Msg("calls still running after shutdown; closing anyway (their containers are reaped at the next start)")
	}
	r.gw.close()
	// The backend first: closing it waits for runs still going, whose calls then write their
	// closing records to the log closed after it.
	err := r.closeBackend()
	if cerr := r.pipe.Close(); err == nil {
		err = cerr
	}
	r.tel.close() // the last spans, of the calls that just finished
	return err
}

// Config is the resolved configuration.
func (r *Runtime) Config() *Config { return r.cfg }

// Tool returns a served tool by name.
func (r *Runtime) Tool(name string) (*Tool, bool) {
	t, ok := r.byName[name]
	return t, ok
}

// VisibleTools lists the tools g may see in tools/list: those the policy can allow for it.
func (r *Runtime) VisibleTools(g policies.Grant) []*Tool {
	var out []*Tool
	for _, t := range r.tools {
		if r.pipe.Policy().Visible(t.Name(), g) {
			out = append(out, t)
		}
	}
	return out
}

// Run runs one call through the pipeline. The call is cancelled when ctx ends or the runtime
// shuts down, whichever comes first. It has a session history of its own (a one-shot call);
// MCP calls run with their session's (run).
func (r *Runtime) Run(ctx context.Context, call pipeline.Call) pipeline.Result {
	return r.run(ctx, call, nil)
}

func (r *Runtime) run(ctx context.Context, call pipeline.Call, h *history) pipeline.Result {
	ctx, done := r.calls.begin(ctx, callKey{tool: call.Tool, grant: call.Grant.ID, session: call.Session})
	defer done()
	if call.Remote == nil && r.byName[call.Tool] == nil {
		// An upstream tool called without an MCP session of its own (the CLI, or a call the
		// MCP layer did not route): one upstream session for this call.
		if t := r.gw.lookup(ctx, call.Tool); t != nil {
			call.Remote = r.gw.bind(t, "", nil, nil)
		}
	}
	ctx, traceID, endSpan := r.tel.beginCall(ctx, call.Tool)
	defer endSpan()
	call.TraceID = traceID
	call.History = r.bindHistory(h, call)
	res := r.pipe.Run(ctx, call)
	r.counts.add(res)
	return res
}

// Grant is the identity of stdio and CLI callers.
func (r *Runtime) Grant() policies.Grant {
	return policies.Grant{ID: r.cfg.Grant.ID, Labels: r.cfg.Grant.Labels}
}
