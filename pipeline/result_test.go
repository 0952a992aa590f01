package pipeline

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// jsonTool is an echoTool whose stdout is one JSON object (as the file tools' toolbox prints)
// and whose text block is the object's "content".
type jsonTool struct{ echoTool }

func (j *jsonTool) StdoutIsJSON() bool { return true }
func (j *jsonTool) Render(out Output) Rendered {
	if out.Result == nil {
		return Rendered{Text: "no result: " + out.Stdout, IsError: true}
	}
	c, _ := out.Result["content"].(string)
	return Rendered{Text: c}
}

// Secrets as a config file holds them, which JSON escaping hides from rules that read plain
// text: the quotes around a value become \", a newline \n. Split so this file does not itself
// trip secret scanners.
var escapedSecrets = []struct{ line, secret string }{
	{`DB_PASSWORD="` + "Qm7vTz2x" + "Lk9pWr4s" + `"`, "Qm7vTz2xLk9pWr4s"},
	{`password: "` + "hunter2-" + "Zq8sK1vWx" + `"`, "hunter2-Zq8sK1vWx"},
	{`"client_secret": "` + "9f8e7d6c5b4a3928" + "1706f5e4d3c2b1a0" + `"`, "9f8e7d6c5b4a39281706f5e4d3c2b1a0"},
	{`export SECRET_KEY="` + "sk-live-4eC39HqL" + "yjWDarjtT1zdp7dc" + `"`, "sk-live-4eC39HqLyjWDarjtT1zdp7dc"},
	{"token:\n  " + "ghp_" + "R8kLq2ZxV7mN4pT9sW3yB6cD1fH5jK0aQe2U", "ghp_R8kLq2ZxV7mN4pT9sW3yB6cD1fH5jK0aQe2U"},
}

// leaks reports every secret that appears in b as it is, JSON-escaped, or with its quotes
// escaped twice over.
func leaks(b []byte, secrets []string) []string {
	var out []string
	for _, s := range secrets {
		esc, _ := json.Marshal(s)
		esc2, _ := json.Marshal(string(esc))
		for _, form := range []string{s, string(esc[1 : len(esc)-1]), string(esc2[1 : len(esc2)-1])} {
			if strings.Contains(string(b), form) {
				out = append(out, form)
				break
			}
		}
	}
	return out
}

// A JSON tool's output is decoded before it is sanitised: the secrets JSON escaping hid from
// the raw document are redacted everywhere, structuredContent holds the decoded values (no
// raw stdout), and the content is there once in it.
func TestRunJSONOutputIsDecodedThenSanitised(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Tools = []Tool{&jsonTool{echoTool{name: "echo", workspace: c.Workspace}}}
	})
	var content strings.Builder
	var secrets []string
	for _, s := range escapedSecrets {
		content.WriteString(s.line + "\n")
		secrets = append(secrets, s.secret)
	}
	content.WriteString("\x1b]0;title\x07\u202eevil\u200b in " + e.ws + "/cfg\n")
	raw, _ := json.Marshal(map[string]any{"path": "cfg", "content": content.String(), "size": content.Len(),
		"nested": []any{map[string]any{"text": escapedSecrets[0].line}}})
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: raw}, nil
	}
	// The raw document hides every one of them from a scan of the raw bytes.
	if s := NewSanitizer(redactorT(t), "", nil, 0); true {
		clean, _, _ := s.Clean(raw)
		if l := leaks([]byte(clean), secrets); len(l) == 0 {
			t.Fatal("the raw JSON no longer hides the secrets; the test proves nothing")
		}
	}
	res := e.run("echo", `{"text":"a"}`)
	whole, err := json.Marshal(struct {
		Text       string
		Structured map[string]any
	}{res.Text, res.Structured})
	if err != nil {
		t.Fatal(err)
	}
	if l := leaks(whole, secrets); len(l) > 0 {
		t.Errorf("result carries secrets %q:\n%s", l, whole)
	}
	for _, bad := range []string{"\x1b", "\u202e", "\u200b", e.ws} {
		if strings.Contains(string(whole), bad) || strings.Contains(res.Text, bad) {
			t.Errorf("result carries %q", bad)
		}
	}
	if _, ok := res.Structured["stdout"]; ok {
		t.Errorf("structuredContent has the raw stdout: %v", res.Structured["stdout"])
	}
	result, _ := res.Structured["result"].(map[string]any)
	got, _ := result["content"].(string)
	if !strings.Contains(got, "DB_PASSWORD=\"[REDACTED:") || !strings.Contains(got, "/workspace/cfg") {
		t.Errorf("result.content = %q, want the decoded, redacted content", got)
	}
	if n := strings.Count(string(whole), "/workspace/cfg"); n != 2 {
		t.Errorf("the content appears %d times in the result, want once in the text and once in structuredContent", n)
	}
	n := 0
	for _, c := range e.last(t).Redactions {
		n += c
	}
	if n < len(escapedSecrets) {
		t.Errorf("record redactions = %v, want at least %d", e.last(t).Redactions, len(escapedSecrets))
	}
}

// A secret recognisable only in one place (its name is on the line before) is replaced in
// every string of the result, here a second field that holds it bare.
func TestRunRedactsASecretEverywhereItWasFound(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Tools = []Tool{&jsonTool{echoTool{name: "echo", workspace: c.Workspace}}}
	})
	secret := "Zq8sK1vWx" + "hunter2Lk9pWr4s"
	raw, _ := json.Marshal(map[string]any{"content": "api_key = " + secret + "\n", "echo": []any{"saw " + secret}})
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: raw}, nil
	}
	res := e.run("echo", `{"text":"a"}`)
	whole, _ := json.Marshal(res.Structured)
	if strings.Contains(string(whole), secret) || strings.Contains(res.Text, secret) {
		t.Errorf("secret left in %s / %q", whole, res.Text)
	}
}

// Output that would cost more than the redaction budget to check is withheld, quickly, and
// said to be; nothing of it is returned.
func TestRunWithholdsOutputOverTheRedactionBudget(t *testing.T) {
	e := newEnv(t, nil)
	r := redactorT(t)
	soup := keywordSoup(r, 1<<20)
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: []byte(soup)}, nil
	}
	start := time.Now()
	res := e.run("echo", `{"text":"a"}`)
	took := time.Since(start)
	if !res.IsError || !strings.Contains(res.Text, "output withheld") || res.Structured["withheld"] != true {
		t.Fatalf("result = %q %v, want the output withheld", res.Text[:min(200, len(res.Text))], res.Structured)
	}
	if _, ok := res.Structured["stdout"]; ok {
		t.Error("a withheld result still has stdout")
	}
	if strings.Contains(res.Text, soup[:100]) {
		t.Error("the withheld output is in the text")
	}
	if limit := 2 * time.Second * raceFactor; took > limit {
		t.Errorf("withholding 1 MiB took %v, want well under %v", took, limit)
	}
	if rec := e.last(t); !strings.Contains(rec.Message, "output withheld") {
		t.Errorf("record message = %q", rec.Message)
	}
}
