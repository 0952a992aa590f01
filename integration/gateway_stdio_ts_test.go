package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// stdioTSCall is a tsCall that may ask for progress (client.mjs's "progress": true).
type stdioTSCall struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
	Progress  bool           `json:"progress,omitempty"`
}

// stdioTSOutput is what client.mjs prints, with the parts these tests read.
type stdioTSOutput struct {
	Tools []struct {
		Name         string         `json:"name"`
		OutputSchema map[string]any `json:"outputSchema"`
	} `json:"tools"`
	Calls []tsCallResult `json:"calls"`
}

// TestGatewayStdioTypeScriptClient calls server-everything, run by Airlock as a stdio upstream
// in its sandbox, with the official TypeScript SDK over streamable HTTP. The SDK validates
// every structuredContent against the tool's outputSchema and throws when it does not
// validate, so a structured result that reaches it intact is one the upstream's schema holds.
func TestGatewayStdioTypeScriptClient(t *testing.T) {
	node, dir := tsClient(t)
	se := newEverythingStdioEnv(t, "ev-stdio-ts")
	s := se.startHTTP(t)
	calls := []stdioTSCall{
		{Name: "ev__echo", Arguments: map[string]any{"message": "hi from ts"}},
		{Name: "ev__trigger-long-running-operation", Arguments: map[string]any{"duration": 2, "steps": 4}, Progress: true},
		{Name: "ev__get-tiny-image", Arguments: map[string]any{}},
		{Name: "ev__get-structured-content", Arguments: map[string]any{"location": "New York"}},
		{Name: "ev__echo", Arguments: map[string]any{"message": "rm -rf / please"}},
		{Name: "ev__get-env", Arguments: map[string]any{}},
	}
	plan, err := json.Marshal(map[string]any{"transport": "http", "url": s.endpoint, "calls": calls, "terminate": true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", string(plan))
	cmd.Dir = dir
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &mcpLogWriter{t: t, prefix: "tsclient"}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, stdout.String())
	}
	t.Logf("the TypeScript client's session (list, %d calls, one server start): %s", len(calls), time.Since(start).Round(time.Millisecond))
	var out stdioTSOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("client.mjs printed no JSON result: %v\n%s", err, stdout.String())
	}
	checkTSCalls(t, out.Calls, len(calls))
	text := func(i int) string { return out.Calls[i].text() }
	want := []struct {
		isError bool
		text    string
	}{{false, "Echo: hi from ts"}, {false, "Long running operation completed"}, {false, ""}, {false, ""},
		{true, "[POLICY DENIED] No destructive words."}, {false, `"API_TOKEN": "[REDACTED:upstream-credential]"`}}
	for i, w := range want {
		if r := out.Calls[i].Result; r.IsError != w.isError || !strings.Contains(text(i), w.text) {
			t.Errorf("call %d %s: isError %v text %.300q, want %v %q", i, calls[i].Name, r.IsError, text(i), w.isError, w.text)
		}
	}

	var progress []float64
	for _, p := range out.Calls[1].Progress {
		progress = append(progress, p.Progress)
		if p.Total != 4 {
			t.Errorf("progress %v: total %v, want 4", p.Progress, p.Total)
		}
	}
	// Every report, the one sent just ahead of the result included.
	if !slices.Equal(progress, []float64{1, 2, 3, 4}) {
		t.Errorf("progress %v, want 1..4", progress)
	}
	t.Logf("progress the TypeScript client received: %v", progress)

	img := false
	for _, b := range out.Calls[2].Result.Content {
		img = img || (b.Type == "image" && b.MIMEType == "image/png" && strings.HasPrefix(b.Data, "iVBORw0KGgo"))
	}
	if !img {
		t.Errorf("no PNG image block: %+v", out.Calls[2].Result.Content)
	}

	hasSchema := false
	for _, tl := range out.Tools {
		hasSchema = hasSchema || (tl.Name == "ev__get-structured-content" && tl.OutputSchema != nil)
	}
	if st := out.Calls[3].Result.StructuredContent; !hasSchema || st["temperature"] == nil || st["audit_id"] != nil {
		t.Errorf("structured content %v (outputSchema listed: %v)", st, hasSchema)
	}
	if st := out.Calls[4].Result.StructuredContent; st != nil {
		t.Errorf("the denial carries structuredContent %v", st)
	}

	env := text(5)
	if strings.Contains(env, se.secret) || strings.Contains(env, plantedGitHubToken) || !strings.Contains(env, `"PLANTED": "[REDACTED:`) {
		t.Errorf("get-env through the TypeScript client:\n%s", env)
	}

	// The client ended its session (DELETE): Airlock stops that session's server.
	se.u.waitServers(t, 0, 15*time.Second, "after the TypeScript client's session ended")
	s.stop()
	count := map[string]int{}
	for _, r := range readGatewayAudit(t, se.audit) {
		if r.Upstream != se.u.name || "ev__"+r.UpstreamTool != r.Tool {
			t.Errorf("record %s: upstream %q tool %q upstream_tool %q", r.AuditID, r.Upstream, r.Tool, r.UpstreamTool)
		}
		count[r.Tool+" "+r.Decision]++
	}
	for want, n := range map[string]int{"ev__echo allow": 1, "ev__echo deny": 1, "ev__get-env allow": 1,
		"ev__trigger-long-running-operation allow": 1, "ev__get-tiny-image allow": 1, "ev__get-structured-content allow": 1} {
		if count[want] != n {
			t.Errorf("audit: %d records %q, want %d (all: %v)", count[want], want, n, count)
		}
	}
}
