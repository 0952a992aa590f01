package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultMaxArgBytes is the size cap on a call's raw arguments when Config.MaxArgBytes is 0.
const DefaultMaxArgBytes = 1 << 20

// MaxArgDepth is the deepest nesting of objects and arrays an argument document may have.
// The top-level object is depth 1.
const MaxArgDepth = 64

// ArgError is a stage-2 rejection of a call's arguments. Pointer is the JSON pointer (RFC 6901)
// of the offending field ("" for the document itself); Reason says what is wrong with it.
type ArgError struct {
	Pointer string
	Reason  string
}

func (e *ArgError) Error() string {
	p := e.Pointer
	if p == "" {
		p = "/"
	}
	return fmt.Sprintf("argument %s: %s", p, e.Reason)
}

// ArgErrors is every schema violation of one call, in a stable order.
type ArgErrors []*ArgError

func (es ArgErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// decodeArgs is the strict decoder every call's arguments pass through before anything else
// (schema, policy, the tool) sees them. It returns the arguments as a map whose numbers are
// json.Number, so no precision is lost between what the policy checks and what the tool runs.
//
// Empty input and the literal null are an empty object: MCP clients omit arguments for tools
// that take none.
func decodeArgs(raw []byte, maxBytes int) (map[string]any, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxArgBytes
	}
	// Size first, before any parsing work: a multi-megabyte body is refused at the cost of
	// reading its length.
	if len(raw) > maxBytes {
		return nil, &ArgError{Reason: fmt.Sprintf("arguments are %d bytes, over the %d-byte limit", len(raw), maxBytes)}
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return map[string]any{}, nil
	}
	// encoding/json silently replaces invalid UTF-8 with U+FFFD; refuse it instead so the
	// bytes a policy regex sees are exactly the bytes the agent sent.
	if !utf8.Valid(raw) {
		return nil, &ArgError{Reason: "arguments are not valid UTF-8"}
	}
	if bytes.IndexByte(raw, 0) >= 0 {
		return nil, &ArgError{Reason: "arguments contain a NUL byte"}
	}
	d := &strictDecoder{dec: json.NewDecoder(bytes.NewReader(raw))}
	d.dec.UseNumber()
	tok, err := d.token("")
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, &ArgError{Reason: fmt.Sprintf("arguments must be a JSON object, got %s", describeToken(tok))}
	}
	obj, err := d.object("", 1)
	if err != nil {
		return nil, err
	}
	if _, err := d.dec.Token(); err != io.EOF {
		return nil, &ArgError{Reason: "unexpected data after the arguments object"}
	}
	return obj, nil
}

type strictDecoder struct {
	dec *json.Decoder
}

func (d *strictDecoder) token(ptr string) (json.Token, error) {
	tok, err := d.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, &ArgError{Pointer: ptr, Reason: malformed(err)}
	}
	return tok, nil
}

// quotedChar is the character encoding/json quotes in a syntax error ("invalid character 'x'
// looking for beginning of value").
var quotedChar = regexp.MustCompile(`^invalid character '(?:\\.|[^'\\])+'`)

// malformed describes a syntax error without the character it quotes: that character is part
// of an argument value ({"token": s3cret} fails at the "s"), and values reach neither the audit
// record nor the logs unless the config asks. The byte offset says where to look.
func malformed(err error) string {
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		return "malformed JSON: " + err.Error()
	}
	return fmt.Sprintf("malformed JSON near byte %d: %s", syn.Offset, quotedChar.ReplaceAllString(syn.Error(), "invalid character"))
}

// boundKey cuts a client's key to MaxRecordKeyBytes for an error message or a pointer: a key
// is not a value, but it is client text of any length, and every error reaches the audit
// record and the agent.
func boundKey(k string) string { return cutString(k, MaxRecordKeyBytes) }

// value decodes the value that starts with tok at ptr; depth is the nesting of its container.
func (d *strictDecoder) value(tok json.Token, ptr string, depth int) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		// Depth bombs: a deeply nested document costs the schema validator and the policy
		// walker stack and time out of proportion to its size.
		if depth+1 > MaxArgDepth {
			return nil, &ArgError{Pointer: ptr, Reason: fmt.Sprintf("nesting deeper than %d levels", MaxArgDepth)}
		}
		switch t {
		case '{':
			return d.object(ptr, depth+1)
		case '[':
			return d.array(ptr, depth+1)
		}
		return nil, &ArgError{Pointer: ptr, Reason: fmt.Sprintf("malformed JSON: unexpected %q", t)}
	case string:
		if strings.IndexByte(t, 0) >= 0 {
			// "\u0000" decodes to a NUL byte, which C-based tools treat as the end of the
			// string: a path "ok.txt\u0000/../../etc/passwd" would pass a prefix check here
			// and mean something else to the program that uses it.
			return nil, &ArgError{Pointer: ptr, Reason: "string contains a NUL character"}
		}
		return t, nil
	default: // json.Number, bool, nil
		return t, nil
	}
}

func (d *strictDecoder) object(ptr string, depth int) (map[string]any, error) {
	obj := map[string]any{}
	folded := map[string]string{} // case-folded key -> key as sent
	for d.dec.More() {
		tok, err := d.token(ptr)
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, &ArgError{Pointer: ptr, Reason: "malformed JSON: object key is not a string"}
		}
		kptr := ptr + "/" + escapePointer(boundKey(key))
		if strings.IndexByte(key, 0) >= 0 {
			return nil, &ArgError{Pointer: kptr, Reason: "key contains a NUL character"}
		}
		if _, dup := obj[key]; dup {
			// Duplicate keys: decoders disagree on which one wins (first or last), so the
			// policy could check one value while the tool uses the other.
			return nil, &ArgError{Pointer: kptr, Reason: "duplicate key"}
		}
		fk := foldKey(key)
		if prev, dup := folded[fk]; dup {
			// Reject keys that differ only by case: encoding/json matches struct fields
			// case-insensitively, so {"path":"a","Path":"/etc"} would validate one value and
			// execute the other.
			return nil, &ArgError{Pointer: kptr, Reason: fmt.Sprintf("key differs only by case from %q", boundKey(prev))}
		}
		folded[fk] = key
		vt, err := d.token(kptr)
		if err != nil {
			return nil, err
		}
		v, err := d.value(vt, kptr, depth)
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
	if _, err := d.token(ptr); err != nil { // the closing '}'
		return nil, err
	}
	return obj, nil
}

func (d *strictDecoder) array(ptr string, depth int) ([]any, error) {
	arr := []any{}
	for i := 0; d.dec.More(); i++ {
		eptr := fmt.Sprintf("%s/%d", ptr, i)
		tok, err := d.token(eptr)
		if err != nil {
			return nil, err
		}
		v, err := d.value(tok, eptr, depth)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	if _, err := d.token(ptr); err != nil { // the closing ']'
		return nil, err
	}
	return arr, nil
}

// foldKey maps s to a canonical case-folded form: every rune becomes the smallest rune of its
// Unicode simple-folding orbit. Two keys fold equal exactly when encoding/json (and most
// case-insensitive matchers) would treat them as the same name, including K/k/U+212A KELVIN SIGN.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		b.WriteRune(m)
	}
	return b.String()
}

// escapePointer escapes one JSON pointer reference token (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%v", tok)
}
