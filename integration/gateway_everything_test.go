package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestGatewayEverything puts the reference MCP server (server-everything, streamable HTTP on
// 127.0.0.1) behind a real `airlock serve --http` and calls it with the Go SDK client:
// plain text, an image, structured content validated against the upstream's outputSchema,
// progress of a long operation, a policy denial, stage 2 against the upstream's input schema,
// secrets redacted from text blocks, and the audit records of it all.
func TestGatewayEverything(t *testing.T) {
	planted := "ghp_" + "R8kLq2ZxV7mN4pT9sW3yB6cD1fH5jK0aQe2U"
	endpoint := startEverything(t, "AIRLOCK_PLANTED_TOKEN="+planted)
	name := uniqueUpstream(t, "everything")
	const policy = `{
  "version": "1",
  "default": "allow",
  "hide": ["ev__get-env"],
  "tools": {
    "ev__echo": {
      "deny_if": [{"conditions": [{"path": "args.message", "op": "contains", "value": "rm -rf"}],
                   "on_deny": "No destructive words."}]
    }
  }
}`
	e := newMCPEnv(t, policy, nil)
	e.extraYAML = fmt.Sprintf("builtins: []\nupstreams:\n  %s:\n    url: %s\n    prefix: ev\n    timeout: 20s\n", name, endpoint)
	s := e.startHTTP(t)

	var mu sync.Mutex
	var progress []float64
	cs := connectHTTP(t, s, "", &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progress = append(progress, req.Params.Progress)
			mu.Unlock()
		},
	})
	start := time.Now()
	list, err := cs.ListTools(gatewayCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first tools/list (connects to the upstream, pins %d tools): %s", len(list.Tools), time.Since(start).Round(time.Millisecond))
	tools := map[string]*mcp.Tool{}
	for _, tl := range list.Tools {
		tools[tl.Name] = tl
	}
	for _, want := range []string{"ev__echo", "ev__get-tiny-image", "ev__get-structured-content", "ev__trigger-long-running-operation", "ev__get-sum"} {
		if tools[want] == nil {
			t.Errorf("tools/list lacks %s; got %d tools", want, len(list.Tools))
		}
	}
	if tools["ev__get-env"] != nil {
		t.Error("ev__get-env is hidden by the policy but listed")
	}
	if tools["ev__get-structured-content"] != nil && tools["ev__get-structured-content"].OutputSchema == nil {
		t.Error("ev__get-structured-content lost the upstream's outputSchema")
	}

	call := func(tool string, args map[string]any, meta mcp.Meta) *mcp.CallToolResult {
		t.Helper()
		p := &mcp.CallToolParams{Name: tool, Arguments: args}
		if meta != nil {
			p.Meta = meta
		}
		start := time.Now()
		res, err := cs.CallTool(gatewayCtx(t), p)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		t.Logf("%s: %s", tool, time.Since(start).Round(time.Millisecond))
		return res
	}

	res := call("ev__echo", map[string]any{"message": "hello through airlock"}, nil)
	if res.IsError || mcpText(res) != "Echo: hello through airlock" {
		t.Errorf("echo: %v %q", res.IsError, mcpText(res))
	}
	if res.Meta["airlock/audit_id"] == nil || res.Meta["airlock/untrusted"] != true {
		t.Errorf("echo: Airlock's fields missing from _meta: %v", res.Meta)
	}
	// Warm: the upstream session of this Airlock session is open now.
	call("ev__echo", map[string]any{"message": "again"}, nil)

	res = call("ev__get-tiny-image", map[string]any{}, nil)
	var img *mcp.ImageContent
	for _, c := range res.Content {
		if i, ok := c.(*mcp.ImageContent); ok {
			img = i
		}
	}
	if res.IsError || img == nil || img.MIMEType != "image/png" || len(img.Data) < 8 || string(img.Data[1:4]) != "PNG" {
		raw, _ := json.Marshal(res)
		t.Errorf("get-tiny-image: want a PNG image block, got %.300s", raw)
	}

	// The Go SDK client validates structuredContent against the tool's outputSchema.
	res = call("ev__get-structured-content", map[string]any{"location": "Chicago"}, nil)
	if st, ok := res.StructuredContent.(map[string]any); res.IsError || !ok || st["temperature"] == nil || st["audit_id"] != nil {
		t.Errorf("structured content: %v %#v", res.IsError, res.StructuredContent)
	}

	// Stage 2 with the upstream's schema: an unknown city is refused before the upstream.
	res = call("ev__get-structured-content", map[string]any{"location": "Atlantis"}, nil)
	if !res.IsError || !strings.Contains(mcpText(res), "invalid arguments") {
		t.Errorf("schema: %q", mcpText(res))
	}
	res = call("ev__echo", map[string]any{"message": "please rm -rf /"}, nil)
	if !res.IsError || !strings.Contains(mcpText(res), "[POLICY DENIED] No destructive words.") {
		t.Errorf("policy: %q", mcpText(res))
	}
	res = call("ev__get-env", map[string]any{}, nil)
	if !res.IsError || !strings.Contains(mcpText(res), "[POLICY DENIED]") || strings.Contains(mcpText(res), planted) {
		t.Errorf("hidden tool: %q", mcpText(res))
	}

	// A secret the upstream returns is redacted (the agent put it in, here; an upstream's
	// own secrets go the same way).
	res = call("ev__echo", map[string]any{"message": "token " + planted}, nil)
	if strings.Contains(mcpText(res), planted) || !strings.Contains(mcpText(res), "[REDACTED:") {
		t.Errorf("secret: %q", mcpText(res))
	}

	res = call("ev__trigger-long-running-operation", map[string]any{"duration": 2, "steps": 4}, mcp.Meta{"progressToken": "p1"})
	mu.Lock()
	got := append([]float64(nil), progress...)
	mu.Unlock()
	if res.IsError || len(got) < 2 {
		t.Errorf("long operation: isError %v, %d progress notifications (%v): %q", res.IsError, len(got), got, mcpText(res))
	}

	s.stop()
	recs := readAudit(t, e.audit)
	count := map[string]int{}
	for _, r := range recs {
		count[r.Tool+" "+r.Decision]++
	}
	for want, n := range map[string]int{
		"ev__echo allow":                           3,
		"ev__echo deny":                            1,
		"ev__get-env deny":                         1,
		"ev__get-structured-content invalid":       1,
		"ev__trigger-long-running-operation allow": 1,
		"ev__get-tiny-image pin_first_use":         1,
	} {
		if count[want] != n {
			t.Errorf("audit: %d records %q, want %d (all: %v)", count[want], want, n, count)
		}
	}
	for _, r := range recs {
		if r.Tool == "ev__echo" && r.Decision == "allow" && strings.Contains(r.Message, planted) {
			t.Errorf("audit record holds the secret: %+v", r)
		}
	}
}
