package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/policies"
)

// keywordTool's schema has one property per JSON Schema keyword that can refuse a value.
type keywordTool struct{ echoTool }

func (keywordTool) InputSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{
	  "pattern":   {"type":"string","pattern":"^[a-z]+$"},
	  "email":     {"type":"string","format":"email"},
	  "datetime":  {"type":"string","format":"date-time"},
	  "ipv4":      {"type":"string","format":"ipv4"},
	  "enum":      {"enum":["red","green"]},
	  "const":     {"const":"fixed"},
	  "minLength": {"type":"string","minLength":100},
	  "maxLength": {"type":"string","maxLength":3},
	  "type":      {"type":"string"},
	  "minimum":   {"type":"number","minimum":1000000},
	  "maximum":   {"type":"number","maximum":5},
	  "exclMin":   {"type":"number","exclusiveMinimum":1000000},
	  "exclMax":   {"type":"number","exclusiveMaximum":5.5},
	  "multipleOf":{"type":"number","multipleOf":7},
	  "unique":    {"type":"array","uniqueItems":true},
	  "not":       {"not":{"type":"string"}},
	  "oneOf":     {"oneOf":[{"type":"integer"},{"type":"boolean"}]},
	  "names":     {"type":"object","propertyNames":{"pattern":"^[a-z]+$"}}
	}}`)
}

// syncBuffer is a log sink safe for the pipeline's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// measuredKeys are the fields of audit records and log lines that Airlock computes: ids,
// digests, times and durations. They are hex or decimal digits that an argument's digits (the
// "666" of an address) can match by chance, and no argument value reaches them verbatim.
var measuredKeys = []string{"audit_id", "prev_hash", "hash", "args_sha256", "policy_sha256", "time", "duration_ms", "stage_ms"}

// withoutMeasures is s, JSON lines, without measuredKeys; a line that is not a JSON object
// stays whole.
func withoutMeasures(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			out = append(out, line)
			continue
		}
		for _, k := range measuredKeys {
			delete(m, k)
		}
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return strings.Join(out, "\n")
}

// TestNoArgumentValueInRecordOrLogs sends a secret-looking value through every schema keyword
// and the strict decoder. The agent is told what is wrong and what would be right; the value
// itself appears nowhere Airlock writes: not in the audit record (RecordArgs is off), not in
// the logs, and not in the text sent back (the agent knows what it sent).
func TestNoArgumentValueInRecordOrLogs(t *testing.T) {
	const secret = "sk-live-7f3a9c1e5b"
	const secretNum = "31337.4242"
	cases := []struct {
		name   string
		args   string
		values []string // must not appear
		want   string   // the agent-facing reason
	}{
		{name: "pattern", args: `{"pattern":"` + secret + `"}`, values: []string{secret}, want: `/pattern: does not match the pattern "^[a-z]+$"`},
		{name: "format email", args: `{"email":"` + secret + `"}`, values: []string{secret}, want: `/email: is not a valid "email": want an address like name@example.com`},
		{name: "format date-time", args: `{"datetime":"2099-02-31T00:00:00Z"}`, values: []string{"2099-02-31"}, want: `/datetime: is not a valid "date-time"`},
		{name: "format ipv4", args: `{"ipv4":"10.66.6.666"}`, values: []string{"10.66.6.666", "666"}, want: `/ipv4: is not a valid "ipv4"`},
		{name: "enum", args: `{"enum":"` + secret + `"}`, values: []string{secret}, want: `/enum: must be one of ["red", "green"]`},
		{name: "const", args: `{"const":"` + secret + `"}`, values: []string{secret}, want: `/const: must be "fixed"`},
		{name: "minLength", args: `{"minLength":"` + secret + `"}`, values: []string{secret, "got 18"}, want: `/minLength: must be at least 100 characters long`},
		{name: "maxLength", args: `{"maxLength":"` + secret + `"}`, values: []string{secret, "got 18"}, want: `/maxLength: must be at most 3 characters long`},
		{name: "type", args: `{"type":` + secretNum + `}`, values: []string{secretNum}, want: `/type: got number, want string`},
		{name: "minimum", args: `{"minimum":` + secretNum + `}`, values: []string{secretNum, "31337", "31,337"}, want: `/minimum: must be at least 1000000`},
		{name: "maximum", args: `{"maximum":` + secretNum + `}`, values: []string{secretNum, "31337", "31,337"}, want: `/maximum: must be at most 5`},
		{name: "exclusiveMinimum", args: `{"exclMin":` + secretNum + `}`, values: []string{secretNum, "31337", "31,337"}, want: `/exclMin: must be greater than 1000000`},
		{name: "exclusiveMaximum", args: `{"exclMax":` + secretNum + `}`, values: []string{secretNum, "31337", "31,337"}, want: `/exclMax: must be less than 5.5`},
		{name: "multipleOf", args: `{"multipleOf":` + secretNum + `}`, values: []string{secretNum, "31337", "31,337"}, want: `/multipleOf: must be a multiple of 7`},
		{name: "uniqueItems", args: `{"unique":["` + secret + `","` + secret + `"]}`, values: []string{secret}, want: `/unique: items 0 and 1 are equal`},
		{name: "not", args: `{"not":"` + secret + `"}`, values: []string{secret}, want: `/not: matches the schema under "not"`},
		{name: "oneOf", args: `{"oneOf":"` + secret + `"}`, values: []string{secret}, want: `/oneOf: got string, want integer`},
		{name: "propertyNames names the key, not its value", args: `{"names":{"Bad":"` + secret + `"}}`, values: []string{secret}, want: `/names/Bad: property name is not allowed`},
		{name: "decoder: bare word", args: `{"pattern": ` + secret + `}`, values: []string{secret, "'s'"}, want: `/pattern: malformed JSON near byte 10: invalid character looking for beginning of value`},
		{name: "decoder: bad escape", args: `{"pattern":"` + secret + `\q"}`, values: []string{secret, "'q'"}, want: `/pattern: malformed JSON near byte 30: invalid character in string escape code`},
		{name: "decoder: NUL", args: `{"pattern":"` + secret + `\u0000"}`, values: []string{secret}, want: `/pattern: string contains a NUL character`},
		{name: "decoder: duplicate", args: `{"pattern":"` + secret + `","pattern":"x"}`, values: []string{secret}, want: `/pattern: duplicate key`},
	}
	var logs syncBuffer
	e := newEnv(t, func(c *Config) {
		c.Tools = append(c.Tools, &keywordTool{echoTool{name: "kw", workspace: c.Workspace}})
		c.Logger = zerolog.New(&logs)
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(e.audit)
			res := e.p.Run(context.Background(), Call{Tool: "kw", Args: json.RawMessage(tc.args), Grant: policies.Grant{ID: "tester"}, Session: "s1"})
			if !res.IsError || !strings.Contains(res.Text, tc.want) {
				t.Errorf("agent text = %q, want it to contain %q", res.Text, tc.want)
			}
			after, _ := os.ReadFile(e.audit)
			record := string(after[len(before):])
			structured, _ := json.Marshal(res.Structured)
			for _, v := range tc.values {
				for where, s := range map[string]string{"audit record": withoutMeasures(record), "logs": withoutMeasures(logs.String()), "agent text": res.Text, "structured result": string(structured)} {
					if strings.Contains(s, v) {
						t.Errorf("%s contains the value %q: %s", where, v, s)
					}
				}
			}
		})
	}
	if len(e.records(t)) != len(cases) {
		t.Errorf("%d records for %d calls", len(e.records(t)), len(cases))
	}
}
