package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one proxy's policy. The zero value allows nothing.
type Config struct {
	// Allow lists the reachable hosts: "host" exactly or "*.suffix" (any subdomain, not the
	// bare suffix), each with an optional ":port"; without a port, 80 and 443 only. Names
	// compare case-insensitively, without a trailing dot, in IDNA ASCII form. IP addresses
	// are refused here and in requests.
	Allow []string
	// AllowPrivate lists private or special-purpose ranges that may be reached anyway (an
	// internal registry, a test server). Default none.
	AllowPrivate []netip.Prefix
	// Hosts maps names to addresses used instead of DNS. A name here must still be allowed,
	// and its addresses are still checked against AllowPrivate.
	Hosts map[string][]netip.Addr
	// MaxConns caps the connections this proxy accepts over its life (so also at once),
	// refused ones included. 0 means 64.
	MaxConns int
	// MaxBytes caps the bytes moved to and from destinations, both ways and all
	// connections together. 0 means 1 GiB.
	MaxBytes int64
	// Resolver looks names up; nil means net.DefaultResolver.
	Resolver func(ctx context.Context, host string) ([]netip.Addr, error)
	// DialTimeout bounds the lookup and the connection to a destination. 0 means 10s.
	DialTimeout time.Duration
	// OnEvent, if set, receives each Event as it is recorded, in the order of Events. Calls
	// are serialised; a slow callback holds up the next connection's end, not the traffic.
	OnEvent func(Event)
	// Unlisted keeps no event list (Events returns none; OnEvent still hears each one): for
	// a proxy that lives as long as a server does, whose events are logged as they happen.
	Unlisted bool
}

// Event is one connection to the proxy: an allowed or refused destination.
type Event struct {
	Host string // canonical host name, or the client's text (quoted) if it was not one
	Port int
	Addr string // the resolved ip:port connected to; "" if none
	Kind string // "connect" or "http"
	// Allowed says the destination passed the policy: allowlist, addresses and, for
	// CONNECT, the TLS server name. An allowed connection can still end with a Code
	// (dial_failed, byte_cap, upstream_error).
	Allowed bool
	// Code is "" for a connection that ended normally, or a stable reason: not_allowed,
	// ip_literal, private_address, resolve_failed, dial_failed, sni_mismatch, no_sni,
	// not_tls, ech, bad_hello, host_mismatch, conn_cap, byte_cap, bad_request,
	// upstream_error, closed.
	Code string
	// Reason says, for a person, what happened and what the operator can change.
	Reason                   string
	BytesSent, BytesReceived int64 // to and from the destination
	Start, End               time.Time
}

// Stats are a proxy's totals.
type Stats struct {
	Connections int64 // accepted
	Bytes       int64 // moved to and from destinations
	// Unrecorded counts connections beyond twice MaxConns: closed at once, without an answer
	// or an Event, so a flood cannot grow the event list without bound.
	Unrecorded int64
}

const (
	defaultMaxConns    = 64
	defaultMaxBytes    = 1 << 30
	defaultDialTimeout = 10 * time.Second
	headTimeout        = 10 * time.Second // the request head, and the ClientHello
	overCapTimeout     = 2 * time.Second  // the request head of a connection over the cap
	writeTimeout       = 10 * time.Second // a refusal or an interim response to the client
	maxHeadBytes       = 64 << 10
)

// Proxy is one tool call's egress proxy.
type Proxy struct {
	cfg          Config
	allow        allowlist
	hosts        map[string][]netip.Addr
	allowPrivate []netip.Prefix
	budget       budget
	ctx          context.Context // cancelled by Close
	cancel       context.CancelFunc

	accepted   atomic.Int64
	unrecorded atomic.Int64

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	events    []Event
	wg        sync.WaitGroup

	emitMu sync.Mutex // orders events and OnEvent calls
}

// New checks cfg and returns a proxy ready to Serve.
func New(cfg Config) (*Proxy, error) {
	allow, err := compileAllow(cfg.Allow)
	if err != nil {
		return nil, fmt.Errorf("egress: network.allow: %w", err)
	}
	if cfg.MaxConns < 0 || cfg.MaxBytes < 0 || cfg.DialTimeout < 0 {
		return nil, errors.New("egress: MaxConns, MaxBytes and DialTimeout must not be negative (0 means the default)")
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = defaultMaxBytes
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	p := &Proxy{
		cfg:       cfg,
		allow:     allow,
		hosts:     map[string][]netip.Addr{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}
	p.budget.max = cfg.MaxBytes
	for _, pre := range cfg.AllowPrivate {
		if !pre.IsValid() {
			return nil, fmt.Errorf("egress: allow_private: %q is not a valid CIDR prefix", pre)
		}
		p.allowPrivate = append(p.allowPrivate, pre.Masked())
	}
	var errs []error
	for name, addrs := range cfg.Hosts {
		n, err := canonicalHost(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("egress: hosts: %q: a key must be a host name (%v)", name, err))
			continue
		}
		if len(addrs) == 0 {
			errs = append(errs, fmt.Errorf("egress: hosts: %q has no addresses; give at least one or remove it", name))
		}
		for _, a := range addrs {
			if !a.IsValid() || a.Zone() != "" {
				errs = append(errs, fmt.Errorf("egress: hosts: %q: %q is not a plain IP address", name, a))
			}
		}
		p.hosts[n] = append(p.hosts[n], addrs...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// ListenUnix creates the Unix socket a sandbox's forwarder connects to, in an existing
// directory, with mode 0666 so the sandbox user (uid 65534) can connect. The directory's own
// mode decides who can reach the socket: give each call its own directory. Close closes the
// listener, which removes the socket file.
func (p *Proxy) ListenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("egress socket %s: directory %s does not exist; create it first (uid 65534 must be able to search it)", path, dir)
	}
	if len(path) >= 108 {
		return nil, fmt.Errorf("egress socket %s: the path is %d bytes and Unix sockets allow 107; use a shorter directory", path, len(path))
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("egress socket %s already exists; remove it if it is left from an earlier run, or choose another path", path)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("egress socket %s: %w", path, err)
	}
	// The socket is created with the process umask; connecting needs write permission on
	// it, so widen it for the sandbox user.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("egress socket %s: %w", path, err)
	}
	if !p.addListener(l) {
		l.Close()
		return nil, errors.New("egress: the proxy is closed")
	}
	return l, nil
}

// Serve accepts connections on l until Close (then it returns nil) or until l fails.
func (p *Proxy) Serve(l net.Listener) error {
	if !p.addListener(l) {
		l.Close()
		return nil
	}
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if p.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("egress: listener %s closed: %w", l.Addr(), err)
			}
			// Out of descriptors and the like: wait and retry, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(delay):
			case <-p.ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		n := p.accepted.Add(1)
		max := int64(p.cfg.MaxConns)
		if n > 2*max {
			p.unrecorded.Add(1)
			c.Close()
			continue
		}
		if !p.track(c, true) {
			c.Close()
			return nil
		}
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.handle(c, n > max)
		}()
	}
}

// Close stops every listener, cuts every connection and returns when all handlers are done.
// Events are complete once Close returns. Close may be called more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.cancel()
		for l := range p.listeners {
			l.Close()
		}
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// Events returns the recorded events in order.
func (p *Proxy) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Stats returns the proxy's totals so far.
func (p *Proxy) Stats() Stats {
	return Stats{Connections: p.accepted.Load(), Bytes: p.budget.used.Load(), Unrecorded: p.unrecorded.Load()}
}

func (p *Proxy) emit(ev Event) {
	p.emitMu.Lock()
	defer p.emitMu.Unlock()
	if !p.cfg.Unlisted {
		p.mu.Lock()
		p.events = append(p.events, ev)
		p.mu.Unlock()
	}
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(ev)
	}
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Proxy) addListener(l net.Listener) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.listeners[l] = struct{}{}
	return true
}

// track registers a connection so Close can cut it; handler also counts it in the wait
// group. Both happen under mu so no handler starts after Close has begun waiting.
func (p *Proxy) track(c net.Conn, handler bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	if handler {
		p.wg.Add(1)
	}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}
