// Package redis is the state.Store that several Airlock replicas share: rate-limit counters,
// grants and kill switches in one Redis (or Valkey) database.
//
// Key layout, under a prefix ("airlock:" unless the URL's prefix= or WithPrefix says otherwise):
//
//	<p>grants                       hash: grant name -> Grant JSON
//	<p>kills                        hash: "<scope>:<name>" -> Kill JSON
//	<p>version                      integer, incremented in the transaction of every change
//	<p>c:"<counter>":"<scope>":"<subject>"
//	                                hash {start, end, used}: one rate-limit bucket, expiring
//	                                a margin after its window ends
//
// Every change to grants and kill switches is one MULTI/EXEC together with the version's
// increment, so a replica that saw a version has seen every change up to it; reservations are
// Lua scripts, so two replicas racing for the last unit never both get it.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/airlock-mcp/airlock/state"
)

// DefaultPrefix starts every key unless the URL or WithPrefix names another.
const DefaultPrefix = "airlock:"

// DefaultTimeout bounds each operation: a Redis that does not answer within it is an outage,
// and callers fail closed rather than hang a tool call.
const DefaultTimeout = 2 * time.Second

// Store is a state.Store in Redis. It is safe for concurrent use; any number of Stores (in any
// number of processes) on the same database and prefix share one state.
type Store struct {
	rdb     *goredis.Client
	where   string // "127.0.0.1:6379/0": for messages, never with credentials
	prefix  string
	tls     bool
	tlsConf *tls.Config // WithTLSConfig's, until Open uses it
	timeout time.Duration
	// margin keeps a counter bucket this long past its window's end, so a replica whose clock
	// lags by less than it still counts a late reservation against the window (see Reserve).
	margin  time.Duration
	reserve *goredis.Script
	release *goredis.Script
}

var _ state.Store = (*Store)(nil)

// Option changes how Open connects.
type Option func(*Store) error

// WithPrefix sets the key prefix (see CheckPrefix); it overrides the URL's prefix=.
func WithPrefix(p string) Option {
	return func(s *Store) error {
		p, err := CheckPrefix(p)
		s.prefix = p
		return err
	}
}

// WithTimeout bounds each operation (DefaultTimeout otherwise); it overrides the URL's timeout=.
func WithTimeout(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("redis state store: timeout %v must be positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithTLSConfig sets the TLS configuration of a rediss:// URL, for a Redis whose certificate
// a private CA signed (the system roots are used otherwise). An empty ServerName is the URL's
// host: the server's name is always checked.
func WithTLSConfig(c *tls.Config) Option {
	return func(s *Store) error {
		s.tlsConf = c
		return nil
	}
}

// prefixRE keeps prefixes to one plain segment. With exactly one ':', at its end, the first ':'
// of any key ends its prefix, so one deployment's keys can never be another's ("a:" and "a:c:"
// would otherwise share the key a:c:grants).
var prefixRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}:$`)

// CheckPrefix returns the prefix as keys use it (a missing final ':' is added), or what is
// wrong with it.
func CheckPrefix(p string) (string, error) {
	if !strings.HasSuffix(p, ":") {
		p += ":"
	}
	if !prefixRE.MatchString(p) {
		return "", fmt.Errorf("redis state store: prefix %q: use 1-64 letters, digits, '.', '_' or '-', optionally ending in ':'", p)
	}
	return p, nil
}

// Open connects to the Redis that rawURL names and checks that it answers:
//
//	redis://[user:password@]host:port/db[?prefix=p&timeout=2s]
//	rediss://…   (TLS, server name checked)
//	unix://[user:password@]/path/to/redis.sock?db=N[&prefix=p]
//
// go-redis's other query options (dial_timeout, pool_size, …) pass through. Errors name the
// address, never the password.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	o, s, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	if s.tlsConf != nil {
		// TLS asked for in code but not in the URL would be a silent downgrade to plaintext.
		if o.TLSConfig == nil {
			return nil, fmt.Errorf("state store redis %s: a TLS configuration needs a rediss:// URL", s.where)
		}
		c := s.tlsConf.Clone()
		if c.ServerName == "" {
			c.ServerName = o.TLSConfig.ServerName
		}
		o.TLSConfig, s.tlsConf = c, nil
	}
	// A command's context is its only deadline, so an outage costs s.timeout, not go-redis's
	// default 5 s reads times its retries.
	o.ContextTimeoutEnabled = true
	if o.DialTimeout == 0 {
		o.DialTimeout = s.timeout
	}
	// No retries: a Release or Reserve whose reply was lost may have run, and running it again
	// would hand back, or spend, the units twice. One failure fails the call closed instead.
	o.MaxRetries = -1
	// Two dials, not five: a Redis that refuses connections is reported as such within the
	// timeout rather than as a bare deadline.
	o.DialerRetries = 2
	// No CLIENT SETINFO on connect: Redis before 7.2 does not know it.
	o.DisableIdentity = true
	s.rdb = goredis.NewClient(o)
	s.reserve = goredis.NewScript(reserveLua)
	s.release = goredis.NewScript(releaseLua)

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.rdb.Close()
		var rerr goredis.Error
		if errors.As(err, &rerr) {
			// Redis answered: WRONGPASS, NOAUTH, a database number it does not have.
			return nil, fmt.Errorf("state store redis %s refused: %v; check the user, password and database in the state: URL", s.where, err)
		}
		return nil, fmt.Errorf("state store redis %s unavailable: %v; start Redis there or correct the state: URL (redis://[user:password@]host:port/db)", s.where, err)
	}
	return s, nil
}

// parse splits Airlock's query options (prefix, timeout) from go-redis's.
func parse(rawURL string) (*goredis.Options, *Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the whole URL, password included: report only what is wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("redis state store: invalid URL: %v; use redis://[user:password@]host:port/db", err)
	}
	s := &Store{prefix: DefaultPrefix, timeout: DefaultTimeout, margin: 5 * time.Minute}
	q := u.Query()
	if q.Has("prefix") {
		if s.prefix, err = CheckPrefix(q.Get("prefix")); err != nil {
			return nil, nil, err
		}
		q.Del("prefix")
	}
	if q.Has("timeout") {
		d, err := time.ParseDuration(q.Get("timeout"))
		if err != nil || d <= 0 {
			return nil, nil, fmt.Errorf("redis state store: timeout=%q: want a positive duration such as 2s", q.Get("timeout"))
		}
		s.timeout = d
		q.Del("timeout")
	}
	u.RawQuery = q.Encode()
	o, err := goredis.ParseURL(u.String())
	if err != nil {
		return nil, nil, fmt.Errorf("redis state store: %v; use redis://[user:password@]host:port/db, rediss://… or unix:///path?db=N", err)
	}
	s.tls = o.TLSConfig != nil
	if o.Network == "unix" {
		s.where = "unix:" + o.Addr + "?db=" + strconv.Itoa(o.DB)
	} else {
		s.where = o.Addr + "/" + strconv.Itoa(o.DB)
	}
	return o, s, nil
}

// Describe implements state.Store: "redis 127.0.0.1:6379/0", with " tls" and the prefix when
// they apply; never credentials.
func (s *Store) Describe() string {
	d := "redis " + s.where
	if s.tls {
		d += " tls"
	}
	if s.prefix != DefaultPrefix {
		d += " prefix " + s.prefix
	}
	return d
}

// Close implements state.Store.
func (s *Store) Close() error { return s.rdb.Close() }

// op bounds one operation by the store's timeout.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// fail is the error of an operation Redis did not complete: callers deny the call and show it.
func (s *Store) fail(what string, err error) error {
	var rerr goredis.Error
	if errors.As(err, &rerr) && !errors.Is(err, context.DeadlineExceeded) {
		// Redis answered, with an error (a damaged key's WRONGTYPE, NOAUTH, OOM): not an
		// outage, but the change did not happen.
		return fmt.Errorf("state store redis %s: %s: %w", s.where, what, err)
	}
	return fmt.Errorf("state store redis %s unavailable: %s: %w", s.where, what, err)
}

func (s *Store) key(name string) string { return s.prefix + name }
