package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/egress"
	"github.com/airlock-mcp/airlock/internal/flock"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/testcache"
)

// NetworkConfig is a profile's network: none (the default), or the hosts its runs may reach
// through Airlock's egress proxy (docs/egress.md).
type NetworkConfig struct {
	// Allow lists the reachable hosts: "host" exactly or "*.suffix", each with an optional
	// ":port" (without one, 80 and 443). Empty: no network at all.
	Allow []string `yaml:"allow"`
}

// EgressConfig is what every egress proxy of this Airlock shares.
type EgressConfig struct {
	// AllowPrivate lists CIDRs (or single addresses) that may be reached although they are
	// private or special-purpose: loopback, RFC 1918, CGNAT, link-local, ULA. Default none.
	AllowPrivate []string `yaml:"allow_private"`
	// Hosts maps names to addresses used instead of DNS (internal registries, tests). A name
	// here must still be on a profile's allowlist.
	Hosts map[string]string `yaml:"hosts"`
	// MaxConns caps the connections one call's proxy accepts; default 256.
	MaxConns int `yaml:"max_conns"`
	// MaxBytes caps the bytes one call moves through its proxy, both ways; default 1Gi.
	MaxBytes string `yaml:"max_bytes"`

	resolved egress.Config `yaml:"-"`
}

// Egress defaults for one call's proxy.
const (
	defaultEgressConns = 256
	defaultEgressBytes = 1 << 30
)

// checkEgress validates the egress section and every profile's network (called by validate).
func (c *Config) checkEgress() error {
	e := &c.Egress
	r := egress.Config{MaxConns: defaultEgressConns, MaxBytes: defaultEgressBytes}
	for i, s := range e.AllowPrivate {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return c.errAt(fmt.Sprintf("%q is not a CIDR (10.20.0.0/16) or an address", s), "egress", "allow_private", i)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.AllowPrivate = append(r.AllowPrivate, p.Masked())
	}
	if len(e.Hosts) > 0 {
		r.Hosts = map[string][]netip.Addr{}
	}
	for name, addr := range e.Hosts {
		var addrs []netip.Addr
		for _, s := range strings.Split(addr, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return c.errAt(fmt.Sprintf("host %q: %q is not an IP address (a comma-separated list is allowed)", name, addr), "egress", "hosts", name)
			}
			addrs = append(addrs, a)
		}
		r.Hosts[name] = addrs
	}
	switch {
	case e.MaxConns < 0:
		return c.errAt("max_conns must be positive", "egress", "max_conns")
	case e.MaxConns > 0:
		r.MaxConns = e.MaxConns
	}
	if e.MaxBytes != "" {
		n, err := sandbox.ParseBytes(e.MaxBytes)
		if err != nil || n <= 0 {
			return c.errAt(fmt.Sprintf("max_bytes %q: want a positive size such as 512Mi", e.MaxBytes), "egress", "max_bytes")
		}
		r.MaxBytes = n
	}
	// egress.New checks the hosts' names; a proxy that cannot start would refuse every
	// call of an allowing profile, so the config is refused instead.
	if _, err := egress.New(r); err != nil {
		return c.errAt(err.Error(), "egress")
	}
	e.resolved = r
	return nil
}

// checkNetwork validates a profile's network section.
func (c *Config) checkNetwork(name string, p *Profile) error {
	allow := p.Network.Allow
	if len(allow) == 0 {
		return nil
	}
	at := func(msg string, key ...any) error {
		return c.errAt(msg, append([]any{"profiles", name}, key...)...)
	}
	if err := egress.ParseAllow(allow); err != nil {
		return at(err.Error(), "network", "allow")
	}
	if p.Seccomp == sandbox.SeccompFiles {
		return at("network.allow needs sockets, which seccomp files refuses; use seccomp default", "network", "allow")
	}
	if p.Pids != 0 && p.Pids < sandbox.MinPidsEgress {
		return at(fmt.Sprintf("network.allow needs pids of at least %d (the egress forwarder runs beside the command)", sandbox.MinPidsEgress), "pids")
	}
	return nil
}

// egressBackend runs the egress proxy of each run whose profile allows hosts: a proxy of its
// own, on a fresh Unix socket, started before the sandbox and stopped after it, so its caps
// and its events are that run's. The events come back in Result.Egress and go to the log.
// A long-lived run (a stdio upstream's server) keeps its proxy as long as it lives, with no
// caps and no event list: each event is logged as it happens.
type egressBackend struct {
	sandbox.Backend
	dir  string // where the sockets go
	base egress.Config
	log  zerolog.Logger
	// count, if set, is told of every connection (metrics).
	count func(allowed bool)
}

func (b egressBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	if spec.Egress == nil || spec.Egress.Socket != "" {
		return b.Backend.Run(ctx, spec)
	}
	cfg := b.base
	cfg.Allow = spec.Egress.Allow
	who := spec.Labels[sandbox.LabelTool]
	if who == "" {
		who = spec.Labels[LabelUpstream]
	}
	auditID := spec.Labels[sandbox.LabelAuditID]
	if spec.Streams != nil {
		cfg.Unlisted, cfg.MaxConns, cfg.MaxBytes = true, math.MaxInt32, math.MaxInt64
	}
	cfg.OnEvent = func(ev egress.Event) {
		if b.count != nil {
			b.count(ev.Allowed)
		}
		e := b.log.Info()
		if !ev.Allowed || ev.Code != "" {
			e = b.log.Warn() // refused, or allowed and then failed (dial_failed, byte_cap)
		}
		if auditID != "" {
			e = e.Str("audit_id", auditID) // a tool's call; a server's connections have none
		}
		e.Str("event", "egress").Str("tool", who).Str("host", ev.Host).Int("port", ev.Port).
			Bool("allowed", ev.Allowed).Str("code", ev.Code).Int64("bytes_sent", ev.BytesSent).Int64("bytes_received", ev.BytesReceived).Msg(ev.Reason)
	}
	p, err := egress.New(cfg)
	if err != nil {
		return sandbox.Result{}, fmt.Errorf("egress proxy: %w", err)
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return sandbox.Result{}, fmt.Errorf("egress proxy: %w", err)
	}
	sock := filepath.Join(b.dir, strings.ToLower(rand.Text()[:16])+".sock")
	l, err := p.ListenUnix(sock)
	if err != nil {
		return sandbox.Result{}, fmt.Errorf("egress proxy: %w", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = p.Serve(l)
	}()
	spec.Egress = &sandbox.Egress{Socket: sock, Allow: slices.Clone(cfg.Allow)}
	res, err := b.Backend.Run(ctx, spec)
	p.Close()
	<-served
	os.Remove(sock)
	res.Egress = p.Events()
	return res, err
}

// egressDir is where this process's proxies put their sockets: a directory of its own under
// $AIRLOCK_STATE_DIR/egress (every serve and every call of a machine share the state
// directory), holding a lock file that stays flocked while the process lives. At start, the
// directories of processes that died (SIGKILL, a crash: their lock is free) are removed,
// without touching a live process's sockets. When the state directory's path is too long for
// a socket's name (108 bytes), the directory is a private one under the system's temporary
// directory instead. cleanup removes it.
func egressDir(stateDir string) (dir string, cleanup func(), err error) {
	root := filepath.Join(stateDir, "egress")
	if len(root)+len("/0123456789abcdef/0123456789abcdef.sock") >= 100 {
		dir, err = os.MkdirTemp("", "airlock-egress-")
		if err != nil {
			return "", nil, fmt.Errorf("egress socket directory: %w", err)
		}
		return dir, func() { os.RemoveAll(dir) }, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", nil, fmt.Errorf("egress socket directory: %w", err)
	}
	reapEgressDirs(root)
	dir, err = os.MkdirTemp(root, "")
	if err != nil {
		return "", nil, fmt.Errorf("egress socket directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = flock.Apply(lock, unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("egress socket directory: %w", err)
	}
	return dir, func() {
		os.RemoveAll(dir)
		lock.Close()
	}, nil
}

// reapEgressDirs removes the socket directories under root whose owner died: those whose lock
// file can be locked, and that did not change in the last minute (a directory that new may
// not have its lock yet).
func reapEgressDirs(root string) {
	des, _ := os.ReadDir(root)
	for _, de := range des {
		p := filepath.Join(root, de.Name())
		if !de.IsDir() {
			os.Remove(p) // a socket of an older Airlock, which kept them all here
			continue
		}
		if fi, err := de.Info(); err != nil || time.Since(fi.ModTime()) < time.Minute {
			// Possibly being created (its owner has not locked it yet): left for a later
			// start.
			continue
		}
		f, err := os.Open(filepath.Join(p, "lock"))
		if err != nil {
			continue // not Airlock's
		}
		if flock.Apply(f, unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		f.Close()
	}
}

// WithEgress returns backend wrapped so that runs whose profile lists hosts get their egress
// proxy (as a Runtime's runs do), for commands that run a config's profiles outside a Runtime
// (airlock upstreams check, airlock doctor --config). close removes the sockets' directory.
func WithEgress(backend sandbox.Backend, cfg *Config, stateDir string, log zerolog.Logger) (b sandbox.Backend, close func(), err error) {
	dir, cleanup, err := egressDir(stateDir)
	if err != nil {
		return nil, nil, err
	}
	var base egress.Config
	if cfg != nil {
		base = cfg.Egress.resolved
	}
	return egressBackend{Backend: backend, dir: dir, base: base, log: log}, cleanup, nil
}

// cacheGuardBackend stops a run that writes its test cache (a read-write mount at
// testcache.Target) until the cache's file system is nearly full, and clears that cache: the
// cache's size is measured between runs, so without this one run could fill the disk that
// holds the audit log, after which no call runs at all.
type cacheGuardBackend struct {
	sandbox.Backend
	reserve uint64 // 0: testcache.Reserve
}

func (b cacheGuardBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	i := slices.IndexFunc(spec.Mounts, func(m sandbox.Mount) bool {
		return m.Target == testcache.Target && m.Access == sandbox.ReadWrite
	})
	if i < 0 {
		return b.Backend.Run(ctx, spec)
	}
	dir := spec.Mounts[i].Source
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		reserve := b.reserve
		if reserve == 0 {
			reserve = testcache.Reserve
		}
		testcache.Guard(dir, reserve, 500*time.Millisecond, done, cancel)
	}()
	res, err := b.Backend.Run(ctx, spec)
	close(done)
	<-watched
	if errors.Is(context.Cause(ctx), testcache.ErrDiskLow) {
		_ = os.RemoveAll(filepath.Dir(dir))
		return res, fmt.Errorf("the run was stopped and its test cache cleared: %w (%d MiB must stay free on the file system of %s)",
			testcache.ErrDiskLow, testcache.Reserve>>20, dir)
	}
	return res, err
}
