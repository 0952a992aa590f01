package pipeline

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/policies"
)

// fakeRemote is a RemoteTool whose upstream answers with res (or blocks until its context
// ends when block is set).
type fakeRemote struct {
	schema   *Schema
	withheld string
	res      *mcp.CallToolResult
	err      error
	block    bool
	timeout  time.Duration
	secrets  []string
	calls    int
	args     map[string]any
}

func (f *fakeRemote) Upstream() string     { return "up" }
func (f *fakeRemote) UpstreamName() string { return "echo" }
func (f *fakeRemote) Withheld() (string, string) {
	if f.withheld == "" {
		return "", ""
	}
	return "/pins/up/echo", f.withheld
}
func (f *fakeRemote) Schema() *Schema        { return f.schema }
func (f *fakeRemote) Timeout() time.Duration { return f.timeout }
func (f *fakeRemote) Secrets() []string      { return f.secrets }
func (f *fakeRemote) Invoke(ctx context.Context, args map[string]any, progress func(float64, float64, string)) (*mcp.CallToolResult, bool, error) {
	f.calls++
	f.args = args
	if f.block {
		<-ctx.Done()
		return nil, true, ctx.Err()
	}
	return f.res, true, f.err
}

const remoteSchema = `{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`

func newRemote(t *testing.T, res *mcp.CallToolResult) *fakeRemote {
	t.Helper()
	s, err := CompileInputSchema("echo", []byte(remoteSchema))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeRemote{schema: s, res: res}
}

func (e *env) runRemote(f *fakeRemote, args string) Result {
	return e.p.Run(context.Background(), Call{Tool: "echo", Args: json.RawMessage(args), Grant: policies.Grant{ID: "tester"}, Session: "s1", Remote: f})
}

func TestRemoteResultSanitised(t *testing.T) {
	e := newEnv(t, nil)
	token := "ghp_" + "R8kLq2ZxV7mN4pT9sW3yB6cD1fH5jK0aQe2U"
	png := []byte("\x89PNG\r\n\x1a\nfake")
	f := newRemote(t, &mcp.CallToolResult{
		Content: []mcp.Content{
			&mcp.TextContent{Text: "token " + token + " \x1b]0;title\x07done " + e.state + "/x", Meta: mcp.Meta{"leak": "x"}},
			&mcp.ImageContent{Data: png, MIMEType: "image/png"},
			&mcp.ResourceLink{URI: "file:///r", Name: "n", Description: "header Bearer sekrit-value-123"},
			&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: "mem://a", MIMEType: "text/plain", Blob: []byte("blob " + token)}},
		},
		StructuredContent: map[string]any{"nested": []any{"again " + token}, "n": 3.0},
	})
	f.secrets = []string{"Bearer sekrit-value-123", "sekrit-value-123"}
	res := e.runRemote(f, `{"text":"hi"}`)
	if res.IsError || res.Upstream == nil || !res.Gateway {
		t.Fatalf("result: %+v", res)
	}
	out, _ := json.Marshal(res.Upstream)
	for _, bad := range []string{token, "sekrit-value", "\x1b", e.state, "leak"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("result still holds %q: %s", bad, out)
		}
	}
	if len(res.Upstream.Content) != 4 {
		t.Fatalf("content blocks: %d", len(res.Upstream.Content))
	}
	if img, ok := res.Upstream.Content[1].(*mcp.ImageContent); !ok || string(img.Data) != string(png) {
		t.Errorf("image not passed through: %#v", res.Upstream.Content[1])
	}
	if er := res.Upstream.Content[3].(*mcp.EmbeddedResource); len(er.Resource.Blob) != 0 || !strings.Contains(er.Resource.Text, "[REDACTED:") {
		t.Errorf("text blob not turned into redacted text: %#v", er.Resource)
	}
	if st := res.Upstream.Structured.(map[string]any); st["n"] != 3.0 {
		t.Errorf("structured: %v", st)
	}
	recs := e.records(t)
	r := recs[len(recs)-1]
	if r.Upstream != "up" || r.UpstreamTool != "echo" || r.Decision != "allow" || r.Redactions["upstream-credential"] == 0 || r.ExitCode == nil {
		t.Errorf("record: %+v", r)
	}
	if res.Structured["audit_id"] != r.AuditID || res.Structured["untrusted"] != true {
		t.Errorf("airlock fields: %v", res.Structured)
	}
}

func TestRemoteRefusals(t *testing.T) {
	e := newEnv(t, nil)
	cases := map[string]struct {
		f        func(*fakeRemote)
		args     string
		decision string
		text     string
	}{
		"withheld by pins": {f: func(f *fakeRemote) { f.withheld = "[PIN CHANGED] tool changed" }, args: `{"text":"x"}`, decision: "deny", text: "(rule /pins/up/echo)"},
		"schema":           {args: `{"text":1}`, decision: DecisionInvalid, text: "invalid arguments"},
		"extra key":        {args: `{"text":"x","more":1}`, decision: DecisionInvalid, text: "invalid arguments"},
		"policy":           {args: `{"text":"forbidden"}`, decision: "deny", text: "[POLICY DENIED] No forbidden words."},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newRemote(t, &mcp.CallToolResult{})
			if c.f != nil {
				c.f(f)
			}
			res := e.runRemote(f, c.args)
			if !res.IsError || !strings.Contains(res.Text, c.text) || !res.Gateway || res.Upstream != nil {
				t.Fatalf("result: %+v", res)
			}
			if f.calls != 0 {
				t.Errorf("upstream called %d times", f.calls)
			}
			recs := e.records(t)
			if r := recs[len(recs)-1]; r.Decision != c.decision || r.Upstream != "up" {
				t.Errorf("record: %+v", r)
			}
		})
	}
}

func TestRemoteTimeoutAndError(t *testing.T) {
	e := newEnv(t, nil)
	f := newRemote(t, nil)
	f.block, f.timeout = true, 50*time.Millisecond
	res := e.runRemote(f, `{"text":"x"}`)
	if !res.IsError || !strings.Contains(res.Text, "did not answer within 50ms") {
		t.Fatalf("timeout: %+v", res)
	}
	recs := e.records(t)
	if r := recs[len(recs)-1]; !r.TimedOut || r.Decision != DecisionError {
		t.Errorf("record: %+v", r)
	}
	f = newRemote(t, nil)
	f.err = errDead
	f.secrets = []string{"hunter2-token"}
	res = e.runRemote(f, `{"text":"x"}`)
	if !res.IsError || !strings.Contains(res.Text, "upstream up failed") || strings.Contains(res.Text, "hunter2") {
		t.Fatalf("dead: %+v", res)
	}
	recs = e.records(t)
	if r := recs[len(recs)-1]; strings.Contains(r.Message, "hunter2") || !strings.Contains(r.Message, "connection refused") {
		t.Errorf("record: %+v", r)
	}
	// The upstream's own isError is kept.
	f = newRemote(t, &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "nope"}}})
	if res = e.runRemote(f, `{"text":"x"}`); !res.IsError || res.Text != "nope" {
		t.Fatalf("isError: %+v", res)
	}
}

var errDead = &deadErr{}

type deadErr struct{}

func (*deadErr) Error() string { return "connection refused (sent Authorization: hunter2-token)" }

func TestRemoteBinaryCap(t *testing.T) {
	e := newEnv(t, nil)
	big := make([]byte, DefaultMaxBinaryBytes/2+1)
	f := newRemote(t, &mcp.CallToolResult{Content: []mcp.Content{
		&mcp.ImageContent{Data: big, MIMEType: "image/png"},
		&mcp.AudioContent{Data: big, MIMEType: "audio/wav"},
	}})
	res := e.runRemote(f, `{"text":"x"}`)
	if len(res.Upstream.Content) != 2 {
		t.Fatalf("blocks: %d", len(res.Upstream.Content))
	}
	if tc, ok := res.Upstream.Content[1].(*mcp.TextContent); !ok || !strings.Contains(tc.Text, "withheld") {
		t.Errorf("second block: %#v", res.Upstream.Content[1])
	}
	if res.Structured["truncated"] != true {
		t.Errorf("truncated not set: %v", res.Structured)
	}
}

func TestRemoteStructuredCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxOutputBytes = 1024 })
	f := newRemote(t, &mcp.CallToolResult{StructuredContent: map[string]any{"big": strings.Repeat("x", 2000)}})
	res := e.runRemote(f, `{"text":"x"}`)
	if !res.IsError || res.Upstream.Structured != nil || !strings.Contains(res.Text, "structuredContent of") {
		t.Fatalf("over the cap: %+v", res)
	}
	many := make([]mcp.Content, MaxContentBlocks+5)
	for i := range many {
		many[i] = &mcp.TextContent{Text: "b"}
	}
	f = newRemote(t, &mcp.CallToolResult{Content: many})
	res = e.runRemote(f, `{"text":"x"}`)
	if len(res.Upstream.Content) != MaxContentBlocks+1 || res.Structured["truncated"] != true {
		t.Fatalf("blocks: %d", len(res.Upstream.Content))
	}
}
