package runtime

import (
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
)

// Session history: what each MCP session's calls did, for the policy's session.* paths
// (policies/session.go). An untrusted tool that ran taints its session, label_if rules label
// it, and the calls are counted, so a policy can judge a call by what came before it: a write
// after a web page, a fetch after a secret was read.

// maxHistoryNames bounds each list a session keeps (tools, tainted_by, labels). Names come
// from the config and the policy, so real sessions stay far below it; the bound is for a
// gateway whose upstreams list thousands of tools.
const maxHistoryNames = 256

// historyFull is put in tainted_by when a list reached maxHistoryNames. The session is then
// tainted for good: a history that can no longer say everything that ran must not look clean,
// and a chain rule testing session.tools could be stepped around by calling 256 other tools
// first. It is no tool name (they have no ':').
const historyFull = "airlock:history-full"

// sessionHistories holds the history of every MCP session that made a call. The zero value is
// ready to use. Histories live as long as their session: each is dropped when its session
// ends (stdio: the connection; HTTP: DELETE, the idle timeouts, or shutdown), so their number
// is bounded by the sessions the HTTP session table admits.
type sessionHistories struct {
	mu   sync.Mutex
	byID map[string]*history
	// now is the clock of the sessions' ages; nil means time.Now (tests replace it).
	now func() time.Time
}

// history is one session's.
type history struct {
	mu        sync.Mutex
	start     time.Time
	calls     int64
	tools     []string
	labels    []string
	taintedBy []string
	full      bool
}

func (s *sessionHistories) clock() time.Time {
	s.mu.Lock()
	now := s.now
	s.mu.Unlock()
	if now == nil {
		return time.Now()
	}
	return now()
}

// of returns the history of session id, creating it on the session's first call. ss is the
// MCP session: its end drops the history (a goroutine owned by the session waits for it). A
// call without an MCP session or an id (the CLI, Runtime.Run) gets a history of its own,
// which is what a one-shot call is.
func (s *sessionHistories) of(id string, ss *mcp.ServerSession) *history {
	if id == "" || ss == nil {
		return &history{start: s.clock()}
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.byID[id]; ok {
		return h
	}
	if s.byID == nil {
		s.byID = map[string]*history{}
	}
	h := &history{start: now}
	s.byID[id] = h
	// A call that arrives after its session ended creates a history the goroutine drops at
	// once: ss.Wait has already returned.
	go func() {
		ss.Wait()
		s.drop(id, h)
	}()
	return h
}

// drop forgets h if it is still session id's.
func (s *sessionHistories) drop(id string, h *history) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID[id] == h {
		delete(s.byID, id)
	}
}

// count is how many sessions have a history.
func (s *sessionHistories) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// stateLocked is the history as the policy sees it at now (h.mu held). The lists only ever grow by append under
// h.mu and their elements are never rewritten, so a snapshot can share them, capped at their
// current length: later appends land beyond what the snapshot can see.
func (h *history) stateLocked(now time.Time) policies.SessionState {
	return policies.SessionState{
		Tainted:   len(h.taintedBy) > 0,
		TaintedBy: h.taintedBy[:len(h.taintedBy):len(h.taintedBy)],
		Tools:     h.tools[:len(h.tools):len(h.tools)],
		Labels:    h.labels[:len(h.labels):len(h.labels)],
		Calls:     h.calls,
		Age:       max(0, now.Sub(h.start)),
	}
}

// begin counts a call and returns the state before it. Every call counts, denied ones too:
// session.calls and max_calls bound what a session may send, and counting on arrival keeps
// the count exact when calls run concurrently.
func (h *history) begin(now time.Time) policies.SessionState {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.stateLocked(now)
	h.calls++
	return st
}

// peek is the state a call arriving now would see, without counting it.
func (h *history) peek(now time.Time) policies.SessionState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stateLocked(now)
}

// executed records a call whose tool ran.
func (h *history) executed(tool string, untrusted bool, labels []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.add(&h.tools, tool)
	if untrusted {
		h.add(&h.taintedBy, tool)
	}
	for _, l := range labels {
		h.add(&h.labels, l)
	}
}

// add appends name to list unless it is there already. At the cap the name is dropped and the
// session is tainted by historyFull instead (fail closed), once.
func (h *history) add(list *[]string, name string) {
	for _, n := range *list {
		if n == name {
			return
		}
	}
	if len(*list) < maxHistoryNames {
		*list = append(*list, name)
		return
	}
	if !h.full {
		h.full = true
		h.taintedBy = append(h.taintedBy, historyFull)
	}
}

// historyCall is a call's view of its session's history (pipeline.SessionHistory): the state
// taken when it arrived, and the tool and trust to record when it runs.
type historyCall struct {
	h         *history
	state     policies.SessionState
	tool      string
	untrusted bool
}

func (c *historyCall) State() policies.SessionState { return c.state }

func (c *historyCall) Executed(labels []string) { c.h.executed(c.tool, c.untrusted, labels) }

// bindHistory counts call in h (a history of its own when nil) and returns its view for the
// pipeline.
func (r *Runtime) bindHistory(h *history, call pipeline.Call) pipeline.SessionHistory {
	now := r.histories.clock()
	if h == nil {
		h = &history{start: now}
	}
	tool := call.Tool
	if t, ok := r.byName[tool]; ok {
		tool = t.Name() // the registry's string, shared by every session that records it
	}
	return &historyCall{h: h, state: h.begin(now), tool: tool, untrusted: r.untrustedCall(call)}
}

// sessionState is the state a call of session id arriving now would be judged against (for
// deciding, before the call runs, whether it will need an approval).
func (r *Runtime) sessionState(id string, ss *mcp.ServerSession) policies.SessionState {
	return r.histories.of(id, ss).peek(r.histories.clock())
}
