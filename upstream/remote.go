// Package upstream connects Airlock's gateway to third-party MCP servers ("upstreams"): today
// remote servers over streamable HTTP, with credentials Airlock holds. It only talks MCP: what
// the tools may do (pins, policy, sanitising, audit) is decided by the packages that use it.
package upstream

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MaxTools bounds the tools one upstream may list: a listing is pinned, shown to the model and
// held in memory, and an upstream must not grow any of them without bound.
const MaxTools = 1000

// Options describe one remote upstream.
type Options struct {
	Name string
	// URL is the upstream's streamable-HTTP endpoint.
	URL string
	// Headers are sent with every request to the upstream's origin, never elsewhere.
	Headers map[string]string
	// OnToolsChanged is called (from the session's goroutine; it must not block) when the
	// upstream sends notifications/tools/list_changed on any session.
	OnToolsChanged func()
	// Version is Airlock's, sent as clientInfo.version.
	Version string
}

// Remote is a remote streamable-HTTP upstream. Sessions with it are opened by Connect; a
// Remote holds no connection of its own. It is safe for concurrent use.
type Remote struct {
	opts   Options
	origin *url.URL
	client *mcp.Client
	http   *http.Client
	// progress routes the upstream's progress notifications to the calls that asked for
	// them, by the token Airlock sent (unique per call).
	progress sync.Map // string -> func(float64, float64, string)
}

// NewRemote checks o and builds the client. Nothing is connected yet.
func NewRemote(o Options) (*Remote, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("upstream %s: url %q: want an http or https URL", o.Name, o.URL)
	}
	r := &Remote{opts: o, origin: u}
	base := http.DefaultTransport.(*http.Transport).Clone()
	r.http = &http.Client{
		Transport: &headerTransport{next: base, origin: u, headers: o.Headers},
		// A redirect would take the brokered credentials, or the agent's arguments, to a
		// place the operator did not name: refused.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return fmt.Errorf("upstream %s redirected; Airlock does not follow redirects of upstreams (configure the final URL)", o.Name)
		},
	}
	r.client = mcp.NewClient(&mcp.Implementation{Name: "airlock", Title: "Airlock gateway", Version: o.Version}, &mcp.ClientOptions{
		// No roots, sampling or elicitation: an upstream gets nothing from Airlock's side but
		// answers to its own tool calls.
		Capabilities: &mcp.ClientCapabilities{},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			if o.OnToolsChanged != nil {
				o.OnToolsChanged()
			}
		},
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
	return r, nil
}

// Name is the upstream's configured name.
func (r *Remote) Name() string { return r.opts.Name }

// Connect opens a new MCP session with the upstream.
func (r *Remote) Connect(ctx context.Context) (*Session, error) {
	cs, err := r.client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: r.opts.URL, HTTPClient: r.http, MaxRetries: 2}, nil)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: connect: %w", r.opts.Name, err)
	}
	return &Session{r: r, cs: cs}, nil
}

// Session is one MCP session with an upstream.
type Session struct {
	r  *Remote
	cs *mcp.ClientSession
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
		return nil, !errors.Is(err, mcp.ErrConnectionClosed), fmt.Errorf("tools/call %s: %w", name, err)
	}
	return res, true, nil
}

// Wait returns when the session has ended: closed by Airlock, or by the upstream going away
// (its streams failed past the transport's retries).
func (s *Session) Wait() error { return s.cs.Wait() }

// Close ends the session (the SDK sends the HTTP DELETE that ends it on the upstream too).
func (s *Session) Close() error {
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
