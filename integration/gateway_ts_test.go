package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestGatewayTypeScriptClient calls server-everything through `airlock serve --http` with the
// official TypeScript SDK, which validates every result's structuredContent against the tool's
// outputSchema (error results included) and throws when it does not validate: the upstream's
// structured content must reach it untouched by Airlock's own fields, and Airlock's refusals
// must carry none.
func TestGatewayTypeScriptClient(t *testing.T) {
	node, dir := tsClient(t)
	endpoint := startEverything(t)
	name := uniqueUpstream(t, "everything-ts")
	policy := `{"version":"1","default":"allow","tools":{"ev__echo":{"deny_if":[{"conditions":[{"path":"args.message","op":"contains","value":"drop table"}],"on_deny":"No SQL."}]}}}`
	e := newMCPEnv(t, policy, nil)
	e.extraYAML = fmt.Sprintf("builtins: []\nupstreams:\n  %s:\n    url: %s\n    prefix: ev\n", name, endpoint)
	s := e.startHTTP(t)
	calls := []tsCall{
		{Name: "ev__echo", Arguments: map[string]any{"message": "hi from ts"}},
		{Name: "ev__get-structured-content", Arguments: map[string]any{"location": "New York"}},
		{Name: "ev__get-structured-content", Arguments: map[string]any{"location": "Atlantis"}},
		{Name: "ev__echo", Arguments: map[string]any{"message": "drop table users"}},
		{Name: "ev__get-tiny-image", Arguments: map[string]any{}},
		{Name: "ev__get-sum", Arguments: map[string]any{"a": 2, "b": 3}},
	}
	out := runTSClient(t, node, dir, tsPlan{Transport: "http", URL: s.endpoint, Calls: calls})
	s.stop()
	checkTSCalls(t, out.Calls, len(calls))
	text := func(i int) string { return out.Calls[i].text() }
	want := []struct {
		isError bool
		text    string
	}{{false, "Echo: hi from ts"}, {false, ""}, {true, "invalid arguments"}, {true, "[POLICY DENIED] No SQL."}, {false, ""}, {false, "5"}}
	for i, w := range want {
		r := out.Calls[i].Result
		if r.IsError != w.isError || !strings.Contains(text(i), w.text) {
			t.Errorf("call %d %s: isError %v text %q, want %v %q", i, calls[i].Name, r.IsError, text(i), w.isError, w.text)
		}
	}
	if st := out.Calls[1].Result.StructuredContent; st["temperature"] == nil || st["audit_id"] != nil {
		t.Errorf("structured content: %v", st)
	}
	if st := out.Calls[2].Result.StructuredContent; st != nil {
		t.Errorf("a refusal carries structuredContent %v", st)
	}
	img := false
	for _, b := range out.Calls[4].Result.Content {
		img = img || b.Type == "image"
	}
	if !img {
		t.Errorf("no image block: %+v", out.Calls[4].Result.Content)
	}
}
