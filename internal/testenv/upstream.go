package testenv

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MetaUpstream is an MCP server over streamable HTTP on 127.0.0.1 whose echo tool keeps the
// _meta of every call it gets: where a test looks for the trace context Airlock passes on.
type MetaUpstream struct {
	URL   string
	mu    sync.Mutex
	metas []map[string]any
}

// StartMetaUpstream starts one, closed when the test ends.
func StartMetaUpstream(t testing.TB) *MetaUpstream {
	u := &MetaUpstream{}
	srv := mcp.NewServer(&mcp.Implementation{Name: "meta-upstream", Version: "1"}, nil)
	type args struct {
		Text string `json:"text"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "echo", Description: "Echoes the text."},
		func(_ context.Context, req *mcp.CallToolRequest, a args) (*mcp.CallToolResult, any, error) {
			u.mu.Lock()
			u.metas = append(u.metas, map[string]any(req.Params.Meta))
			u.mu.Unlock()
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + a.Text}}}, nil, nil
		})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(hs.Close)
	u.URL = hs.URL
	return u
}

// Received is the _meta of each call so far.
func (u *MetaUpstream) Received() []map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.metas)
}
