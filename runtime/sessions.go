package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Defaults of the http.max_sessions* and http.session_*_timeout keys.
const (
	defaultMaxSessions          = 1024
	defaultMaxSessionsPerGrant  = 256
	defaultSessionIdleTimeout   = 24 * time.Hour
	defaultSessionUnusedTimeout = 5 * time.Minute
)

// Causes of a call cancelled by its HTTP client going away. The pipeline sees them through
// context.Cause; the backend kills the call's container when its ctx ends.
var (
	errClientGone     = errors.New("the HTTP client disconnected before the call's response was sent")
	errSessionDeleted = errors.New("the client ended its MCP session (HTTP DELETE)")
	errSessionGone    = errors.New("the call's MCP session is closed")
)

// Errors of a request naming a session Airlock does not (or no longer) hold.
var (
	errSessionNotFound = errors.New("session not found: it was ended, or closed after http.session_unused_timeout " +
		"(never called a tool) or http.session_idle_timeout without traffic; start a new session with initialize")
	errSessionGrant = errors.New("this session belongs to another grant")
)

// sessionLimits bound the streamable HTTP sessions one server holds.
type sessionLimits struct {
	maxTotal, maxPerGrant int
	// idle closes a session that made a tools/call after this long without traffic; unused
	// closes one that never did.
	idle, unused time.Duration
}

// sessionLimitError refuses a new session; it names the limit and the key that raises it.
type sessionLimitError struct {
	key   string // config key of the limit reached
	limit int
	grant string // for the per-grant limit
	l     sessionLimits
}

func (e *sessionLimitError) Error() string {
	who := "in total"
	if e.key == "http.max_sessions_per_grant" {
		who = fmt.Sprintf("for grant %q", e.grant)
	}
	return fmt.Sprintf("airlock: %d MCP sessions are already open %s, the limit (%s). A session closes when its "+
		"client ends it (HTTP DELETE), after %s without traffic if it never called a tool (http.session_unused_timeout) "+
		"and after %s otherwise (http.session_idle_timeout). Close clients you no longer use, or raise %s in Airlock's config",
		e.limit, who, e.key, e.l.unused, e.l.idle, e.key)
}

// sessionTable is Airlock's own bookkeeping of the SDK's streamable HTTP sessions. The SDK
// keeps every session until DELETE or its idle timeout, counts only POSTs as activity (so a
// client listening on a GET stream for an hour is cut off) and has no cap, so a loop of
// initialize requests grows the server without bound (25,000 of them took 404 MB). The table
// caps sessions per grant and in total, counts any request in progress (an open event stream
// included) as traffic, closes sessions that never called a tool soon, and cancels the calls
// in flight of a session that ends, so their containers are killed at once.
type sessionTable struct {
	limits sessionLimits
	now    func() time.Time

	mu     sync.Mutex
	byID   map[string]*httpSession
	grants map[string]int // sessions and reservations per grant
	total  int            // sessions and reservations
}

// httpSession is one SDK session as the table sees it.
type httpSession struct {
	id, grant string
	close     func() // closes the SDK session (its calls must have been cancelled first)
	last      time.Time
	open      int  // HTTP requests in progress (a GET event stream stays open for long)
	used      bool // made a tools/call
	calls     map[*sessionCall]struct{}
}

// sessionCall is one tools/call in flight.
type sessionCall struct{ cancel context.CancelCauseFunc }

// reservation holds a slot for a session being initialized, so concurrent initialize
// requests cannot overshoot the caps. It is either claimed by add or released.
type reservation struct {
	t     *sessionTable
	grant string
	done  bool // claimed or released; guarded by t.mu
}

func newSessionTable(l sessionLimits, now func() time.Time) *sessionTable {
	return &sessionTable{limits: l, now: now, byID: map[string]*httpSession{}, grants: map[string]int{}}
}

// reserve holds a slot for a new session of grant, or says which limit is reached. When
// full, sessions already past their expiry are closed first.
func (t *sessionTable) reserve(grant string) (*reservation, error) {
	t.mu.Lock()
	var expired []func()
	if t.full(grant) != nil {
		expired = t.collectExpired(t.now())
	}
	err := t.full(grant)
	var r *reservation
	if err == nil {
		t.total++
		t.grants[grant]++
		r = &reservation{t: t, grant: grant}
	}
	t.mu.Unlock()
	for _, c := range expired {
		c()
	}
	return r, err
}

func (t *sessionTable) full(grant string) error {
	if t.total >= t.limits.maxTotal {
		return &sessionLimitError{key: "http.max_sessions", limit: t.limits.maxTotal, l: t.limits}
	}
	if t.grants[grant] >= t.limits.maxPerGrant {
		return &sessionLimitError{key: "http.max_sessions_per_grant", limit: t.limits.maxPerGrant, grant: grant, l: t.limits}
	}
	return nil
}

// release gives the slot back unless add claimed it.
func (r *reservation) release() {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if !r.done {
		r.done = true
		t.uncount(r.grant)
	}
}

func (t *sessionTable) uncount(grant string) {
	t.total--
	if t.grants[grant]--; t.grants[grant] <= 0 {
		delete(t.grants, grant)
	}
}

// add records an initialized session, claiming r's slot (nil r, or one already released,
// takes a new slot: the session exists whatever the count says).
func (t *sessionTable) add(id, grant string, close func(), r *reservation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[id]; ok {
		return // initialize again on a live session
	}
	if r != nil && !r.done && r.grant == grant {
		r.done = true
	} else {
		t.total++
		t.grants[grant]++
	}
	t.byID[id] = &httpSession{id: id, grant: grant, close: close, last: t.now()}
}

// begin marks an HTTP request of session id (made as grant) in progress; end marks it done.
func (t *sessionTable) begin(id, grant string) (end func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byID[id]
	switch {
	case s == nil:
		return nil, errSessionNotFound
	case s.grant != grant:
		// The SDK would hand any caller who knows a session id that session's event stream
		// (its progress and approval prompts) and let it DELETE the session, killing the
		// calls in flight. Session ids travel in headers and logs; the grant does not.
		return nil, errSessionGrant
	}
	s.open++
	s.last = t.now()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		s.open--
		s.last = t.now()
	}, nil
}

// beginCall registers a tools/call of session id, cancelled by cancel when the session ends.
// ok is false when the session is already gone; the caller must then cancel the call itself.
func (t *sessionTable) beginCall(id string, cancel context.CancelCauseFunc) (done func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byID[id]
	if s == nil {
		return func() {}, false
	}
	c := &sessionCall{cancel: cancel}
	if s.calls == nil {
		s.calls = map[*sessionCall]struct{}{}
	}
	s.calls[c] = struct{}{}
	s.used = true
	s.last = t.now()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(s.calls, c)
		s.last = t.now()
	}, true
}

// end forgets session id and cancels its calls in flight with cause. It does not close the SDK
// session; the caller does (DELETE: the SDK itself). It reports whether the session was known.
func (t *sessionTable) end(id string, cause error) bool {
	t.mu.Lock()
	s := t.byID[id]
	if s != nil {
		t.removeLocked(s)
	}
	t.mu.Unlock()
	if s == nil {
		return false
	}
	for c := range s.calls {
		c.cancel(cause)
	}
	return true
}

func (t *sessionTable) removeLocked(s *httpSession) {
	delete(t.byID, s.id)
	t.uncount(s.grant)
}

// collectExpired forgets the sessions idle past their timeout and returns their closers.
// A session with a request in progress (an open event stream) or a call in flight is never
// idle.
func (t *sessionTable) collectExpired(now time.Time) []func() {
	var out []func()
	for _, s := range t.byID {
		if s.open > 0 || len(s.calls) > 0 {
			continue
		}
		limit := t.limits.idle
		if !s.used {
			limit = t.limits.unused
		}
		if now.Sub(s.last) >= limit {
			t.removeLocked(s)
			if s.close != nil {
				out = append(out, s.close)
			}
		}
	}
	return out
}

// expire closes the sessions idle past their timeout at now and returns how many.
func (t *sessionTable) expire(now time.Time) int {
	t.mu.Lock()
	closers := t.collectExpired(now)
	t.mu.Unlock()
	for _, c := range closers {
		c()
	}
	return len(closers)
}

// run expires sessions until ctx ends, checking ten times per shortest timeout (between once
// a second and once a minute).
func (t *sessionTable) run(ctx context.Context) {
	every := min(t.limits.idle, t.limits.unused) / 10
	every = max(time.Second, min(every, time.Minute))
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.expire(t.now())
		}
	}
}

// count is the number of sessions and reservations held (total, and of grant).
func (t *sessionTable) count(grant string) (total, ofGrant int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.grants[grant]
}
