package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/state"
	"github.com/airlock-mcp/airlock/upstream"
	"github.com/airlock-mcp/airlock/upstream/pins"
)

// The gateway: upstream MCP servers' tools served as Airlock's own (docs/gateway.md).
//
// Each upstream has one catalog session, opened lazily by the first tools/list or tools/call
// that needs it, which lists the tools and runs them through the pins (pins.Store.Check):
// only allowed tools are listed, with cleaned descriptions and schemas; withheld ones are
// remembered so that a call to one is denied with its pin verdict. Calls go through a session
// of their own per Airlock client session (opened at that session's first call, closed when
// it ends): an upstream's session state (subscriptions, logging level, whatever a stateful
// server keeps per session) is never shared between two agents. notifications/tools/
// list_changed from the upstream re-runs the catalog, and the SDK tells Airlock's clients
// (tools.listChanged).

// catalogTimeout bounds connecting to an upstream and listing its tools.
const catalogTimeout = 15 * time.Second

// catalogRetry is how long a failed catalog waits before the next tools/list tries again.
const catalogRetry = 5 * time.Second

// gateway holds the upstreams of one Runtime.
type gateway struct {
	log      zerolog.Logger
	pipe     *pipeline.Pipeline
	store    *pins.Store
	ups      []*upstreamState // sorted by name
	reserved map[string]bool  // names of Airlock's own tools

	mu      sync.Mutex
	tools   map[string]*remoteTool // exposed name -> tool (allowed or withheld)
	servers map[*mcp.Server]*attached

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// callMeta gives the _meta entries of each tools/call sent upstream; nil for none.
	callMeta func(context.Context) map[string]string
}

// attached is an MCP server the gateway lists upstream tools on.
type attached struct {
	visible func(name string) bool
	listed  []string
}

type upstreamState struct {
	g       *gateway
	name    string
	prefix  string
	mode    pins.Mode
	timeout time.Duration
	secrets []string
	remote  *upstream.Server
	changed chan *upstream.Session // list_changed arrived, on this session (buffered 1)
	perCall bool                   // a stdio server per call (lifecycle: call)
	idle    time.Duration          // a stdio server's session ends after this long without a call
	// untrusted: what its tools return taints the session (trust: untrusted).
	untrusted bool

	mu       sync.Mutex
	loaded   bool
	retryAt  time.Time
	pinned   string // the pin file's stamp after the last check (see pinStamp)
	catalog  *upstream.Session
	sessions map[string]*lazySession // Airlock session id -> call session
	// listed is, for each open call session, what its own server lists: tool name ->
	// definition hash. A call is sent only if the hash is the one the pins allow.
	listed map[*upstream.Session]map[string]string
}

// lazySession is a call session being opened or open.
type lazySession struct {
	once sync.Once
	s    *upstream.Session
	err  error

	mu       sync.Mutex
	open     bool      // s is set and usable
	inflight int       // calls using it now
	lastUsed time.Time // when the last call ended
}

// session is s once it is open, or nil.
func (ls *lazySession) session() *upstream.Session {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.open {
		return nil
	}
	return ls.s
}

// acquire counts a call on the open session; false if it is not open (any more).
func (ls *lazySession) acquire() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.open {
		return false
	}
	ls.inflight++
	return true
}

// release ends a call acquire counted.
func (ls *lazySession) release() {
	ls.mu.Lock()
	ls.inflight--
	ls.lastUsed = time.Now()
	ls.mu.Unlock()
}

// retire marks the session closed for new calls, if idle is 0 or no call used it for idle.
func (ls *lazySession) retire(idle time.Duration) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.open || (idle > 0 && (ls.inflight > 0 || time.Since(ls.lastUsed) < idle)) {
		return false
	}
	ls.open = false
	return true
}

// remoteTool is one upstream tool as the gateway serves it.
type remoteTool struct {
	up       *upstreamState
	exposed  string
	name     string // the upstream's name
	def      *mcp.Tool
	schema   *pipeline.Schema
	rule     string // withheld: its rule pointer
	withheld string // withheld: the message a call is denied with
	verdict  pins.Verdict
}

// newGateway builds the upstreams of cfg; it connects to none of them and starts no server.
// backend runs the stdio upstreams' servers (nil: a config with one is refused); the pins are
// kept in docs, the runtime's state store, so every process sharing it sees one set of pins.
// callMeta, if not nil, gives the _meta entries of each tools/call sent upstream (the trace
// context).
func newGateway(cfg *Config, pipe *pipeline.Pipeline, backend sandbox.Backend, docs state.Docs, reserved map[string]bool, log zerolog.Logger,
	callMeta func(context.Context) map[string]string) (*gateway, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, nil
	}
	store := pins.NewStore(docs)
	ctx, cancel := context.WithCancel(context.Background())
	g := &gateway{log: log, pipe: pipe, store: store, reserved: reserved, tools: map[string]*remoteTool{},
		servers: map[*mcp.Server]*attached{}, ctx: ctx, cancel: cancel, callMeta: callMeta}
	for _, name := range slices.Sorted(maps.Keys(cfg.Upstreams)) {
		st, err := g.newUpstream(cfg, name, backend)
		if err != nil {
			cancel()
			return nil, err
		}
		g.ups = append(g.ups, st)
	}
	for _, u := range g.ups {
		g.wg.Add(2)
		go u.watch()
		go u.reapIdle()
	}
	return g, nil
}

// newUpstream builds one upstream: its credentials or environment resolved, its client, and
// for a stdio server its launcher.
func (g *gateway) newUpstream(cfg *Config, name string, backend sandbox.Backend) (*upstreamState, error) {
	u := cfg.Upstreams[name]
	dir := ""
	if cfg.File != "" {
		dir = filepath.Dir(cfg.File)
	}
	resolve := func(key string, srcs map[string]SecretSource) (map[string]string, []string, error) {
		vals := map[string]string{}
		var secrets []string
		for k, src := range srcs {
			v, err := src.resolve(dir)
			if err != nil {
				return nil, nil, cfg.errAt(err.Error(), "upstreams", name, key, k)
			}
			vals[k] = v
			if src.secret() {
				secrets = append(secrets, v)
				if src.Prefix != "" && len(v)-len(src.Prefix) >= 8 {
					secrets = append(secrets, v[len(src.Prefix):])
				}
			}
		}
		return vals, secrets, nil
	}
	headers, secrets, err := resolve("headers", u.Headers)
	if err != nil {
		return nil, err
	}
	env, envSecrets, err := resolve("env", u.Env)
	if err != nil {
		return nil, err
	}
	secrets = append(secrets, envSecrets...)
	mode, _ := pins.ParseMode(u.Pins)
	st := &upstreamState{g: g, name: name, prefix: u.prefix(name), mode: mode, timeout: time.Duration(u.Timeout),
		secrets: secrets, changed: make(chan *upstream.Session, 1), sessions: map[string]*lazySession{},
		untrusted: trustSetting(u.Trust, false)}
	if st.timeout <= 0 {
		st.timeout = DefaultUpstreamTimeout
	}
	opts := upstream.Options{Name: name, URL: u.URL, Headers: headers, Version: Version, CallMeta: g.callMeta,
		OnToolsChanged: func(on *upstream.Session) {
			select {
			case st.changed <- on:
			default: // a re-listing is pending already
			}
		}}
	if u.URL != "" {
		if st.remote, err = upstream.NewRemote(opts); err != nil {
			return nil, cfg.errAt(err.Error(), "upstreams", name, "url")
		}
		return st, nil
	}
	if backend == nil {
		return nil, cfg.errAt(errNoBackend.Error(), "upstreams", name, "command")
	}
	l, err := newStdioLauncher(cfg, name, u, env, secrets, backend, g.log)
	if err != nil {
		return nil, err
	}
	opts.Launch = l.launch
	st.perCall = u.Lifecycle == LifecycleCall
	st.idle = time.Duration(u.IdleTimeout)
	if st.idle <= 0 {
		st.idle = DefaultUpstreamIdle
	}
	if st.remote, err = upstream.NewStdio(opts); err != nil {
		return nil, cfg.errAt(err.Error(), "upstreams", name, "command")
	}
	return st, nil
}

// close ends every upstream session and stops the watchers.
func (g *gateway) close() {
	if g == nil {
		return
	}
	g.cancel()
	g.wg.Wait()
	// In parallel: a stdio server gets a grace period to exit on end-of-file, and shutdown
	// must not add those up.
	var wg sync.WaitGroup
	closeSession := func(s *upstream.Session) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Close()
		}()
	}
	for _, u := range g.ups {
		u.mu.Lock()
		cat, sessions := u.catalog, u.sessions
		u.catalog, u.sessions = nil, nil
		u.mu.Unlock()
		if cat != nil {
			closeSession(cat)
		}
		for _, ls := range sessions {
			if s := ls.session(); s != nil {
				closeSession(s)
			}
		}
	}
	wg.Wait()
}

// watch re-reads the catalog whenever the upstream says its tools changed.
func (u *upstreamState) watch() {
	defer u.g.wg.Done()
	for {
		select {
		case <-u.g.ctx.Done():
			return
		case on := <-u.changed:
			var via *upstream.Session
			if u.remote.Stdio() {
				// Each stdio session has a server of its own: the one that changed is
				// listed again on its own session, and one that ended has nothing left to
				// list (starting a server to re-list would start one per notification).
				// A session not offered elicitation may see fewer tools than the catalog
				// (servers list asking tools only to clients that can answer): not a change.
				if on == nil || !on.Open() || !on.OffersElicitation() {
					continue
				}
				via = on
			}
			ctx, cancel := context.WithTimeout(u.g.ctx, catalogTimeout)
			if _, err := u.load(ctx, via); err != nil && u.g.ctx.Err() == nil {
				u.g.log.Warn().Str("event", "upstream.list_failed").Str("upstream", u.name).Err(err).Msg("re-listing tools after list_changed failed")
			}
			cancel()
		}
	}
}

// ensure loads the catalog of every upstream not loaded yet (or whose last attempt failed
// more than catalogRetry ago), in parallel, bounded by catalogTimeout.
func (g *gateway) ensure(ctx context.Context) {
	if g == nil {
		return
	}
	var wg sync.WaitGroup
	for _, u := range g.ups {
		stamp := u.pinStamp(ctx)
		u.mu.Lock()
		// Not loaded yet, or the pin file changed since the last check (an operator ran
		// airlock pins approve or reset): list and check again.
		need := (!u.loaded && time.Now().After(u.retryAt)) || (u.loaded && stamp != u.pinned)
		u.mu.Unlock()
		if !need {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, catalogTimeout)
			defer cancel()
			if err := u.refresh(cctx); err != nil {
				u.g.log.Warn().Str("event", "upstream.unavailable").Str("upstream", u.name).Err(err).Msg("upstream's tools are not listed until it answers")
			}
		}()
	}
	wg.Wait()
}

// refresh lists the upstream's tools on its catalog session, checks them against the pins and
// publishes the result.
func (u *upstreamState) refresh(ctx context.Context) error {
	_, err := u.load(ctx, nil)
	return err
}

// load is refresh, returning every tool listed (allowed or withheld). via, if not nil, is the
// open session to list on (a stdio server's own).
func (u *upstreamState) load(ctx context.Context, via *upstream.Session) ([]*remoteTool, error) {
	u.mu.Lock()
	cat := u.catalog
	u.mu.Unlock()
	var err error
	if via != nil {
		cat = via
	}
	if cat == nil {
		// The catalog offers elicitation (answering none): servers that list their
		// asking tools only to clients that can answer (server-everything does) must show
		// them here, where they are pinned.
		cat, err = u.remote.Connect(ctx, catalogPeer{})
		if err != nil {
			u.failed()
			return nil, err
		}
		if u.remote.Stdio() {
			// A stdio server is started for the listing only: no container is kept for
			// the catalog. Its list_changed arrives on the sessions of the calls.
			defer cat.Close()
		} else {
			u.mu.Lock()
			u.catalog = cat
			u.mu.Unlock()
			// Owned by the catalog session: when the upstream goes away (restarted, say),
			// the next tools/list connects again and re-checks what it then lists.
			go func() {
				cat.Wait()
				u.invalidate(cat)
			}()
		}
	}
	list, err := cat.Tools(ctx)
	if err != nil {
		u.mu.Lock()
		if u.catalog == cat {
			u.catalog = nil
		}
		u.mu.Unlock()
		cat.Close()
		u.failed()
		return nil, err
	}
	tools, err := u.check(ctx, list, false)
	if via != nil {
		u.remember(via, tools)
	}
	stamp := u.pinStamp(ctx)
	if err != nil && !pins.IsCorrupt(err) {
		// The store did not answer: every tool is withheld until a check gets through.
		stamp = stampUnavailable
	}
	u.mu.Lock()
	u.loaded, u.pinned = true, stamp
	u.mu.Unlock()
	u.g.publish(u, tools)
	return tools, nil
}

// stampUnavailable is pinStamp when the store does not answer: it equals no stamp of a file,
// so once the store answers again the next tools/list checks the tools again.
const stampUnavailable = "unavailable"

// pinStamp changes whenever the upstream's pin file does ("" when it has none).
func (u *upstreamState) pinStamp(ctx context.Context) string {
	stamp, err := u.g.store.Stamp(ctx, u.name)
	if err != nil {
		return stampUnavailable
	}
	return stamp
}

// invalidate forgets the catalog session cat (if it is still the current one), so that the
// next tools/list or tools/call lists and checks the tools again.
func (u *upstreamState) invalidate(cat *upstream.Session) {
	u.mu.Lock()
	if cat == nil || u.catalog == cat {
		if cat == nil {
			cat = u.catalog
		}
		u.catalog, u.loaded, u.retryAt = nil, false, time.Time{}
	} else {
		cat = nil
	}
	u.mu.Unlock()
	if cat != nil {
		cat.Close()
	}
}

func (u *upstreamState) failed() {
	u.mu.Lock()
	u.retryAt = time.Now().Add(catalogRetry)
	u.mu.Unlock()
}

// check runs the listed tools through the pins and the naming rules, recording every decision
// that is not "matches its pin" in the audit log.
// partial: the list may leave tools out (see pins.Store.CheckListed). The error is the pins'
// (logged here): with one, every tool is withheld.
func (u *upstreamState) check(ctx context.Context, list []*mcp.Tool, partial bool) ([]*remoteTool, error) {
	defs := make([]pins.Definition, 0, len(list))
	for _, t := range list {
		d, err := pins.FromTool(t)
		if err != nil {
			// Pinned as it is: Check marks a definition it cannot canonicalise Invalid.
			u.g.log.Warn().Str("event", "upstream.tool_invalid").Str("upstream", u.name).Err(err).Msg("")
		}
		defs = append(defs, d)
	}
	check := u.g.store.Check
	if partial {
		check = u.g.store.CheckListed
	}
	vs, err := check(ctx, u.name, u.mode, defs)
	if err != nil {
		u.g.log.Error().Str("event", "pins.error").Str("upstream", u.name).Err(err).Msg("pins could not be checked; every tool of the upstream is withheld")
	}
	var out []*remoteTool
	for i, t := range list {
		v, _ := vs.Tool(t.Name)
		if i < len(vs.Tools) && vs.Tools[i].Tool == t.Name {
			v = vs.Tools[i]
		}
		rt := &remoteTool{up: u, exposed: ExposedName(u.prefix, t.Name), name: t.Name, verdict: v}
		if v.Decision != pins.Pinned && v.Decision != pins.Unchecked {
			u.g.record(rt, "pin_"+string(v.Decision), pinRule(u.name, t.Name), pinMessage(v))
		}
		if !v.Allowed {
			rt.rule, rt.withheld = pinRule(u.name, t.Name), v.Message
			if rt.withheld == "" {
				rt.withheld = fmt.Sprintf("tool %q of upstream %q is withheld by its pin (%s)", t.Name, u.name, v.Decision)
			}
		} else if why := rt.prepare(t); why != "" {
			rt.rule, rt.withheld = "/upstreams/"+u.name+"/tools/"+t.Name, why
			u.g.record(rt, "tool_refused", rt.rule, why)
		}
		out = append(out, rt)
	}
	for _, v := range vs.Removed {
		u.g.record(&remoteTool{up: u, exposed: ExposedName(u.prefix, v.Tool), name: v.Tool}, "pin_removed", pinRule(u.name, v.Tool), pinMessage(v))
	}
	return out, err
}

// verify lists the tools of a call session that just connected and checks them against the
// pins, before the session serves any call: a stdio session has a server of its own, started
// from files that may have changed since the catalog was listed, and a remote server may list
// differently per session. A session offered elicitation lists everything, so its listing
// replaces the catalog (as list_changed does); another may be shown fewer tools, so only what
// it lists is checked, and what it shows changed is withheld from every session.
func (u *upstreamState) verify(ctx context.Context, s *upstream.Session) error {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	if s.OffersElicitation() {
		_, err := u.load(ctx, s)
		return err
	}
	list, err := s.Tools(ctx)
	if err != nil {
		return err
	}
	checked, _ := u.check(ctx, list, true) // an error is logged, and withholds every tool
	u.remember(s, checked)
	// Merge into what is served, under one hold of the lock (a catalog published meanwhile
	// is merged into, not overwritten): a tool this server lists withheld (changed, new) is
	// withheld for every session; one it lists as its pin allows now replaces an entry
	// that still names an older allowed definition; the others stay as the catalog has them.
	u.g.mu.Lock()
	var merged []*remoteTool
	byName := map[string]*remoteTool{}
	for _, t := range u.g.tools {
		if t.up == u {
			byName[t.name] = t
		}
	}
	changed := false
	for _, t := range checked {
		cur := byName[t.name]
		stale := cur != nil && t.withheld == "" && cur.withheld == "" && t.verdict.NewHash != cur.verdict.NewHash
		if cur == nil || (t.withheld != "" && cur.withheld == "") || stale {
			byName[t.name], changed = t, true
		}
	}
	if !changed {
		u.g.mu.Unlock()
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		merged = append(merged, byName[name])
	}
	collided := u.g.install(u, merged)
	u.g.mu.Unlock()
	u.g.published(collided)
	return nil
}

// relist lists session s's tools again and notes their definitions' hashes, without the
// pins: what a session's own server lists is compared with the pins by admit. A server that
// now serves an older definition than the one approved (a session started before the
// approval) is refused its calls, and does not undo the approval for the others.
func (u *upstreamState) relist(ctx context.Context, s *upstream.Session) error {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	list, err := s.Tools(ctx)
	if err != nil {
		return err
	}
	hashes := make(map[string]string, len(list))
	for _, t := range list {
		if d, err := pins.FromTool(t); err == nil {
			if h, err := pins.Hash(d); err == nil {
				hashes[t.Name] = h
			}
		}
	}
	u.setListed(s, hashes)
	return nil
}

// remember notes what session s's server lists; forget drops it when the session ends.
func (u *upstreamState) remember(s *upstream.Session, tools []*remoteTool) {
	hashes := make(map[string]string, len(tools))
	for _, t := range tools {
		hashes[t.name] = t.verdict.NewHash
	}
	u.setListed(s, hashes)
}

// setListed notes hashes as what session s's server lists, unless s has ended meanwhile (its
// forget already ran).
func (u *upstreamState) setListed(s *upstream.Session, hashes map[string]string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !s.Open() {
		return
	}
	if u.listed == nil {
		u.listed = map[*upstream.Session]map[string]string{}
	}
	u.listed[s] = hashes
}

func (u *upstreamState) forget(s *upstream.Session) {
	u.mu.Lock()
	delete(u.listed, s)
	u.mu.Unlock()
}

// admit decides whether a call of tool name (served as exposed) may be sent on session s:
// only if the tool is served now, and s's server listed the very definition its pin allows.
// What s listed may be older than the catalog (a remote server changed a tool and the
// catalog re-listed it, then an operator approved the change): s is listed and checked
// again once before the call is refused. In warn and off modes a changed definition is
// allowed anyway, so nothing is compared.
func (u *upstreamState) admit(ctx context.Context, s *upstream.Session, name, exposed string) error {
	if u.mode != pins.Enforce {
		return nil
	}
	stale, err := u.admitted(s, name, exposed)
	if !stale {
		return err
	}
	if verr := u.relist(ctx, s); verr != nil {
		return fmt.Errorf("listing the tools of upstream %s again before the call: %w", u.name, verr)
	}
	_, err = u.admitted(s, name, exposed)
	return err
}

// admitted is admit without listing again; stale reports a refusal that listing s again may
// lift.
func (u *upstreamState) admitted(s *upstream.Session, name, exposed string) (stale bool, err error) {
	u.g.mu.Lock()
	cur := u.g.tools[exposed]
	u.g.mu.Unlock()
	u.mu.Lock()
	hash, listed := u.listed[s][name]
	u.mu.Unlock()
	rule := pinRule(u.name, name)
	switch {
	case cur == nil || cur.up != u:
		return false, &pipeline.WithheldError{Rule: rule, Message: fmt.Sprintf("tool %q of upstream %q is no longer served: the upstream no longer lists it", name, u.name)}
	case cur.withheld != "":
		return false, &pipeline.WithheldError{Rule: cur.rule, Message: cur.withheld}
	case !listed:
		return true, &pipeline.WithheldError{Rule: rule, Message: fmt.Sprintf("the server of upstream %q that serves this session does not list tool %q, so the call was not sent", u.name, name)}
	case hash != cur.verdict.NewHash:
		return true, &pipeline.WithheldError{Rule: rule, Message: fmt.Sprintf("the server of upstream %q that serves this session lists a definition of tool %q (%s) other than the one its pin allows now (%s), so the call was not sent; a new session starts a server that is checked again, and `airlock pins diff %s %s` shows the pending change",
			u.name, name, short(hash), short(cur.verdict.NewHash), u.name, name)}
	}
	return false, nil
}

func short(hash string) string { return hash[:min(len(hash), 12)] }

func pinRule(up, tool string) string { return "/pins/" + up + "/" + tool }

func pinMessage(v pins.Verdict) string {
	if v.Message != "" {
		return v.Message
	}
	return fmt.Sprintf("%s %s (mode %s)", v.Decision, v.NewHash, v.Mode)
}

// prepare builds the definition clients are shown (description, title and schemas cleaned)
// and compiles the input schema for stage 2. It returns why the tool cannot be served, or "".
func (rt *remoteTool) prepare(t *mcp.Tool) string {
	if len(rt.exposed) > maxToolName || !toolName.MatchString(rt.exposed) {
		return fmt.Sprintf("its name as served, %q, is not an MCP tool name of at most %d letters, digits, _ . -", rt.exposed, maxToolName)
	}
	d, err := pins.FromTool(t)
	if err != nil {
		return "its definition cannot be read: " + err.Error()
	}
	in, err := pins.CleanSchema(d.InputSchema, 0)
	if err != nil || in == nil {
		return "its input schema cannot be read"
	}
	var obj map[string]any
	if json.Unmarshal(in, &obj) != nil || obj["type"] != "object" {
		return `its input schema is not of type "object"`
	}
	if rt.schema, err = pipeline.CompileInputSchema(rt.exposed, in); err != nil {
		return "its input schema does not compile: " + err.Error()
	}
	def := &mcp.Tool{
		Name:        rt.exposed,
		Title:       pins.CleanDescription(t.Title, 256),
		Description: pins.CleanDescription(t.Description, 0),
		InputSchema: in,
	}
	if d.OutputSchema != nil {
		// The upstream's structuredContent reaches the client as the upstream sent it (strings
		// sanitised), and Airlock's own fields go in _meta, so its outputSchema stays valid.
		out, err := pins.CleanSchema(d.OutputSchema, 0)
		if err != nil {
			return "its output schema cannot be read"
		}
		def.OutputSchema = out
	}
	if t.Annotations != nil {
		a := *t.Annotations
		a.Title = pins.CleanDescription(a.Title, 256)
		def.Annotations = &a
	}
	rt.def = def
	return ""
}

// record writes a gateway decision to the audit log (and the diagnostic log).
func (g *gateway) record(rt *remoteTool, decision, rule, msg string) {
	g.log.Info().Str("event", "upstream."+decision).Str("upstream", rt.up.name).Str("tool", rt.name).Str("rule", rule).Msg(msg)
	if g.pipe == nil {
		return // airlock upstreams check: the verdicts are printed
	}
	if err := g.pipe.RecordGateway(pipeline.GatewayEvent{Tool: rt.exposed, Upstream: rt.up.name, UpstreamTool: rt.name,
		Decision: decision, Rule: rule, Message: msg}); err != nil {
		g.log.Error().Str("event", "audit.error").Str("upstream", rt.up.name).Err(err).Msg("gateway decision not recorded")
	}
}

// publish replaces an upstream's tools and updates every attached server. A name taken by
// one of Airlock's own tools or another upstream's is withheld (and recorded).
func (g *gateway) publish(u *upstreamState, tools []*remoteTool) {
	g.mu.Lock()
	collided := g.install(u, tools)
	g.mu.Unlock()
	g.published(collided)
}

// install replaces u's tools in g.tools (g.mu held) and returns those withheld for a name
// taken by another tool, for published.
func (g *gateway) install(u *upstreamState, tools []*remoteTool) []*remoteTool {
	for name, t := range g.tools {
		if t.up == u {
			delete(g.tools, name)
		}
	}
	var collided []*remoteTool
	for _, t := range tools {
		if other, taken := g.tools[t.exposed]; taken || g.reserved[t.exposed] {
			owner := "one of Airlock's own tools"
			if taken {
				owner = "a tool of upstream " + other.up.name
			}
			t.rule = "/upstreams/" + u.name + "/prefix"
			t.withheld = fmt.Sprintf("tool %q of upstream %q is not served: its name %q is already %s; give the upstream another prefix:", t.name, u.name, t.exposed, owner)
			collided = append(collided, t)
			continue
		}
		g.tools[t.exposed] = t
	}
	return collided
}

// published records the name collisions of an install and updates every attached server.
func (g *gateway) published(collided []*remoteTool) {
	for _, t := range collided {
		g.record(t, "name_collision", t.rule, t.withheld)
	}
	g.sync()
}

// served lists the tools clients may be shown, sorted.
func (g *gateway) served() []*remoteTool {
	var out []*remoteTool
	for _, name := range slices.Sorted(maps.Keys(g.tools)) {
		if t := g.tools[name]; t.withheld == "" {
			out = append(out, t)
		}
	}
	return out
}

// attach lists the upstream tools visible to a server's grant on it, now and after every
// change. detach stops that.
func (g *gateway) attach(srv *mcp.Server, visible func(string) bool) {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.servers[srv] = &attached{visible: visible}
	g.mu.Unlock()
	g.sync()
}

func (g *gateway) detach(srv *mcp.Server) {
	if g == nil {
		return
	}
	g.mu.Lock()
	delete(g.servers, srv)
	g.mu.Unlock()
}

// sync makes every attached server list exactly the served tools its grant may see. The SDK
// sends notifications/tools/list_changed to the server's sessions.
func (g *gateway) sync() {
	g.mu.Lock()
	defer g.mu.Unlock()
	tools := g.served()
	for srv, a := range g.servers {
		if len(a.listed) > 0 {
			srv.RemoveTools(a.listed...)
		}
		a.listed = nil
		for _, t := range tools {
			if !a.visible(t.exposed) {
				continue
			}
			if addTool(srv, t) {
				a.listed = append(a.listed, t.exposed)
			}
		}
	}
}

// addTool lists t on srv. Calls never reach its handler: the server's middleware routes every
// call to an upstream tool through the pipeline first (mcpHandler.handleRemote). The SDK
// panics on definitions it rejects; such a tool is left out.
func addTool(srv *mcp.Server, t *remoteTool) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	srv.AddTool(t.def, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return nil, errors.New("upstream tool call not routed through the pipeline")
	})
	return true
}

// lookup returns the upstream tool of that exposed name (loading the catalogs first), or nil.
func (g *gateway) lookup(ctx context.Context, name string) *remoteTool {
	if g == nil {
		return nil
	}
	g.ensure(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tools[name]
}

// IsUpstreamTool reports whether name is a tool of an upstream (served or withheld), connecting
// to the upstreams first if need be.
func (r *Runtime) IsUpstreamTool(ctx context.Context, name string) bool {
	return r.gw.lookup(ctx, name) != nil
}

// bind is the RemoteTool for one call of an Airlock session. ss, when not nil, is the MCP
// session: its end closes the upstream session opened for it.
// in, if not nil, carries the client's answers to the upstream's questions (a retry).
func (g *gateway) bind(t *remoteTool, session string, ss *mcp.ServerSession, in *upstream.Input) pipeline.RemoteTool {
	return &boundTool{remoteTool: t, session: session, ss: ss, in: in}
}

// boundTool implements pipeline.RemoteTool for one call.
type boundTool struct {
	*remoteTool
	session string
	ss      *mcp.ServerSession
	in      *upstream.Input
}

func (b *boundTool) Upstream() string         { return b.up.name }
func (b *boundTool) UpstreamName() string     { return b.name }
func (b *boundTool) Schema() *pipeline.Schema { return b.schema }
func (b *boundTool) Timeout() time.Duration   { return b.up.timeout }
func (b *boundTool) Secrets() []string        { return b.up.secrets }
func (b *boundTool) Withheld() (string, string) {
	return b.rule, b.withheld
}

// Invoke calls the tool on the Airlock session's own upstream session. A transport failure
// drops that session, so the next call connects again (the upstream may have restarted; a
// stdio server that died is started again).
func (b *boundTool) Invoke(ctx context.Context, args map[string]any, progress func(float64, float64, string)) (*mcp.CallToolResult, bool, error) {
	s, release, err := b.up.sessionFor(ctx, b.session, b.ss)
	if err != nil {
		return nil, false, err
	}
	defer release()
	if err := b.up.admit(ctx, s, b.name, b.exposed); err != nil {
		return nil, false, err
	}
	res, sent, err := s.Call(ctx, b.name, args, progress, b.in)
	if err != nil && ctx.Err() == nil {
		// The upstream may have restarted, with other tools: connect again next time, and
		// list and check its tools again before the next call.
		b.up.dropSession(b.session, s)
		b.up.invalidate(nil)
	}
	return res, sent, err
}

// sessionFor returns the upstream session of an Airlock session, connecting on first use, and
// a release to call when the call is done. A caller without a session (the CLI), and every
// call of a stdio upstream with lifecycle: call, gets a session of its own, which release
// closes.
func (u *upstreamState) sessionFor(ctx context.Context, id string, ss *mcp.ServerSession) (*upstream.Session, func(), error) {
	if id == "" || u.perCall {
		s, err := u.remote.Connect(ctx, u.peer(ss))
		if err != nil {
			return nil, nil, err
		}
		release := func() {
			s.Close()
			u.forget(s)
		}
		if err := u.verify(ctx, s); err != nil {
			release()
			return nil, nil, err
		}
		return s, release, nil
	}
	for {
		ls, err := u.lazy(ctx, id, ss)
		if err != nil {
			return nil, nil, err
		}
		if ls.acquire() {
			return ls.s, ls.release, nil
		}
		// Retired between its lookup and this call (idle, or its server died): the next
		// lookup finds it gone and connects again.
	}
}

// lazy returns the Airlock session's upstream session, connecting on first use.
func (u *upstreamState) lazy(ctx context.Context, id string, ss *mcp.ServerSession) (*lazySession, error) {
	u.mu.Lock()
	if u.sessions == nil {
		u.mu.Unlock()
		return nil, errors.New("Airlock is shutting down")
	}
	ls, ok := u.sessions[id]
	if !ok {
		ls = &lazySession{}
		u.sessions[id] = ls
	}
	u.mu.Unlock()
	ls.once.Do(func() {
		ls.s, ls.err = u.remote.Connect(ctx, u.peer(ss))
		if ls.err != nil {
			return
		}
		if ls.err = u.verify(ctx, ls.s); ls.err != nil {
			ls.s.Close()
			u.forget(ls.s)
			return
		}
		ls.mu.Lock()
		ls.open, ls.lastUsed = true, time.Now()
		ls.mu.Unlock()
		// Owned by the upstream session: returns when it ends (the Airlock session ended,
		// or the server died), and forgets it, so that the next call connects again.
		var ended <-chan struct{}
		if ss != nil {
			ch := make(chan struct{})
			go func() {
				ss.Wait()
				close(ch)
			}()
			ended = ch
		}
		go func() {
			select {
			case <-ended:
			case <-ls.s.Done():
			}
			u.dropSession(id, ls.s)
			u.forget(ls.s)
		}()
	})
	if ls.err != nil {
		u.mu.Lock()
		if u.sessions[id] == ls {
			delete(u.sessions, id)
		}
		u.mu.Unlock()
		return nil, ls.err
	}
	u.mu.Lock()
	closing := u.sessions == nil
	u.mu.Unlock()
	if closing && ls.retire(0) {
		// Connected while the gateway closed: nobody else will stop this server.
		ls.s.Close()
	}
	return ls, nil
}

// peer is the Airlock session ss as the upstream's sessions see it, or nil without one.
func (u *upstreamState) peer(ss *mcp.ServerSession) upstream.Peer {
	if ss == nil {
		return nil
	}
	return &elicitPeer{u: u, ss: ss}
}

// elicitPeer forwards an upstream's elicitation requests to the Airlock client session it
// serves, labelled with the upstream's name (the user must know who asks), its message cleaned
// like a tool description. URL-mode requests (a link the user would open) are declined: a link
// chosen by a third-party server is not shown to the user through Airlock. Each request and its
// outcome (the action, never the answer's content) is in the audit log.
type elicitPeer struct {
	u  *upstreamState
	ss *mcp.ServerSession
}

// catalogPeer is the catalog session's side: it offers elicitation so that the upstream lists
// every tool, and declines any question (no user is behind a listing).
type catalogPeer struct{}

func (catalogPeer) CanElicit() bool { return true }
func (catalogPeer) Elicit(context.Context, *mcp.ElicitParams) (*mcp.ElicitResult, error) {
	return &mcp.ElicitResult{Action: "decline"}, nil
}

// maxElicitMessage bounds an upstream's elicitation message as the user sees it.
const maxElicitMessage = 2000

func (p *elicitPeer) CanElicit() bool {
	ip := p.ss.InitializeParams()
	return ip != nil && ip.Capabilities != nil && ip.Capabilities.Elicitation != nil
}

func (p *elicitPeer) Elicit(ctx context.Context, params *mcp.ElicitParams) (*mcp.ElicitResult, error) {
	rt := &remoteTool{up: p.u}
	rule := "/upstreams/" + p.u.name + "/elicitation"
	if params == nil || (params.Mode != "" && params.Mode != "form") {
		p.u.g.record(rt, "elicitation_declined", rule, "an elicitation request in a mode other than form was declined")
		return &mcp.ElicitResult{Action: "decline"}, nil
	}
	msg := fmt.Sprintf("[upstream %s asks] %s", p.u.name, pins.CleanDescription(params.Message, maxElicitMessage))
	res, err := p.ss.Elicit(ctx, &mcp.ElicitParams{Message: msg, RequestedSchema: params.RequestedSchema})
	outcome := "error"
	if err == nil && res != nil {
		outcome = res.Action
	}
	p.u.g.record(rt, "elicitation_"+outcome, rule, "forwarded to the client: "+msg)
	return res, err
}

// dropSession forgets and closes an Airlock session's upstream session, if it is still s.
// Sessions of their own (perCall, the CLI) are closed by their release.
func (u *upstreamState) dropSession(id string, s *upstream.Session) {
	u.mu.Lock()
	ls, ok := u.sessions[id]
	ok = ok && ls.s == s
	if ok {
		delete(u.sessions, id)
		ls.retire(0)
	}
	u.mu.Unlock()
	if ok {
		s.Close()
	}
}

// reapIdle ends the sessions of a stdio upstream that no call used for u.idle, which stops
// their servers; the next call of that Airlock session starts a new one.
func (u *upstreamState) reapIdle() {
	defer u.g.wg.Done()
	if !u.remote.Stdio() || u.perCall {
		return
	}
	tick := time.NewTicker(max(u.idle/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-u.g.ctx.Done():
			return
		case <-tick.C:
		}
		var idle []*upstream.Session
		u.mu.Lock()
		for id, ls := range u.sessions {
			if ls.retire(u.idle) {
				delete(u.sessions, id)
				idle = append(idle, ls.s)
			}
		}
		u.mu.Unlock()
		for _, s := range idle {
			u.g.log.Info().Str("event", "upstream.idle").Str("upstream", u.name).Dur("idle", u.idle).Msg("stopping the server of an idle session")
			go s.Close()
		}
	}
}

// visibleTo is the gateway's visibility filter for a grant: the policy's.
func visibleTo(engine func() *policies.Engine, g policies.Grant) func(string) bool {
	// The engine is looked up per question: a policy reload changes the answer.
	return func(name string) bool { return engine().Visible(name, g) }
}

// UpstreamTool is one tool of an upstream as `airlock upstreams check` reports it.
type UpstreamTool struct {
	Name     string        `json:"name"`    // the upstream's
	Exposed  string        `json:"exposed"` // as clients would see it
	Decision pins.Decision `json:"pin"`
	Hash     string        `json:"hash,omitempty"`
	Served   bool          `json:"served"`
	Message  string        `json:"message,omitempty"`
}

// CheckUpstream connects to one upstream of a resolved config, lists its tools and checks them
// against the pins in the config's state store, recording what it saw exactly as serving
// would (a first check pins the tools). Names are checked against the config's own tools;
// stateDir holds the egress proxies of a stdio server's sandbox.
func CheckUpstream(ctx context.Context, cfg *Config, backend sandbox.Backend, stateDir, name string) ([]UpstreamTool, error) {
	uc, ok := cfg.Upstreams[name]
	if !ok {
		return nil, fmt.Errorf("no upstream %q in %s (it has %s)", name, cfg.File, strings.Join(slices.Sorted(maps.Keys(cfg.Upstreams)), ", "))
	}
	reserved := map[string]bool{}
	if tools, err := BuildTools(cfg); err == nil {
		for _, t := range tools {
			reserved[t.Name()] = true
		}
	}
	sub := *cfg
	sub.Upstreams = map[string]UpstreamConfig{name: uc}
	if backend != nil {
		proxied, closeEgress, err := WithEgress(backend, cfg, stateDir, zerolog.Nop())
		if err != nil {
			return nil, err
		}
		defer closeEgress()
		backend = proxied
	}
	store, err := cfg.OpenState(ctx)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	g, err := newGateway(&sub, nil, backend, store, reserved, zerolog.Nop(), nil)
	if err != nil {
		return nil, err
	}
	defer g.close()
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	tools, err := g.ups[0].load(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]UpstreamTool, 0, len(tools))
	for _, t := range tools {
		out = append(out, UpstreamTool{Name: t.name, Exposed: t.exposed, Decision: t.verdict.Decision, Hash: t.verdict.NewHash,
			Served: t.withheld == "", Message: t.withheld})
	}
	return out, nil
}
