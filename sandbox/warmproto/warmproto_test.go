package warmproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ok is a request the init can run.
var ok = Request{Argv: []string{"sh", "-c", "exit 3"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/work", Deadline: 32 * time.Second}

// with is ok changed by f.
func with(f func(*Request)) Request {
	r := ok
	r.Argv = append([]string(nil), ok.Argv...)
	f(&r)
	return r
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		err  string // contained in the error; "" for none
	}{
		{"ok", ok, ""},
		{"one argument", with(func(r *Request) { r.Argv = []string{"true"} }), ""},
		{"empty later argument", with(func(r *Request) { r.Argv = []string{"echo", ""} }), ""},
		{"no environment", with(func(r *Request) { r.Env = nil }), ""},
		{"root directory", with(func(r *Request) { r.Dir = "/" }), ""},
		{"unclean absolute directory", with(func(r *Request) { r.Dir = "/work/../tmp/" }), ""},
		{"one nanosecond", with(func(r *Request) { r.Deadline = 1 }), ""},
		{"stdin", with(func(r *Request) { r.Stdin = true }), ""},
		{"nil argv", with(func(r *Request) { r.Argv = nil }), "empty argv"},
		{"empty argv", with(func(r *Request) { r.Argv = []string{} }), "empty argv"},
		{"empty command", with(func(r *Request) { r.Argv = []string{"", "x"} }), "empty argv"},
		{"empty directory", with(func(r *Request) { r.Dir = "" }), `working directory "" is not absolute`},
		{"relative directory", with(func(r *Request) { r.Dir = "work" }), `working directory "work" is not absolute`},
		{"dot directory", with(func(r *Request) { r.Dir = "./work" }), "is not absolute"},
		{"zero deadline", with(func(r *Request) { r.Deadline = 0 }), "deadline 0s is not positive"},
		{"negative deadline", with(func(r *Request) { r.Deadline = -time.Second }), "deadline -1s is not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("refused %+v: %v", tt.req, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("got %v for %+v, want an error containing %q", err, tt.req, tt.err)
			}
		})
	}
}

// wire is r's wire form.
func wire(t *testing.T, r Request) []byte {
	t.Helper()
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pad is b followed by spaces (still valid JSON) up to n bytes.
func pad(b []byte, n int) []byte {
	return append(append([]byte(nil), b...), bytes.Repeat([]byte{' '}, n-len(b))...)
}

func TestDecodeRequest(t *testing.T) {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	tests := []struct {
		name  string
		in    []byte
		want  Request // when err is ""
		err   string  // contained in the error; "" for none
		errAs any     // when not nil, the error wraps this type
	}{
		{name: "round trip", in: wire(t, ok), want: ok},
		{name: "with stdin", in: wire(t, with(func(r *Request) { r.Stdin = true })), want: with(func(r *Request) { r.Stdin = true })},
		{name: "deadline in nanoseconds", in: []byte(`{"argv":["true"],"dir":"/","deadline":1000000000}`),
			want: Request{Argv: []string{"true"}, Dir: "/", Deadline: time.Second}},
		{name: "without trailing newline", in: bytes.TrimSuffix(wire(t, ok), []byte("\n")), want: ok},
		{name: "exactly MaxRequest bytes", in: pad(wire(t, ok), MaxRequest), want: ok},
		{name: "one byte over MaxRequest", in: pad(wire(t, ok), MaxRequest+1), err: "more than 8388608"},
		{name: "empty", in: nil, err: "warm request: unexpected end of JSON input"},
		{name: "not JSON", in: []byte("sh -c 'exit 3'"), err: "warm request: invalid character", errAs: &syntax},
		{name: "truncated", in: wire(t, ok)[:20], err: "warm request: unexpected end of JSON input"},
		{name: "second request after the first", in: append(wire(t, ok), wire(t, ok)...), err: "warm request: invalid character", errAs: &syntax},
		{name: "argv as a string", in: []byte(`{"argv":"sh -c 'exit 3'","dir":"/","deadline":1}`), err: "warm request", errAs: &typ},
		{name: "deadline as a duration string", in: []byte(`{"argv":["true"],"dir":"/","deadline":"32s"}`), err: "warm request", errAs: &typ},
		{name: "array", in: []byte(`[["true"]]`), err: "warm request", errAs: &typ},
		{name: "valid JSON, invalid request", in: []byte(`{"argv":[],"dir":"/","deadline":1}`), err: "warm request: empty argv"},
		{name: "missing deadline", in: []byte(`{"argv":["true"],"dir":"/"}`), err: "deadline 0s is not positive"},
		{name: "null", in: []byte("null"), err: "empty argv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRequest(tt.in)
			if tt.err == "" {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("got %+v, %v; want an error containing %q", got, err, tt.err)
			}
			if tt.errAs != nil && !errors.As(err, tt.errAs) {
				t.Errorf("error %v (%T) does not wrap %T", err, err, tt.errAs)
			}
		})
	}
}

func TestDecodeReply(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Reply
		ok   bool
		err  bool
	}{
		{name: "none: the init died first", in: nil},
		{name: "empty", in: []byte{}},
		{name: "code", in: []byte(`{"code":3}` + "\n"), want: Reply{Code: 3}, ok: true},
		{name: "zero", in: []byte(`{"code":0}`), want: Reply{}, ok: true},
		{name: "deadline", in: []byte(`{"code":124}`), want: Reply{Code: 124}, ok: true},
		{name: "error", in: []byte(`{"code":125,"error":"working directory /x: not a directory"}`),
			want: Reply{Code: 125, Error: "working directory /x: not a directory"}, ok: true},
		{name: "whitespace only", in: []byte("\n"), err: true},
		{name: "truncated", in: []byte(`{"code":`), err: true},
		{name: "not JSON", in: []byte("137"), err: true},
		{name: "code as a string", in: []byte(`{"code":"3"}`), err: true},
		{name: "two replies", in: []byte(`{"code":1}` + "\n" + `{"code":0}` + "\n"), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := DecodeReply(tt.in)
			if (err != nil) != tt.err || ok != tt.ok || got != tt.want {
				t.Fatalf("got %+v, ok %v, %v; want %+v, ok %v, error %v", got, ok, err, tt.want, tt.ok, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), "warm reply") {
				t.Errorf("error %q does not say it is about the warm reply", err)
			}
		})
	}
}

// TestEncode: the wire form is one line of JSON that decodes to what was encoded.
func TestEncode(t *testing.T) {
	for _, v := range []any{ok, Reply{Code: 127}, Reply{Code: 125, Error: "bad\nrequest"}} {
		b, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n")) != 1 {
			t.Errorf("%+v encodes as %q, want one newline-terminated line", v, b)
		}
		got := reflect.New(reflect.TypeOf(v))
		if err := json.Unmarshal(b, got.Interface()); err != nil || !reflect.DeepEqual(got.Elem().Interface(), v) {
			t.Errorf("%q decodes as %+v, %v; want %+v", b, got.Elem().Interface(), err, v)
		}
	}
	if b, _ := Encode(Reply{Code: 3}); string(b) != `{"code":3}`+"\n" {
		t.Errorf("a reply without error encodes as %q, want %q", b, `{"code":3}`+"\n")
	}
}
