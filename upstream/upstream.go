// Package upstream connects Airlock's gateway to third-party MCP servers ("upstreams"): remote
// servers over streamable HTTP, with credentials Airlock holds, and stdio servers that a
// Launcher starts (in a sandbox) for each session. It only talks MCP: what the tools may do
// (pins, policy, sanitising, audit) and where a stdio server runs are decided by the packages
// that use it.
package upstream

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MaxTools bounds the tools one upstream may list: a listing is pinned, shown to the model and
// held in memory, and an upstream must not grow any of them without bound.
const MaxTools = 1000

// Options describe one upstream: a remote one (URL) or a stdio one (Launch).
type Options struct {
	Name string
	// URL is a remote upstream's streamable-HTTP endpoint.
	URL string
	// Launch starts a stdio upstream's server for one session.
	Launch Launcher
	// Headers are sent with every request to the upstream's origin, never elsewhere.
	Headers map[string]string
	// OnToolsChanged is called (from the session's goroutine; it must not block) with the
	// session it arrived on (nil if it ended already) when the
	// upstream sends notifications/tools/list_changed on any session.
	OnToolsChanged func(*Session)
	// Version is Airlock's, sent as clientInfo.version.
	Version string
	// CallMeta, when set, returns entries for the _meta of each tools/call sent to the
	// upstream, from the call's context: the W3C trace context (traceparent, tracestate) of
	// Airlock's span, so the upstream's spans join the call's trace.
	CallMeta func(ctx context.Context) map[string]string
}

// Launcher starts one instance of a stdio server, whose end the returned Pipes report. ctx
// bounds the start only.
type Launcher func(ctx context.Context) (*Pipes, error)

// Pipes are a started stdio server: its stdout and stdin, a channel closed when it is gone,
// Exited (why it ended, for error messages; valid once Done is closed), and Stop, which ends
// it (close stdin, a grace, kill) and returns once it is gone.
type Pipes struct {
	Stdout io.ReadCloser
	Stdin  io.WriteCloser
	Done   <-chan struct{}
	Exited func() string
	Stop   func()
}

// Server is an upstream MCP server. Sessions with it are opened by Connect; a Server holds no
// connection of its own. It is safe for concurrent use.
type Server struct {
	opts   Options
	origin *url.URL
	client *mcp.Client // for sessions without a Peer: no elicitation
	// eliciting is for sessions whose Peer can elicit: it offers elicitation, and routes
	// the upstream's requests to the session's Peer.
	eliciting *mcp.Client
	peers     sync.Map // *mcp.ClientSession -> Peer
	sessions  sync.Map // *mcp.ClientSession -> *Session, while open
	http      *http.Client
	// progress routes the upstream's progress notifications to the calls that asked for
	// them, by the token Airlock sent (unique per call).
	progress sync.Map // string -> *progressRoute
}

// NewStdio builds the client of a stdio upstream, whose server o.Launch starts for each
// session. Nothing is started yet.
func NewStdio(o Options) (*Server, error) {
	if o.Launch == nil || o.URL != "" {
		return nil, fmt.Errorf("upstream %s: a stdio upstream needs a launcher and no URL", o.Name)
	}
	r := &Server{opts: o}
	r.client, r.eliciting = r.newClient(false), r.newClient(true)
	return r, nil
}

// NewRemote checks o and builds the client of a remote upstream. Nothing is connected yet.
func NewRemote(o Options) (*Server, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("upstream %s: url %q: want an http or https URL", o.Name, o.URL)
	}
	if o.Launch != nil {
		return nil, fmt.Errorf("upstream %s: a remote upstream has no launcher", o.Name)
	}
	r := &Server{opts: o, origin: u}
	base := http.DefaultTransport.(*http.Transport).Clone()
	r.http = &http.Client{
		Transport: &headerTransport{next: base, origin: u, headers: o.Headers, watch: r.watch},
		// A redirect would take the brokered credentials, or the agent's arguments, to a
		// place the operator did not name: refused.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return fmt.Errorf("upstream %s redirected; Airlock does not follow redirects of upstreams (configure the final URL)", o.Name)
		},
	}
	r.client, r.eliciting = r.newClient(false), r.newClient(true)
	return r, nil
}

// newClient is the MCP client sessions with the upstream use. No roots and no sampling: an
// upstream gets nothing from Airlock's side but answers to its own tool calls, and, with
// eliciting, questions to the agent's user that the session's Peer forwards.
func (r *Server) newClient(eliciting bool) *mcp.Client {
	o := r.opts
	caps := &mcp.ClientCapabilities{}
	var elicit func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error)
	if eliciting {
		caps.Elicitation = &mcp.ElicitationCapabilities{}
		elicit = func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			p, ok := r.peers.Load(req.Session)
			if !ok {
				return nil, fmt.Errorf("elicitation is not available on this session")
			}
			return p.(Peer).Elicit(ctx, req.Params)
		}
	}
	return mcp.NewClient(&mcp.Implementation{Name: "airlock", Title: "Airlock gateway", Version: o.Version}, &mcp.ClientOptions{
		Capabilities:       caps,
		ElicitationHandler: elicit,
		// An upstream's input requests (MCP multi round-trip) go back to Airlock's client
		// as its own, through the pipeline; the SDK must not answer them here.
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
		ToolListChangedHandler: func(_ context.Context, req *mcp.ToolListChangedRequest) {
			if o.OnToolsChanged != nil {
				var s *Session
				if v, ok := r.sessions.Load(req.Session); ok {
					s = v.(*Session)
				}
				o.OnToolsChanged(s)
			}
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			tok, ok := req.Params.ProgressToken.(string)
			if !ok {
				return
			}
			if v, ok := r.progress.Load(tok); ok {
				v.(*progressRoute).deliver(req.Params.Progress, req.Params.Total, req.Params.Message)
			}
		},
	})
}

// watch returns rd read through a progressWatch that counts this upstream's progress
// notifications for the calls that wait for them.
func (r *Server) watch(rd io.Reader) io.Reader {
	return newProgressWatch(rd, func(tok string) *progressRoute {
		if v, ok := r.progress.Load(tok); ok {
			return v.(*progressRoute)
		}
		return nil
	})
}

// Name is the upstream's configured name.
func (r *Server) Name() string { return r.opts.Name }

// Stdio reports whether the upstream is a stdio server (each session starts one).
func (r *Server) Stdio() bool { return r.opts.Launch != nil }

// Peer is the client session of Airlock's that a session with the upstream serves.
type Peer interface {
	// CanElicit reports whether the upstream may be offered elicitation.
	CanElicit() bool
	// Elicit asks the agent's user on the upstream's behalf.
	Elicit(ctx context.Context, p *mcp.ElicitParams) (*mcp.ElicitResult, error)
}

// Connect opens a new MCP session with the upstream: for a stdio upstream, it starts a server
// of its own, which ends with the session. peer, if not nil, is the Airlock client session it
// serves: if that can elicit, the upstream is offered elicitation, routed to it.
func (r *Server) Connect(ctx context.Context, peer Peer) (*Session, error) {
	client := r.client
	if peer != nil && peer.CanElicit() {
		client = r.eliciting
	}
	var t mcp.Transport
	var p *Pipes
	if r.opts.Launch == nil {
		t = &mcp.StreamableClientTransport{Endpoint: r.opts.URL, HTTPClient: r.http, MaxRetries: 2}
	} else {
		var err error
		if p, err = r.opts.Launch(ctx); err != nil {
			return nil, fmt.Errorf("upstream %s: starting its server: %w", r.opts.Name, err)
		}
		t = &mcp.IOTransport{Reader: watched{Reader: r.watch(p.Stdout), Closer: p.Stdout}, Writer: p.Stdin}
	}
	cs, err := client.Connect(ctx, t, nil)
	if err != nil {
		if p != nil {
			p.Stop()
			select {
			case <-p.Done:
				return nil, fmt.Errorf("upstream %s: before the MCP handshake completed, its server %s", r.opts.Name, p.Exited())
			default:
			}
		}
		return nil, fmt.Errorf("upstream %s: connect: %w", r.opts.Name, err)
	}
	if client == r.eliciting {
		r.peers.Store(cs, peer)
	}
	s := r.session(cs, p)
	s.eliciting = client == r.eliciting
	return s, nil
}

func (r *Server) session(cs *mcp.ClientSession, p *Pipes) *Session {
	s := &Session{r: r, cs: cs, proc: p, done: make(chan struct{})}
	r.sessions.Store(cs, s)
	go func() {
		_ = cs.Wait()
		r.peers.Delete(cs)
		r.sessions.Delete(cs)
		close(s.done)
	}()
	return s
}

// Session is one MCP session with an upstream (and, for a stdio upstream, its server).
type Session struct {
	r    *Server
	cs   *mcp.ClientSession
	proc *Pipes        // a stdio upstream's server; nil for a remote one
	done chan struct{} // closed when the session has ended
	// eliciting: the upstream was offered elicitation, as the catalog always is (a server
	// may list other tools to a client that cannot answer questions).
	eliciting bool
}

// OffersElicitation reports whether the upstream was offered elicitation on this session.
func (s *Session) OffersElicitation() bool { return s.eliciting }

// Tools lists the upstream's tools (all pages), at most MaxTools.
func (s *Session) Tools(ctx context.Context) ([]*mcp.Tool, error) {
	var out []*mcp.Tool
	for t, err := range s.cs.Tools(ctx, nil) {
		if err != nil {
			return nil, fmt.Errorf("upstream %s: tools/list: %w", s.r.opts.Name, err)
		}
		if len(out) == MaxTools {
			return nil, fmt.Errorf("upstream %s: lists more than %d tools", s.r.opts.Name, MaxTools)
		}
		out = append(out, t)
	}
	return out, nil
}

// Input is the retry of a call whose upstream asked questions first (MCP multi round-trip):
// the client's answers and the upstream's request state.
type Input struct {
	Responses mcp.InputResponseMap
	State     string
}

// Call calls a tool by the upstream's name for it. sent reports whether the request may have
// reached the upstream. Cancelling ctx cancels the request (the SDK sends
// notifications/cancelled). progress, if not nil, receives the upstream's progress reports.
func (s *Session) Call(ctx context.Context, name string, args map[string]any, progress func(progress, total float64, message string), in *Input) (res *mcp.CallToolResult, sent bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	params := &mcp.CallToolParams{Name: name, Arguments: args}
	if s.r.opts.CallMeta != nil {
		for k, v := range s.r.opts.CallMeta(ctx) {
			if params.Meta == nil {
				params.Meta = mcp.Meta{}
			}
			params.Meta[k] = v
		}
	}
	if in != nil {
		params.InputResponses, params.RequestState = in.Responses, in.State
	}
	var route *progressRoute
	if progress != nil {
		tok := "airlock-" + rand.Text()
		route = &progressRoute{fn: progress}
		s.r.progress.Store(tok, route)
		defer s.r.progress.Delete(tok)
		params.SetProgressToken(tok)
	}
	res, err = s.cs.CallTool(ctx, params)
	if route != nil && err == nil {
		// The progress the upstream sent before its result, delivered before the result.
		route.settle(ctx)
	}
	if err != nil {
		if s.proc != nil && ctx.Err() == nil && s.lost(err) {
			// The server died under the call: say how, which is what the operator needs.
			select {
			case <-s.proc.Done:
				return nil, true, fmt.Errorf("tools/call %s: the server of upstream %s %s during the call", name, s.r.opts.Name, s.proc.Exited())
			case <-time.After(exitReportWait):
			}
		}
		return nil, !errors.Is(err, mcp.ErrConnectionClosed), fmt.Errorf("tools/call %s: %w", name, err)
	}
	return res, true, nil
}

// lost reports whether a call's error means the connection to the server is gone.
func (s *Session) lost(err error) bool {
	if errors.Is(err, mcp.ErrConnectionClosed) || errors.Is(err, io.EOF) {
		return true
	}
	select {
	case <-s.done:
		return true
	case <-s.proc.Done:
		return true
	default:
		return false
	}
}

// exitReportWait is how long a failed call waits for a stdio server's exit to be known, so its
// error can say how the server ended.
const exitReportWait = 2 * time.Second

// Wait returns when the session has ended: closed by Airlock, or by the upstream going away
// (its streams failed past the transport's retries, or its stdio server exited).
func (s *Session) Wait() error { return s.cs.Wait() }

// Open reports whether the session has not ended.
func (s *Session) Open() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Close ends the session: the SDK sends the HTTP DELETE that ends it on a remote upstream;
// a stdio upstream's server gets end-of-file on stdin, a grace period, then is killed and its
// container removed.
func (s *Session) Close() error {
	if s.proc != nil {
		// The server first, while the session still reads its stdout: closing the session
		// first closes that pipe under a server that may still write (progress of a call the
		// agent cancelled, say), which then dies of EPIPE, and an exit before Stop looks like
		// a crash (logged as one, and the next start waits out a restart backoff).
		s.proc.Stop()
	}
	done := make(chan error, 1)
	go func() { done <- s.cs.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		// A hung upstream must not hold Airlock's shutdown; the connection is abandoned.
		return fmt.Errorf("upstream %s: session close timed out", s.r.opts.Name)
	}
}

// headerTransport adds the brokered headers to requests for the upstream's origin only.
type headerTransport struct {
	next    http.RoundTripper
	origin  *url.URL
	headers map[string]string
	watch   func(io.Reader) io.Reader
}

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if len(t.headers) > 0 && req.URL.Scheme == t.origin.Scheme && req.URL.Host == t.origin.Host {
		req = req.Clone(req.Context())
		for k, v := range t.headers {
			req.Header.Set(k, v)
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err == nil && t.watch != nil && resp.Body != nil {
		resp.Body = watched{Reader: t.watch(resp.Body), Closer: resp.Body}
	}
	return resp, err
}
