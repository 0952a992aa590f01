package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeArgs: whatever decodeArgs accepts, encoding/json reads the same way (so the
// policy and the tool agree), and it never accepts NULs or case-duplicate keys.
func FuzzDecodeArgs(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"path":"a","Path":"b"}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":"\u0000"}`, `{"a":1,"a":2}`, `[]`, `{"k":1,"\u212a":2}`, `{"n":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := decodeArgs(in, 4096)
		if err != nil {
			return
		}
		if bytes.IndexByte(in, 0) >= 0 {
			t.Fatalf("accepted a NUL byte: %q", in)
		}
		if len(bytes.TrimSpace(in)) == 0 || string(bytes.TrimSpace(in)) == "null" {
			return
		}
		var want map[string]any
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("decodeArgs accepted %q but encoding/json refuses it: %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeArgs(%q) = %v, encoding/json = %v", in, got, want)
		}
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				seen := map[string]bool{}
				for k, c := range v {
					if seen[foldKey(k)] || strings.IndexByte(k, 0) >= 0 {
						t.Fatalf("accepted key %q in %q", k, in)
					}
					seen[foldKey(k)] = true
					walk(c)
				}
			case []any:
				for _, c := range v {
					walk(c)
				}
			case string:
				if strings.IndexByte(v, 0) >= 0 {
					t.Fatalf("accepted a NUL in %q", in)
				}
			}
		}
		walk(got)
	})
}

// FuzzStripControls: the output is valid UTF-8 with no control characters but tab and newline.
func FuzzStripControls(f *testing.F) {
	for _, s := range []string{"\x1b[31mred\x1b[0m", "a\x1b]0;t\x07b", "\xff\xfe", "x\u009b31my", "\r\n\r", "\u202eabc"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := stripControls(in)
		if !utf8.ValidString(out) {
			t.Fatalf("stripControls(%q) = %q: invalid UTF-8", in, out)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("stripControls(%q) = %q keeps %U", in, out, r)
			}
		}
	})
}
