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
	// OnToolsChanged is called (from the session's goroutine; it must not block) when the
	// upstream sends notifications/tools/list_changed on any session.
	OnToolsChanged func()
	// Version is Airlock's, sent as clientInfo.version.
	Version string
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
	client *mcp.Client
	// lister is a stdio upstream's client for the servers started only to list the tools
	// (ConnectLister): it ignores their tools/list_changed.
	lister *mcp.Client
	http   *http.Client
	// progress routes the upstream's progress notifications to the calls that asked for
	// them, by the token Airlock sent (unique per call).
	progress sync.Map // string -> func(float64, float64, string)
}

// NewStdio builds the client of a stdio upstream, whose server o.Launch starts for each
// session. Nothing is started yet.
func NewStdio(o Options) (*Server, error) {
	if o.Launch == nil || o.URL != "" {
		return nil, fmt.Errorf("upstream %s: a stdio upstream needs a launcher and no URL", o.Name)
	}
	r := &Server{opts: o}
	r.client = r.newClient(true)
	r.lister = r.newClient(false)
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
		Transport: &headerTransport{next: base, origin: u, headers: o.Headers},
		// A redirect would take the brokered credentials, or the agent's arguments, to a
		// place the operator did not name: refused.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return fmt.Errorf("upstream %s redirected; Airlock does not follow redirects of upstreams (configure the final URL)", o.Name)
		},
	}
	r.client = r.newClient(true)
	return r, nil
}

// newClient is the MCP client the sessions with the upstream use; with toolsChanged, the
// upstream's tools/list_changed is reported to Options.OnToolsChanged.
func (r *Server) newClient(toolsChanged bool) *mcp.Client {
	o := r.opts
	var onChanged func(context.Context, *mcp.ToolListChangedRequest)
	if toolsChanged && o.OnToolsChanged != nil {
		onChanged = func(context.Context, *mcp.ToolListChangedRequest) { o.OnToolsChanged() }
	}
	return mcp.NewClient(&mcp.Implementation{Name: "airlock", Title: "Airlock gateway", Version: o.Version}, &mcp.ClientOptions{
		// No roots, sampling or elicitation: an upstream gets nothing from Airlock's side but
		// answers to its own tool calls.
		Capabilities:           &mcp.ClientCapabilities{},
		ToolListChangedHandler: onChanged,
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			tok, ok := req.Params.ProgressToken.(string)
			if !ok {
				return
			}
			if f, ok := r.progress.Load(tok); ok {
				f.(func(float64, float64, string))(req.Params.Progress, req.Params.Total, req.Params.Message)
			}
		},
	})
}

// Name is the upstream's configured name.
func (r *Server) Name() string { return r.opts.Name }

// Stdio reports whether the upstream is a stdio server (each session starts one).
func (r *Server) Stdio() bool { return r.opts.Launch != nil }

// Connect opens a new MCP session with the upstream: for a stdio upstream, it starts a server
// of its own, which ends with the session.
func (r *Server) Connect(ctx context.Context) (*Session, error) {
	return r.connect(ctx, r.client)
}

// ConnectLister opens a session to list the upstream's tools once: Connect, except that a
// stdio upstream's server (started for this session only) has its tools/list_changed
// ignored. Many servers send one as they start (server-everything registers tools once the
// client is initialized); reported, it would have the catalog listed again, by another
// server started for that, which sends one again: a new container every few seconds for as
// long as Airlock runs. What such a server lists after its start is what the listing reads.
func (r *Server) ConnectLister(ctx context.Context) (*Session, error) {
	if r.lister == nil {
		return r.connect(ctx, r.client)
	}
	return r.connect(ctx, r.lister)
}

func (r *Server) connect(ctx context.Context, client *mcp.Client) (*Session, error) {
	if r.opts.Launch == nil {
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: r.opts.URL, HTTPClient: r.http, MaxRetries: 2}, nil)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: connect: %w", r.opts.Name, err)
		}
		return r.session(cs, nil), nil
	}
	p, err := r.opts.Launch(ctx)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: starting its server: %w", r.opts.Name, err)
	}
	cs, err := client.Connect(ctx, &mcp.IOTransport{Reader: p.Stdout, Writer: p.Stdin}, nil)
	if err != nil {
		p.Stop()
		select {
		case <-p.Done:
			return nil, fmt.Errorf("upstream %s: before the MCP handshake completed, its server %s", r.opts.Name, p.Exited())
		default:
		}
		return nil, fmt.Errorf("upstream %s: connect: %w", r.opts.Name, err)
	}
	return r.session(cs, p), nil
}

func (r *Server) session(cs *mcp.ClientSession, p *Pipes) *Session {
	s := &Session{r: r, cs: cs, proc: p, done: make(chan struct{})}
	go func() {
		_ = cs.Wait()
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
}

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

// Call calls a tool by the upstream's name for it. sent reports whether the request may have
// reached the upstream. Cancelling ctx cancels the request (the SDK sends
// notifications/cancelled). progress, if not nil, receives the upstream's progress reports.
func (s *Session) Call(ctx context.Context, name string, args map[string]any, progress func(progress, total float64, message string)) (res *mcp.CallToolResult, sent bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	params := &mcp.CallToolParams{Name: name, Arguments: args}
	if progress != nil {
		tok := "airlock-" + rand.Text()
		s.r.progress.Store(tok, progress)
		defer s.r.progress.Delete(tok)
		params.SetProgressToken(tok)
	}
	res, err = s.cs.CallTool(ctx, params)
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
}

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if len(t.headers) > 0 && req.URL.Scheme == t.origin.Scheme && req.URL.Host == t.origin.Host {
		req = req.Clone(req.Context())
		for k, v := range t.headers {
			req.Header.Set(k, v)
		}
	}
	return t.next.RoundTrip(req)
}
