package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/egress"
	"github.com/airlock-mcp/airlock/sandbox"
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

// egressDir is where the proxies' sockets go: under the state directory, or, when that path
// is too long for a Unix socket's name (108 bytes), a private directory under the system's
// temporary directory.
func egressDir(stateDir string) (dir string, cleanup func(), err error) {
	dir = filepath.Join(stateDir, "egress")
	if len(dir)+len("/0123456789abcdef.sock") < 100 {
		reapSockets(dir)
		return dir, func() {}, nil
	}
	dir, err = os.MkdirTemp("", "airlock-egress-")
	if err != nil {
		return "", nil, fmt.Errorf("egress socket directory: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// reapSockets removes the sockets an Airlock that died (SIGKILL, a crash) left in dir: those
// nothing listens on any more. Other live processes share the directory (every serve and
// call), so a socket that still answers is theirs and stays.
func reapSockets(dir string) {
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	for _, s := range socks {
		c, err := net.DialTimeout("unix", s, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(s)
		}
	}
}
