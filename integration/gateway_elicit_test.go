package integration

import (
	"strings"
	"testing"
)

// TestGatewayUpstreamElicitation: server-everything (a stdio upstream in its sandbox) asks the
// user a question in the middle of a call (its trigger-elicitation-request tool sends
// elicitation/create). The TypeScript SDK client, which can elicit, is asked through Airlock:
// the question arrives labelled with the upstream's name, and the answer goes back to the
// upstream, which finishes the call. A client that cannot elicit is not offered elicitation,
// so the upstream does not have the tool in that session, and the call fails cleanly.
func TestGatewayUpstreamElicitation(t *testing.T) {
	node, dir := tsClient(t)
	e := gwFaultEnv(t, faultMarker(t))
	s := e.startHTTP(t)
	yes := true
	answer := map[string]any{"name": "Ada Lovelace", "check": true, "email": "ada@example.com"}
	out := runTSClient(t, node, dir, tsPlan{Transport: "http", URL: s.endpoint, Approve: &yes, Answer: answer,
		Calls: []tsCall{{Name: "ev__trigger-elicitation-request", Arguments: map[string]any{}}}})
	if len(out.Calls) != 1 || out.Calls[0].Result == nil {
		t.Fatalf("calls: %+v", out.Calls)
	}
	if len(out.Elicitations) != 1 || !strings.HasPrefix(out.Elicitations[0], "[upstream ev-") {
		t.Fatalf("the client was asked %q, want one question labelled [upstream ev asks]", out.Elicitations)
	}
	res := out.Calls[0].Result
	var text []string
	for _, b := range res.Content {
		text = append(text, b.Text)
	}
	t.Logf("the upstream's answer after the elicitation: isError %v %q", res.IsError, strings.Join(text, " | "))
	if res.IsError || !strings.Contains(strings.Join(text, " "), "Ada Lovelace") {
		t.Errorf("the upstream did not get the client's accept: %q", text)
	}

	out = runTSClient(t, node, dir, tsPlan{Transport: "http", URL: s.endpoint,
		Calls: []tsCall{{Name: "ev__trigger-elicitation-request", Arguments: map[string]any{}}}})
	s.stop()
	if len(out.Elicitations) != 0 {
		t.Errorf("a client without elicitation was asked %q", out.Elicitations)
	}
	if c := out.Calls[0]; c.Result == nil || !c.Result.IsError {
		t.Errorf("without elicitation the call should fail cleanly: %+v", c)
	}
	found := false
	for _, r := range readAuditAll(t, e.audit) {
		found = found || (r.Decision == "elicitation_accept" && strings.HasSuffix(r.Rule, "/elicitation"))
	}
	if !found {
		t.Error("the forwarded elicitation is not in the audit log")
	}
}
