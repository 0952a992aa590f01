package runtime

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/state"
	redisstate "github.com/airlock-mcp/airlock/state/redis"
)

// isRedisURL reports whether a config's state names a Redis server rather than a directory.
func isRedisURL(s string) bool {
	return strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://")
}

// OpenState opens the store a resolved config names.
func (c *Config) OpenState(ctx context.Context) (state.Store, error) {
	if isRedisURL(c.State) {
		s, err := redisstate.Open(ctx, c.State)
		if err != nil {
			// The error names the address, never the password.
			return nil, &ConfigError{File: c.File, Line: c.line("state"), Path: "state", Msg: err.Error()}
		}
		return s, nil
	}
	var opts []state.FileOption
	if c.docsDir != "" {
		opts = append(opts, state.WithDocsDir(c.docsDir))
	}
	s, err := state.OpenFile(c.State, opts...)
	if err != nil {
		return nil, &ConfigError{File: c.File, Line: c.line("state"), Path: "state", Msg: err.Error()}
	}
	return s, nil
}

// HaveGrants reports whether the state store holds a grant with a token that is still
// active, or cannot say (then HTTP asks every caller for a token: fail closed).
func (r *Runtime) HaveGrants(ctx context.Context) bool {
	cur, err := r.control.get(ctx)
	if err != nil {
		return true
	}
	now := time.Now()
	for _, g := range cur.Grants {
		if g.TokenSHA256 != "" && g.Active(now) {
			return true
		}
	}
	return false
}

// controlPoll is how often a server looks for grants revoked and kill switches set by another
// process (`airlock grant revoke`, another replica): the bound on how long a call of a revoked
// grant or a killed target may go on running when no admin socket told this server at once.
const controlPoll = 250 * time.Millisecond

// control is a server's view of the store's grants and kill switches: re-read whenever the
// store's version changes, which is asked on every request, so a revocation or a kill switch
// holds from the next request on.
type control struct {
	store state.Store
	log   zerolog.Logger

	mu  sync.Mutex
	cur state.Control
	// applied is the version whose kill switches and revocations were applied to the calls
	// in flight.
	applied string
}

func newControl(store state.Store, log zerolog.Logger) *control {
	return &control{store: store, log: log}
}

// get returns the current grants and kill switches. An error means the store cannot say, and
// the caller fails closed.
func (c *control) get(ctx context.Context) (state.Control, error) {
	v, err := c.store.Version(ctx)
	if err != nil {
		return state.Control{}, err
	}
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur.Version == v && v != "" {
		return cur, nil
	}
	next, err := c.store.Control(ctx)
	if err != nil {
		return state.Control{}, err
	}
	c.mu.Lock()
	c.cur = next
	c.mu.Unlock()
	return next, nil
}

// Stopped implements pipeline.Stopper.
func (c *control) Stopped(tool, grant, session string) (string, string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cur, err := c.get(ctx)
	if err != nil {
		// Without the store, nobody can tell whether a kill switch is on: refuse.
		return "/kill", fmt.Sprintf("kill switches cannot be read (%s: %v); no call runs until the state store answers", c.store.Describe(), err), true
	}
	for _, k := range cur.Kills {
		if k.Matches(tool, grant, session) {
			return k.Rule(), tool + ": " + k.Message(), true
		}
	}
	return "", "", false
}

// errNoGrant is the answer for a bearer token or a uid that names no grant.
var errNoGrant = errors.New("no grant matches")

// grantError is a token of a grant that may no longer be used.
type grantError struct{ name, status string }

func (e *grantError) Error() string {
	return fmt.Sprintf("grant %s is %s; ask the operator for a new one (airlock grant create)", e.name, e.status)
}

// byToken finds the grant whose token has the sha256 sum. Every grant is compared (no early
// exit), so timing does not tell which grant, if any, came close.
func (c *control) byToken(ctx context.Context, sum [32]byte) (policies.Grant, error) {
	cur, err := c.get(ctx)
	if err != nil {
		return policies.Grant{}, fmt.Errorf("grants cannot be read (%s): %w", c.store.Describe(), err)
	}
	var found *state.Grant
	for i := range cur.Grants {
		want, err := hex.DecodeString(cur.Grants[i].TokenSHA256)
		if err != nil || len(want) != len(sum) {
			continue
		}
		if subtle.ConstantTimeCompare(sum[:], want) == 1 && found == nil {
			found = &cur.Grants[i]
		}
	}
	switch {
	case found == nil:
		return policies.Grant{}, fmt.Errorf("%w the bearer token", errNoGrant)
	case !found.Active(time.Now()):
		return policies.Grant{}, &grantError{found.Name, found.Status(time.Now())}
	}
	return found.Policy(), nil
}

// byUID finds the active grant of a daemon client's uid.
func (c *control) byUID(ctx context.Context, uid uint32) (policies.Grant, error) {
	cur, err := c.get(ctx)
	if err != nil {
		return policies.Grant{}, &errStateDown{fmt.Errorf("grants cannot be read (%s): %w", c.store.Describe(), err)}
	}
	var inactive *state.Grant
	for i, g := range cur.Grants {
		if g.UID == nil || *g.UID != uid {
			continue
		}
		if g.Active(time.Now()) {
			return g.Policy(), nil
		}
		inactive = &cur.Grants[i]
	}
	if inactive != nil {
		return policies.Grant{}, &grantError{inactive.Name, inactive.Status(time.Now())}
	}
	return policies.Grant{}, fmt.Errorf("%w uid %d; the operator runs airlock grant create NAME --uid %d --no-token", errNoGrant, uid, uid)
}

// named returns the state store's grant of that name, nil when there is none; a grant that
// is revoked or expired is a *grantError. Identities that come from elsewhere (a JWT, a console
// login) are refused by it, so an operator's revocation holds for them too.
func (c *control) named(ctx context.Context, name string) (*state.Grant, error) {
	cur, err := c.get(ctx)
	if err != nil {
		return nil, &errStateDown{err}
	}
	for i := range cur.Grants {
		g := &cur.Grants[i]
		if g.Name != name {
			continue
		}
		if now := time.Now(); !g.Active(now) {
			return nil, &grantError{g.Name, g.Status(now)}
		}
		return g, nil
	}
	return nil, nil
}

// tokenSum is how a bearer token is compared: by its sha256, which is all the store keeps.
func tokenSum(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// apply stops the calls in flight that the current kill switches or revocations no longer
// allow, once per version (or again, forced). It returns how many it stopped: with force, every
// call of a stopped target still in flight, including those already stopping.
func (c *control) apply(ctx context.Context, calls *inflight, force bool) (int, error) {
	cur, err := c.get(ctx)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.applied == cur.Version && !force {
		c.mu.Unlock()
		return 0, nil
	}
	c.applied = cur.Version
	c.mu.Unlock()
	now := time.Now()
	revoked := map[string]state.Grant{}
	for _, g := range cur.Grants {
		if !g.Active(now) {
			revoked[g.Name] = g
		}
	}
	n := calls.cancelWhere(func(k callKey) error {
		for _, kill := range cur.Kills {
			if kill.Matches(k.tool, k.grant, k.session) {
				return &killedError{kill}
			}
		}
		if g, ok := revoked[k.grant]; ok {
			return &grantError{g.Name, g.Status(now)}
		}
		return nil
	})
	if n > 0 {
		c.log.Warn().Str("event", "control.stopped").Int("calls", n).Str("version", cur.Version).Msg("calls in flight stopped by a kill switch or a revoked grant")
	}
	return n, nil
}

// watch applies changes made by other processes every controlPoll until ctx ends. A store
// that does not answer is logged once per outage; calls meanwhile fail closed at stage 3.
func (c *control) watch(ctx context.Context, calls *inflight) {
	t := time.NewTicker(controlPoll)
	defer t.Stop()
	down := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := c.apply(ctx, calls, false)
		switch {
		case err != nil && !down && ctx.Err() == nil:
			down = true
			c.log.Error().Err(err).Str("event", "state.unavailable").Str("store", c.store.Describe()).Msg("state store does not answer; calls are refused until it does")
		case err == nil && down:
			down = false
			c.log.Info().Str("event", "state.available").Str("store", c.store.Describe()).Msg("state store answers again")
		}
	}
}

// killedError is the cancellation cause of a call stopped by a kill switch.
type killedError struct{ k state.Kill }

func (e *killedError) Error() string { return e.k.Message() }
