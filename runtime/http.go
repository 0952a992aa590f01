package runtime

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-mcp/airlock/console"

	"github.com/airlock-mcp/airlock/identity"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/policies"
)

// MCPPath is where the streamable HTTP endpoint lives.
const MCPPath = "/mcp"

// minTokenLen refuses tokens short enough to guess.
const minTokenLen = 16

// bearer is one accepted token, kept only as its sha256 so comparisons are constant-time over
// equal-length values.
type bearer struct {
	sum   [32]byte
	grant policies.Grant
}

// loadTokens reads the configured bearer tokens from the environment or files.
func (c *Config) loadTokens() ([]bearer, error) {
	var out []bearer
	for i, t := range c.HTTP.Tokens {
		var v string
		switch {
		case t.TokenEnv != "":
			v = os.Getenv(t.TokenEnv)
			if v == "" {
				return nil, c.errAt(fmt.Sprintf("environment variable %s is empty or unset", t.TokenEnv), "http", "tokens", i, "token_env")
			}
		default:
			b, err := os.ReadFile(t.TokenFile)
			if err != nil {
				return nil, c.errAt(err.Error(), "http", "tokens", i, "token_file")
			}
			v = strings.TrimSpace(string(b))
		}
		if len(v) < minTokenLen {
			return nil, c.errAt(fmt.Sprintf("token is %d characters; use at least %d random ones (e.g. openssl rand -hex 32)", len(v), minTokenLen), "http", "tokens", i)
		}
		out = append(out, bearer{sum: sha256.Sum256([]byte(v)), grant: policies.Grant{ID: t.Grant, Labels: t.Labels}})
	}
	return out, nil
}

// IsLoopback reports whether a listen address only accepts connections from this machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckBind refuses to listen beyond loopback without bearer tokens: anyone who can reach the
// port could otherwise run tools as the local grant.
func CheckBind(addr string, haveTokens bool) error {
	if IsLoopback(addr) || haveTokens {
		return nil
	}
	return fmt.Errorf("refusing to listen on %s without a bearer token: anyone who can reach it could call tools; "+
		"configure http.tokens (token_env or token_file) or listen on 127.0.0.1", addr)
}

type grantKey struct{}

// httpFront is the HTTP entry: Host and Origin checks, bearer authentication, then the SDK's
// streamable handler with one MCP server per grant.
type httpFront struct {
	rt      *Runtime
	control *control
	port    string
	hosts   map[string]bool
	origins map[string]bool
	tokens  []bearer
	// jwt validates OIDC/JWT bearer tokens (http.jwt); nil without. resource is the MCP
	// endpoint's public URL and metadata where its protected-resource metadata is served.
	jwt      *identity.Validator
	resource string
	metadata string
	// local is the grant of token-less callers on loopback; nil when the config has tokens
	// or the server listens beyond loopback (then every request must present one).
	local *policies.Grant
	// uid is Airlock's own uid; peerUID finds a loopback client's (replaced in tests).
	uid     uint32
	peerUID func(remote, local netip.AddrPort) (uint32, error)
	mu      sync.Mutex
	servers map[string]*mcp.Server
	mcp     http.Handler
	// sessions is Airlock's bookkeeping of the SDK's sessions: caps, expiry, and the calls in
	// flight of each, cancelled when the session ends.
	sessions *sessionTable
	// console serves /console when the config turns it on; nil otherwise.
	console http.Handler
	// posts maps the postHeader value of each POST in progress to its request context, so a
	// tools/call it carries can be cancelled when the client goes away.
	posts   sync.Map // string -> *postState
	postSeq atomic.Uint64
	// metricsToken is the sha256 of metrics.token_env/token_file; nil without (health.go).
	metricsToken *[32]byte
}

// sessionIDHeader carries the streamable HTTP session id.
const sessionIDHeader = "Mcp-Session-Id"

// postHeader links a JSON-RPC request to the HTTP POST that carried it: the SDK hands handlers
// the POST's header (RequestExtra.Header) but runs them on the session's context, not the
// request's. Any value a client sends is replaced.
const postHeader = "X-Airlock-Post"

// HTTPHandler returns the handler for the streamable HTTP endpoint of a server listening on
// listenAddr (host:port as bound).
func (r *Runtime) HTTPHandler(listenAddr string) (http.Handler, error) {
	f, err := r.newHTTPFront(listenAddr)
	if err != nil {
		return nil, err // not a nil *httpFront in a non-nil interface
	}
	return f, nil
}

func (r *Runtime) newHTTPFront(listenAddr string) (*httpFront, error) {
	tokens, err := r.cfg.loadTokens()
	if err != nil {
		return nil, err
	}
	jwtOn := r.cfg.HTTP.JWT != nil
	if err := CheckBind(listenAddr, len(tokens) > 0 || jwtOn || r.HaveGrants(context.Background())); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listenAddr, err)
	}
	f := &httpFront{rt: r, control: r.control, port: port, hosts: map[string]bool{}, origins: map[string]bool{}, tokens: tokens, servers: map[string]*mcp.Server{},
		uid: uint32(os.Getuid()), peerUID: peerUID, sessions: newSessionTable(r.cfg.HTTP.sessionLimits(), time.Now)}
	// Grants of the state store add callers with tokens; they do not take token-less access
	// away from the operator's own uid on loopback (only config tokens do, as before).
	if len(tokens) == 0 && !jwtOn && IsLoopback(listenAddr) {
		g := r.Grant()
		f.local = &g
	}
	if jwtOn {
		if err := f.setupJWT(listenAddr); err != nil {
			return nil, err
		}
	}
	if r.cfg.Console.Enabled {
		c, err := console.New(consoleBackend{rt: r, front: f})
		if err != nil {
			return nil, err
		}
		f.console = c
	}
	if f.metricsToken, err = r.cfg.metricsToken(); err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		f.hosts[strings.ToLower(net.JoinHostPort(host, port))] = true
	}
	for _, h := range r.cfg.HTTP.AllowedHosts {
		f.hosts[strings.ToLower(h)] = true
	}
	for _, lh := range []string{"localhost", "127.0.0.1", "::1"} {
		f.origins["http://"+net.JoinHostPort(lh, port)] = true
	}
	for _, o := range r.cfg.HTTP.AllowedOrigins {
		f.origins[strings.TrimSuffix(o, "/")] = true
	}
	f.mcp = mcp.NewStreamableHTTPHandler(f.serverFor, &mcp.StreamableHTTPOptions{
		// No SessionTimeout: the SDK's counts only POSTs as activity, so it would cut off a
		// client listening on its GET stream. f.sessions expires sessions instead.
		//
		// No EventStore either, and that matters to cancellation: without one a client cannot
		// resume a response stream, so the POST carrying a tools/call is the only way its
		// result reaches the client, and the call is cancelled when that POST ends early.
		//
		// The SDK's own check would also refuse operator-listed hosts (http.allowed_hosts) on a
		// loopback connection; httpFront.hostAllowed is the same check with that list, and
		// runs first on every request.
		DisableLocalhostProtection: true,
	})
	return f, nil
}

// setupJWT builds the validator of http.jwt and the resource's metadata location. A key set
// that cannot be loaded yet is not fatal: every token is refused until it loads (fail closed),
// and the operator is told now.
func (f *httpFront) setupJWT(listenAddr string) error {
	cfg := f.rt.cfg
	f.resource = cfg.HTTP.Resource
	if f.resource == "" {
		f.resource = URL(listenAddr)
	}
	mu, err := identity.MetadataURL(f.resource)
	if err != nil {
		return cfg.errAt(err.Error(), "http", "resource")
	}
	u, err := url.Parse(mu)
	if err != nil {
		return cfg.errAt(err.Error(), "http", "resource")
	}
	f.metadata = u.Path
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := identity.NewValidator(ctx, *cfg.HTTP.JWT)
	if v == nil {
		return cfg.errAt(err.Error(), "http", "jwt")
	}
	if err != nil {
		f.rt.log.Error().Err(err).Str("event", "http.jwks_unavailable").Msg("JWT key set not loaded; every JWT is refused until it loads")
	}
	f.jwt = v
	return nil
}

func (f *httpFront) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// DNS rebinding: a web page on evil.example whose name later resolves to 127.0.0.1 reaches
	// this port from the victim's browser with Host: evil.example. Only names that cannot be
	// rebound (loopback), the bound address and operator-listed hosts are served.
	if !f.hostAllowed(req.Host) {
		http.Error(w, fmt.Sprintf("Forbidden: Host %q is not allowed (add it to http.allowed_hosts)", req.Host), http.StatusForbidden)
		return
	}
	// Browsers send Origin on cross-origin requests; a page from another origin must not drive
	// tools even on loopback. Non-browser clients send none.
	if o := req.Header.Get("Origin"); o != "" && !f.origins[strings.TrimSuffix(o, "/")] {
		http.Error(w, fmt.Sprintf("Forbidden: Origin %q is not allowed (add it to http.allowed_origins)", o), http.StatusForbidden)
		return
	}
	if f.serveOps(w, req) {
		return // /healthz, /readyz, /metrics (health.go)
	}
	if f.console != nil && (req.URL.Path == console.Prefix || strings.HasPrefix(req.URL.Path, console.Prefix+"/")) {
		// The console authenticates its own way (a login that opens a cookie session), after
		// the same Host and Origin checks as MCP.
		f.console.ServeHTTP(w, req)
		return
	}
	if f.jwt != nil && req.URL.Path == f.metadata && req.Method == http.MethodGet {
		// Clients discover where to get a token here, before they have one.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(f.jwt.Metadata(f.resource))
		return
	}
	if len(req.Header.Values("Authorization")) > 1 {
		// Two credentials: which one would be judged is a parser's accident.
		http.Error(w, "Bad request: more than one Authorization header", http.StatusBadRequest)
		return
	}
	hdr := req.Header.Get("Authorization")
	if f.local != nil && hdr == "" {
		// Without tokens the caller acts as the operator's grant, and write_file runs as the
		// workspace's owner: any other local user who reaches the loopback port (a shared dev
		// box, a CI runner) would write the operator's workspace, answer its own approval
		// prompts, and read files its own uid cannot reach on the host. So token-less HTTP
		// serves only clients running as the same uid as Airlock (or root).
		if err := f.checkPeer(req); err != nil {
			http.Error(w, "Forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
	}
	g, err := f.authenticate(req.Context(), hdr)
	if err != nil {
		f.refuse(w, err)
		return
	}
	if req.URL.Path != MCPPath {
		http.Error(w, "Not found: the MCP endpoint is "+MCPPath, http.StatusNotFound)
		return
	}
	f.serveMCP(w, req.WithContext(context.WithValue(req.Context(), grantKey{}, g)), g)
}

// serveMCP passes an authenticated request to the SDK's handler, keeping the session table
// up to date around it.
func (f *httpFront) serveMCP(w http.ResponseWriter, req *http.Request, g policies.Grant) {
	if sid := req.Header.Get(sessionIDHeader); sid != "" {
		end, err := f.sessions.begin(sid, g.ID)
		switch {
		case errors.Is(err, errSessionNotFound):
			// 404 tells a client to start a new session (streamable HTTP, 2025-06-18 §2.5.3).
			http.Error(w, "Not found: "+err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "Forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
		defer end()
		if req.Method == http.MethodDelete {
			// The SDK's Close waits for the calls in flight to return, which without this
			// would be when their containers time out (up to 10 minutes for run_tests).
			f.sessions.end(sid, errSessionDeleted)
		}
	}
	if req.Method == http.MethodPost {
		// The request's context ends when the client disconnects (or the response is done).
		key := strconv.FormatUint(f.postSeq.Add(1), 36)
		ps := &postState{ctx: req.Context()}
		f.posts.Store(key, ps)
		defer f.posts.Delete(key)
		req.Header.Set(postHeader, key)
		w = &postWriter{ResponseWriter: w, post: ps}
	} else {
		req.Header.Del(postHeader)
	}
	f.mcp.ServeHTTP(w, req)
}

// sessionMiddleware keeps f.sessions in step with one grant's server: it records sessions as
// they initialize, and ties every tools/call to the POST that carried it and to its session,
// so the call is cancelled (its container killed) when either goes away.
func (f *httpFront) sessionMiddleware(grant string) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			ss, _ := req.GetSession().(*mcp.ServerSession)
			if ss == nil {
				return next(ctx, method, req)
			}
			switch method {
			case "initialize":
				// The cap is checked here rather than on the POST: only here is it known to be
				// an initialize (clients probe with other requests first). Refused, the session
				// stays uninitialized and the SDK closes it when the POST ends; the client sees
				// the error as the answer to initialize.
				r, err := f.sessions.reserve(grant)
				if err != nil {
					return nil, err
				}
				defer r.release()
				res, err := next(ctx, method, req)
				if err == nil {
					f.sessions.add(ss.ID(), grant, func() { _ = ss.Close() }, r)
				}
				return res, err
			case "tools/call":
				ps := f.postOf(req)
				var post context.Context
				if ps != nil {
					post = ps.ctx
				}
				ctx, cancel := context.WithCancelCause(ctx)
				defer cancel(nil)
				done, ok := f.sessions.beginCall(ss.ID(), cancel)
				defer done()
				if !ok {
					cancel(errSessionGone)
				}
				if post == nil {
					// The POST is over: its response, the only way this call's result could
					// reach the client, is gone.
					cancel(errClientGone)
				} else {
					// The SDK runs handlers on the session's context, which outlives the POST.
					// When the client drops the connection the result can no longer be
					// delivered, yet without this the container would run to its timeout.
					stop := context.AfterFunc(post, func() { cancel(errClientGone) })
					defer stop()
				}
				res, err := next(ctx, method, req)
				if ps != nil && errors.Is(context.Cause(ctx), context.Canceled) {
					// The client cancelled the request (notifications/cancelled; the SDK
					// cancels with no cause of its own): MCP says not to answer it, and the
					// POST carries nothing else of interest once the call is over.
					ps.drop.Store(true)
				}
				return res, err
			}
			return next(ctx, method, req)
		}
	}
}

// postState is one POST in progress: its context, and whether what is still written to it
// must be left out (its call was cancelled by the client).
type postState struct {
	ctx  context.Context
	drop atomic.Bool
}

// postWriter discards what is written to a POST once its call was cancelled by the client.
type postWriter struct {
	http.ResponseWriter
	post *postState
}

func (w *postWriter) Write(p []byte) (int, error) {
	if w.post.drop.Load() {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Flush and Unwrap keep streaming (SSE) working through the wrapper.
func (w *postWriter) Flush() {
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (w *postWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// postOf is the POST in progress that carried req, nil if it has ended.
func (f *httpFront) postOf(req mcp.Request) *postState {
	extra := req.GetExtra()
	if extra == nil || extra.Header == nil {
		return nil
	}
	v, ok := f.posts.Load(extra.Header.Get(postHeader))
	if !ok {
		return nil
	}
	return v.(*postState)
}

// peerCache holds the peer uid of one connection, looked up on its first token-less request.
type peerCache struct {
	once sync.Once
	uid  uint32
	err  error
}

type peerCacheKey struct{}

// checkPeer allows a token-less request only from a process of Airlock's own uid (or root).
func (f *httpFront) checkPeer(req *http.Request) error {
	deny := fmt.Errorf("without http.tokens only processes of uid %d (the user running Airlock) may connect; configure http.tokens to serve other users", f.uid)
	remote, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return deny
	}
	la, _ := req.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if la == nil {
		return deny
	}
	local, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return deny
	}
	var uid uint32
	if pc, ok := req.Context().Value(peerCacheKey{}).(*peerCache); ok {
		// Served by ServeHTTP: one lookup per connection. /proc/net/tcp reports the uid that
		// created the socket, which never changes, so the answer holds for the connection's
		// life; reading the table costs milliseconds, which every request would otherwise pay.
		pc.once.Do(func() { pc.uid, pc.err = f.peerUID(remote, local) })
		uid, err = pc.uid, pc.err
	} else {
		uid, err = f.peerUID(remote, local)
	}
	if err != nil || (uid != f.uid && uid != 0) {
		return deny
	}
	return nil
}

func (f *httpFront) hostAllowed(hostport string) bool {
	hp := strings.ToLower(hostport)
	if f.hosts[hp] {
		return true
	}
	host := hp
	if h, _, err := net.SplitHostPort(hp); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if f.hosts[host] {
		return true
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errNoToken is a request without a bearer token where one is needed.
var errNoToken = errors.New("send Authorization: Bearer <token>")

// errStateDown wraps a state store that could not say whether a token is good.
type errStateDown struct{ err error }

func (e *errStateDown) Error() string { return e.err.Error() }
func (e *errStateDown) Unwrap() error { return e.err }

// authenticate maps an Authorization header to a grant: a token of the config, then a grant
// of the state store (revoked and expired ones refused); no header is the local grant where
// token-less callers are served (their uid checked by the caller).
func (f *httpFront) authenticate(ctx context.Context, header string) (policies.Grant, error) {
	if header == "" {
		if f.local != nil {
			return *f.local, nil
		}
		return policies.Grant{}, errNoToken
	}
	tok, ok := strings.CutPrefix(header, "Bearer ")
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		return policies.Grant{}, errNoToken
	}
	sum := tokenSum(tok)
	var found *bearer
	for i := range f.tokens {
		// Check every token (no early exit) so timing does not reveal which one matched.
		if subtle.ConstantTimeCompare(sum[:], f.tokens[i].sum[:]) == 1 && found == nil {
			found = &f.tokens[i]
		}
	}
	if found != nil {
		return found.grant, nil
	}
	g, err := f.control.byToken(ctx, sum)
	if err != nil && !errors.Is(err, errNoGrant) && !isGrantError(err) {
		return policies.Grant{}, &errStateDown{err}
	}
	if f.jwt != nil && errors.Is(err, errNoGrant) && strings.Count(tok, ".") == 2 {
		return f.authenticateJWT(ctx, tok)
	}
	return g, err
}

// errInvalidToken is the challenge's reason for a token refused outside JWT validation.
var errInvalidToken = errors.New("invalid token")

// jwtError is a JWT that was refused; its Error never holds the token.
type jwtError struct{ err error }

func (e *jwtError) Error() string { return e.err.Error() }
func (e *jwtError) Unwrap() error { return e.err }

// authenticateJWT maps a valid JWT to its grant. A grant of the same name revoked in the state
// store refuses the token too: the operator's revocation holds without waiting for the
// issuer to stop signing.
func (f *httpFront) authenticateJWT(ctx context.Context, tok string) (policies.Grant, error) {
	id, err := f.jwt.Validate(ctx, tok)
	if err != nil {
		return policies.Grant{}, &jwtError{err}
	}
	if _, err := f.control.named(ctx, id.Grant); err != nil {
		return policies.Grant{}, err
	}
	return policies.Grant{ID: id.Grant, Labels: id.Labels}, nil
}

// metadataURL is the absolute URL of the protected-resource metadata.
func (f *httpFront) metadataURL() string {
	u, err := identity.MetadataURL(f.resource)
	if err != nil {
		return ""
	}
	return u
}

func isGrantError(err error) bool {
	var ge *grantError
	return errors.As(err, &ge)
}

// refuse answers a request whose credentials were not accepted: 401 with a challenge, or 503
// when the state store could not tell (the client may retry; nothing is let through).
func (f *httpFront) refuse(w http.ResponseWriter, err error) {
	var down *errStateDown
	if errors.As(err, &down) {
		f.rt.log.Error().Err(err).Str("event", "http.auth_unavailable").Msg("bearer token not checked: state store unavailable")
		http.Error(w, "Service unavailable: grants cannot be checked now; try again", http.StatusServiceUnavailable)
		return
	}
	switch {
	case f.jwt != nil:
		// MCP authorization: the challenge says where the protected-resource metadata is,
		// which names the authorization servers that issue tokens for this resource.
		challenge := err
		if errors.Is(err, errNoToken) {
			challenge = nil
		} else if !errors.As(err, new(*jwtError)) {
			challenge = errInvalidToken // a revoked grant, a token of no grant
		}
		w.Header().Set("WWW-Authenticate", identity.Challenge(f.metadataURL(), challenge))
	case errors.Is(err, errNoToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock", error="invalid_token"`)
	}
	http.Error(w, "Unauthorized: "+err.Error(), http.StatusUnauthorized)
}

// serverFor returns the MCP server of the request's grant, built once per grant.
func (f *httpFront) serverFor(req *http.Request) *mcp.Server {
	g, ok := req.Context().Value(grantKey{}).(policies.Grant)
	if !ok {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Keyed by the grant's name and labels: policies judge the labels the server holds, so a
	// caller must never be served by a server built for the same name with other labels (two
	// tokens of one grant name, a JWT whose claims changed, a grant re-created with fewer).
	key := grantServerKey(g)
	if s, ok := f.servers[key]; ok {
		return s
	}
	s := f.rt.newMCPServer(g, func(call *mcp.CallToolRequest) error {
		// A session is bound to the server (grant) it started on; every call re-checks the
		// token it carries, so a session id replayed with another token cannot borrow the
		// first caller's grant.
		if call.Extra == nil {
			return errors.New("unauthorized: no HTTP request context")
		}
		cg, err := f.authenticate(context.Background(), call.Extra.Header.Get("Authorization"))
		if err != nil {
			return fmt.Errorf("unauthorized: %w", err)
		}
		if cg.ID != g.ID || !maps.Equal(cg.Labels, g.Labels) {
			return errors.New("unauthorized: this session belongs to another grant")
		}
		return nil
	})
	// Added last, so it runs first: before the unlisted-tool router newMCPServer installs.
	s.AddReceivingMiddleware(f.sessionMiddleware(g.ID))
	f.servers[key] = s
	return s
}

// grantServerKey names a grant with its labels, in a fixed order.
func grantServerKey(g policies.Grant) string {
	var b strings.Builder
	b.WriteString(strconv.Quote(g.ID))
	for _, k := range slices.Sorted(maps.Keys(g.Labels)) {
		b.WriteString(" " + strconv.Quote(k) + "=" + strconv.Quote(g.Labels[k]))
	}
	return b.String()
}

// ServeHTTP serves MCP over streamable HTTP on ln until ctx ends, then shuts down gracefully.
func (r *Runtime) ServeHTTP(ctx context.Context, ln net.Listener) error {
	f, err := r.newHTTPFront(ln.Addr().String())
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, peerCacheKey{}, &peerCache{})
		}}
	defer r.tel.m.httpSessions(f.sessions)()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { defer close(swept); f.sessions.run(sweepCtx) }()
	defer func() { stopSweep(); <-swept }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Calls in flight first: Shutdown waits for active requests, and a call's request lasts
	// until the call ends, up to its timeout. Cancelled, each kills its container and writes
	// its record at once.
	r.Shutdown(shutdownCause(ctx))
	r.calls.wait(closeWait)
	// What is left are quick requests (tools/list, an answer being written) and the clients'
	// open event streams, which never end on their own: a short grace for the first, then
	// the rest are closed.
	sctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// URL is the MCP endpoint URL for a listen address.
func URL(listenAddr string) string {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "http://" + listenAddr + MCPPath
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: MCPPath}).String()
}
