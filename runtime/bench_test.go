package runtime

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/pipeline"
)

// The MCP layer's cost per call, as a ratio: BenchmarkMCPCall (client -> in-memory transport ->
// server -> pipeline -> fake backend) against BenchmarkPipelineDirect (the same call handed to
// the pipeline directly). Both use the fake backend, so the difference is JSON-RPC, the SDK and
// the runtime's handler. Run: go test -run '^$' -bench 'MCPCall|PipelineDirect' ./runtime/

func BenchmarkPipelineDirect(b *testing.B) {
	rt := newTestRuntimeTB(b, "", `{"version":"1","default":"allow"}`, &fakeBackend{})
	call := pipeline.Call{Tool: "git_status", Args: json.RawMessage(`{}`), Grant: rt.Grant(), Session: "bench"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res := rt.Run(context.Background(), call); res.Denied {
			b.Fatal(res.Text)
		}
	}
}

func BenchmarkMCPCall(b *testing.B) {
	rt := newTestRuntimeTB(b, "", `{"version":"1","default":"allow"}`, &fakeBackend{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ct, st := mcp.NewInMemoryTransports()
	done := make(chan error, 1)
	go func() { done <- rt.ServeTransport(ctx, st) }()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { cs.Close(); cancel(); <-done }()
	params := &mcp.CallToolParams{Name: "git_status", Arguments: map[string]any{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := cs.CallTool(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
}
