package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompileSchemaRefusesExternalRefs(t *testing.T) {
	dir := t.TempDir()
	ext := filepath.Join(dir, "ext.json")
	if err := os.WriteFile(ext, []byte(`{"type":"string"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"file ref":       `{"type":"object","properties":{"a":{"$ref":"file://` + ext + `"}}}`,
		"relative ref":   `{"type":"object","properties":{"a":{"$ref":"other.json"}}}`,
		"network ref":    `{"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}`,
		"custom $schema": `{"$schema":"https://example.com/meta.json","type":"object"}`,
	}
	for name, schema := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := compileSchema("t", []byte(schema))
			if err == nil {
				t.Fatalf("compileSchema(%s) succeeded, want a refusal", schema)
			}
		})
	}
	if _, err := compileSchema("t", []byte(`{"type":"object","properties":{"a":{"$ref":"#/$defs/s"}},"$defs":{"s":{"type":"string"}}}`)); err != nil {
		t.Fatalf("local $ref refused: %v", err)
	}
	if _, err := compileSchema("t", []byte(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}`)); err != nil {
		t.Fatalf("draft-07 meta-schema refused: %v", err)
	}
}

func TestValidateArgsNamesTheField(t *testing.T) {
	const schema = `{
	  "type": "object",
	  "properties": {
	    "path":  {"type": "string", "minLength": 1},
	    "email": {"type": "string", "format": "email"},
	    "count": {"type": "integer", "maximum": 10},
	    "opts":  {"type": "object", "properties": {"mode": {"enum": ["a", "b"]}}}
	  },
	  "required": ["path"]
	}`
	sch, err := compileSchema("t", []byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args string
		want []string // "pointer: reason substring"
	}{
		{name: "valid", args: `{"path":"a","count":3}`},
		{name: "missing required", args: `{}`, want: []string{"/path: required property is missing"}},
		{name: "wrong type", args: `{"path":5}`, want: []string{"/path: got number, want string"}},
		{name: "format asserted", args: `{"path":"a","email":"not-an-email"}`, want: []string{`/email: is not a valid "email": want an address like name@example.com`}},
		{name: "maximum", args: `{"path":"a","count":11}`, want: []string{"/count: must be at most 10"}},
		{name: "additional property refused by default", args: `{"path":"a","extra":1}`, want: []string{"/extra: property is not allowed"}},
		{name: "nested enum", args: `{"path":"a","opts":{"mode":"c"}}`, want: []string{`/opts/mode: must be one of ["a", "b"]`}},
		{name: "two errors", args: `{"count":"x"}`, want: []string{"/count: got string, want integer", "/path: required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args, err := decodeArgs([]byte(tc.args), 0)
			if err != nil {
				t.Fatal(err)
			}
			err = validateArgs(sch, args)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("validateArgs(%s) = %v, want nil", tc.args, err)
				}
				return
			}
			var aes ArgErrors
			if !errors.As(err, &aes) {
				t.Fatalf("validateArgs(%s) = %v, want ArgErrors", tc.args, err)
			}
			if len(aes) != len(tc.want) {
				t.Fatalf("got %d errors (%v), want %d", len(aes), aes, len(tc.want))
			}
			for i, w := range tc.want {
				ptr, reason, _ := strings.Cut(w, ": ")
				if aes[i].Pointer != ptr || !strings.Contains(aes[i].Reason, reason) {
					t.Errorf("error %d = %q %q, want %q containing %q", i, aes[i].Pointer, aes[i].Reason, ptr, reason)
				}
			}
		})
	}
}

func TestCompileSchemaKeepsExplicitAdditionalProperties(t *testing.T) {
	sch, err := compileSchema("t", []byte(`{"type":"object","additionalProperties":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := validateArgs(sch, map[string]any{"anything": "x"}); err != nil {
		t.Fatalf("tool that allows extra properties refused one: %v", err)
	}
}

// One refusal stays small whatever the client sends: errors are capped in number and the
// keys in their pointers in length; a long enum is summarised.
func TestValidateArgsBounded(t *testing.T) {
	enum := make([]string, 500)
	for i := range enum {
		enum[i] = fmt.Sprintf("%q", fmt.Sprintf("v%03d", i))
	}
	sch, err := compileSchema("t", []byte(`{"type":"object","properties":{"e":{"enum":[`+strings.Join(enum, ",")+`]},
	  "p":{"type":"string","pattern":"^<[a-z]+>$"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", 100000)
	many := map[string]any{}
	for i := 0; i < 11000; i++ {
		many[fmt.Sprintf("key-%05d", i)] = 1
	}
	cases := []struct {
		name      string
		args      map[string]any
		wantN     int
		wantFirst string
		wantLast  string
	}{
		{name: "11,000 unknown keys", args: many, wantN: maxArgErrors + 1,
			wantFirst: "argument /key-00000: property is not allowed", wantLast: fmt.Sprintf("and %d more errors like these", 11000-maxArgErrors)},
		{name: "long unknown key cut", args: map[string]any{long: 1}, wantN: 1,
			wantFirst: "argument /" + cutString(long, MaxRecordKeyBytes) + ": property is not allowed"},
		{name: "long enum summarised", args: map[string]any{"e": "zzz"}, wantN: 1,
			wantFirst: `argument /e: must be one of ["v000", "v001", `, wantLast: `"v019", … (500 in all, see the tool's schema)]`},
		{name: "pattern quoted as written", args: map[string]any{"p": "x"}, wantN: 1,
			wantFirst: `argument /p: does not match the pattern "^<[a-z]+>$"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var aes ArgErrors
			if !errors.As(validateArgs(sch, tc.args), &aes) {
				t.Fatal("no ArgErrors")
			}
			if len(aes) != tc.wantN {
				t.Errorf("%d errors, want %d", len(aes), tc.wantN)
			}
			if got := aes[0].Error(); !strings.HasPrefix(got, tc.wantFirst) {
				t.Errorf("first error = %.200q, want it to start %q", got, tc.wantFirst)
			}
			if got := aes[len(aes)-1].Error(); !strings.HasSuffix(got, tc.wantLast) {
				t.Errorf("last error = %.200q, want it to end %q", got, tc.wantLast)
			}
			if n := len(aes.Error()); n > 8<<10 {
				t.Errorf("errors are %d bytes together, want at most 8 KiB", n)
			}
		})
	}
}
