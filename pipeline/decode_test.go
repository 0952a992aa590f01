package pipeline

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var longKey = strings.Repeat("k", 100000)

func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1)
}

func TestDecodeArgsStrict(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		max     int
		wantPtr string // pointer of the ArgError; "-" means success
		wantMsg string
	}{
		{name: "plain object", in: `{"path":"a","n":1}`, wantPtr: "-"},
		{name: "empty input is an empty object", in: ``, wantPtr: "-"},
		{name: "null is an empty object", in: `null`, wantPtr: "-"},
		{name: "duplicate key", in: `{"path":"a","path":"/etc"}`, wantPtr: "/path", wantMsg: "duplicate key"},
		{name: "case duplicate key", in: `{"path":"a","Path":"/etc"}`, wantPtr: "/Path", wantMsg: `differs only by case from "path"`},
		{name: "kelvin sign folds to k", in: `{"k":"a","\u212a":"b"}`, wantPtr: "/\u212a", wantMsg: "differs only by case"},
		{name: "nested duplicate", in: `{"o":{"x":1,"x":2}}`, wantPtr: "/o/x", wantMsg: "duplicate key"},
		{name: "duplicate in array element", in: `{"l":[{},{"a":1,"A":2}]}`, wantPtr: "/l/1/A", wantMsg: "differs only by case"},
		{name: "same key in sibling objects is fine", in: `{"a":{"x":1},"b":{"x":1}}`, wantPtr: "-"},
		{name: "NUL in value", in: `{"path":"ok.txt\u0000/../../etc/passwd"}`, wantPtr: "/path", wantMsg: "NUL"},
		{name: "NUL in key", in: `{"pa\u0000th":"x"}`, wantPtr: "/pa\x00th", wantMsg: "NUL"},
		{name: "raw NUL byte", in: "{\"path\":\"a\"}\x00", wantPtr: "", wantMsg: "NUL byte"},
		{name: "depth 64 accepted", in: nested(64), wantPtr: "-"},
		{name: "depth 65 refused", in: nested(65), wantPtr: strings.Repeat("/a", 64), wantMsg: "nesting deeper than 64"},
		{name: "array depth 65 refused", in: `{"a":` + strings.Repeat(`[`, 64) + strings.Repeat(`]`, 64) + `}`, wantPtr: "/a" + strings.Repeat("/0", 63), wantMsg: "nesting deeper"},
		{name: "over size cap", in: `{"a":"` + strings.Repeat("x", 100) + `"}`, max: 64, wantPtr: "", wantMsg: "over the 64-byte limit"},
		{name: "at size cap", in: `{"a":"` + strings.Repeat("x", 56) + `"}`, max: 64, wantPtr: "-"},
		{name: "not an object", in: `["a"]`, wantPtr: "", wantMsg: "must be a JSON object, got an array"},
		{name: "trailing data", in: `{"a":1} {"b":2}`, wantPtr: "", wantMsg: "unexpected data"},
		{name: "truncated", in: `{"a":`, wantPtr: "/a", wantMsg: "malformed JSON"},
		{name: "invalid utf-8", in: "{\"a\":\"\xff\"}", wantPtr: "", wantMsg: "UTF-8"},
		{name: "pointer escaping", in: `{"a/b":{"c~d":1,"C~d":2}}`, wantPtr: "/a~1b/C~0d", wantMsg: "case"},
		// Keys are client text of any length, and every error reaches the audit record.
		{name: "long duplicate key cut", in: `{"` + longKey + `":1,"` + longKey + `":2}`, wantPtr: "/" + cutString(longKey, MaxRecordKeyBytes), wantMsg: "duplicate key"},
		{name: "long case duplicate cut", in: `{"` + longKey + `":1,"` + strings.ToUpper(longKey) + `":2}`, wantPtr: "/" + cutString(strings.ToUpper(longKey), MaxRecordKeyBytes), wantMsg: `from "` + cutString(longKey, MaxRecordKeyBytes) + `"`},
		{name: "error under a long key cut", in: `{"` + longKey + `":{"a":"\u0000"}}`, wantPtr: "/" + cutString(longKey, MaxRecordKeyBytes) + "/a", wantMsg: "NUL"},
		// A syntax error quotes the character it stopped at, which is part of a value.
		{name: "syntax error does not quote the value", in: `{"token": s3cret}`, wantPtr: "/token", wantMsg: "malformed JSON near byte 8: invalid character looking for beginning of value"},
		{name: "bad escape does not quote the value", in: `{"token": "ab\qc"}`, wantPtr: "/token", wantMsg: "invalid character in string escape code"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeArgs([]byte(tc.in), tc.max)
			if tc.wantPtr == "-" {
				if err != nil {
					t.Fatalf("decodeArgs(%q) = %v, want success", tc.in, err)
				}
				if got == nil {
					t.Fatalf("decodeArgs(%q) returned a nil map", tc.in)
				}
				return
			}
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Fatalf("decodeArgs(%q) error = %v, want *ArgError", tc.in, err)
			}
			if ae.Pointer != tc.wantPtr {
				t.Errorf("pointer = %q, want %q (%v)", ae.Pointer, tc.wantPtr, ae)
			}
			if !strings.Contains(ae.Reason, tc.wantMsg) {
				t.Errorf("reason = %q, want it to contain %q", ae.Reason, tc.wantMsg)
			}
			if strings.Contains(ae.Reason, "'") {
				t.Errorf("reason = %q quotes a character of the input", ae.Reason)
			}
			if len(ae.Error()) > 1024 {
				t.Errorf("error is %d bytes, want keys in it cut", len(ae.Error()))
			}
		})
	}
}

func TestDecodeArgsKeepsNumberPrecision(t *testing.T) {
	got, err := decodeArgs([]byte(`{"n":12345678901234567890,"f":0.1}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := got["n"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("n = %#v, want json.Number 12345678901234567890", got["n"])
	}
}

func TestDecodeArgsDefaultCapIsOneMiB(t *testing.T) {
	big := `{"a":"` + strings.Repeat("x", DefaultMaxArgBytes) + `"}`
	if _, err := decodeArgs([]byte(big), 0); err == nil || !strings.Contains(err.Error(), "1048576-byte limit") {
		t.Fatalf("decodeArgs(1 MiB + 8) = %v, want the 1 MiB cap", err)
	}
}
