package pins

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Definition is what an upstream says about one tool, as far as the model and the gateway
// act on it: the pin covers every field, so an upstream cannot change what a tool claims to
// do, what it accepts, what it returns or how it is labelled without the change being noticed.
// The JSON fields hold the upstream's raw JSON; empty or null means absent.
type Definition struct {
	Name         string          `json:"name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"inputSchema,omitempty"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
}

// FromTool converts a tool as the go-sdk client decoded it from tools/list. Icons and _meta
// are not part of the pin: the model never sees them.
func FromTool(t *mcp.Tool) (Definition, error) {
	d := Definition{Name: t.Name, Title: t.Title, Description: t.Description}
	var err error
	if d.InputSchema, err = rawJSON(t.InputSchema); err != nil {
		return d, fmt.Errorf("tool %q: inputSchema: %w", t.Name, err)
	}
	if d.OutputSchema, err = rawJSON(t.OutputSchema); err != nil {
		return d, fmt.Errorf("tool %q: outputSchema: %w", t.Name, err)
	}
	if t.Annotations != nil {
		if d.Annotations, err = json.Marshal(t.Annotations); err != nil {
			return d, fmt.Errorf("tool %q: annotations: %w", t.Name, err)
		}
	}
	return d, nil
}

func rawJSON(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return v, nil
	}
	return json.Marshal(v)
}

// Canonical returns the definition as canonical JSON: an object with the fields name, title,
// description, inputSchema, outputSchema and annotations (absent ones omitted), object keys
// sorted by UTF-16 code units, no insignificant whitespace, strings escaped only where JSON
// requires it, and numbers in one form (RFC 8785 JCS, except that numbers keep every
// significant digit instead of being rounded to float64, so two different large integers
// never share a hash). Semantically equal definitions have equal canonical forms.
//
// Annotations that state their MCP default (readOnlyHint, idempotentHint false;
// destructiveHint, openWorldHint true; an empty title) are dropped: SDKs disagree on whether
// to emit them (go-sdk's MCPGODEBUG=hintomitempty), and a pin must not break because the
// upstream or Airlock changed SDK versions. Any change of meaning still changes the hash.
//
// Duplicate object keys are an error: JSON parsers disagree on which one wins, so the
// schema the gateway pinned and the one a client acts on could differ.
func Canonical(d Definition) ([]byte, error) {
	v, err := canonicalValue(d)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	writeValue(&b, v, "", false)
	return b.Bytes(), nil
}

// Hash is "sha256:<hex>" of the canonical form.
func Hash(d Definition) (string, error) {
	c, err := Canonical(d)
	if err != nil {
		return "", err
	}
	return hashBytes(c), nil
}

func hashBytes(c []byte) string {
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Pretty returns the canonical form indented by two spaces, one member per line, for people:
// diffs and `airlock pins diff`. Characters that do not show themselves (controls, format and
// tag characters, variation selectors, line separators, every non-printing rune) are written
// as \u escapes, so a hidden instruction is visible in review instead of invisible in the
// reviewer's terminal.
func Pretty(d Definition) (string, error) {
	v, err := canonicalValue(d)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	writeValue(&b, v, "\n", true)
	b.WriteByte('\n')
	return b.String(), nil
}

// canonicalValue parses the definition into the value tree that Canonical writes.
func canonicalValue(d Definition) (object, error) {
	obj := object{{"name", d.Name}}
	if d.Title != "" {
		obj = append(obj, member{"title", d.Title})
	}
	if d.Description != "" {
		obj = append(obj, member{"description", d.Description})
	}
	for _, f := range []struct {
		key string
		raw json.RawMessage
	}{{"inputSchema", d.InputSchema}, {"outputSchema", d.OutputSchema}, {"annotations", d.Annotations}} {
		v, err := parseJSON(f.raw)
		if err != nil {
			return nil, fmt.Errorf("tool %q: %s: %w", d.Name, f.key, err)
		}
		if f.key == "annotations" {
			v = dropDefaultAnnotations(v)
		}
		if v != nil {
			obj = append(obj, member{f.key, v})
		}
	}
	sortMembers(obj)
	return obj, nil
}

// isDefaultAnnotation reports whether an annotation states its MCP default (see Canonical).
func isDefaultAnnotation(key string, val any) bool {
	switch key {
	case "readOnlyHint", "idempotentHint":
		return val == false
	case "destructiveHint", "openWorldHint":
		return val == true
	case "title":
		return val == ""
	}
	return false
}

// dropDefaultAnnotations removes annotations that restate their default; an annotation
// object left empty is absent.
func dropDefaultAnnotations(v any) any {
	obj, ok := v.(object)
	if !ok {
		return v
	}
	out := object{}
	for _, m := range obj {
		if isDefaultAnnotation(m.key, m.val) {
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// The value tree: object (members in canonical order), []any, string, number (canonical
// text), bool, and jsonNull. A nil any is "absent".
type (
	object []member
	member struct {
		key string
		val any
	}
	number   string
	jsonNull struct{}
)

// parseJSON parses raw into the value tree; empty raw and null are absent (nil).
func parseJSON(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the value")
	}
	if _, ok := v.(jsonNull); ok {
		return nil, nil
	}
	return v, nil
}

func parseValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := object{}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("invalid JSON: %w", err)
				}
				k := kt.(string)
				if seen[k] {
					return nil, fmt.Errorf("duplicate key %q", k)
				}
				seen[k] = true
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				obj = append(obj, member{k, v})
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			sortMembers(obj)
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			return arr, nil
		}
		return nil, fmt.Errorf("invalid JSON: unexpected %v", t)
	case json.Number:
		n, err := canonicalNumber(string(t))
		if err != nil {
			return nil, err
		}
		return n, nil
	case string, bool:
		return t, nil
	case nil:
		return jsonNull{}, nil
	}
	return nil, fmt.Errorf("invalid JSON: unexpected token %v", tok)
}

// sortMembers orders members by their keys' UTF-16 code units, as JCS does.
func sortMembers(obj object) {
	slices.SortFunc(obj, func(a, b member) int { return compareUTF16(a.key, b.key) })
}

func compareUTF16(a, b string) int {
	ea, eb := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	return slices.Compare(ea, eb)
}

// canonicalNumber writes a JSON number literal exactly, in the form ECMAScript's
// Number.prototype.toString (and so JCS) uses: plain digits from 1e-6 up to 1e21, exponent
// notation outside, no trailing zeros, no "+0", "-0" as "0". It works on the decimal digits
// themselves, so no precision is lost.
func canonicalNumber(lit string) (number, error) {
	s := lit
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > 1e8 || e < -1e8 {
			return "", fmt.Errorf("number %s: exponent out of range", lit)
		}
		mant, exp = s[:i], e
	}
	digits := mant
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		digits = mant[:i] + mant[i+1:]
		exp -= len(mant) - i - 1
	}
	// value = digits × 10^exp
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", nil
	}
	t := strings.TrimRight(digits, "0")
	exp += len(digits) - len(t)
	digits = t
	k := len(digits)
	n := exp + k // the decimal point sits after n digits
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case k <= n && n <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", n-k))
	case 0 < n && n <= 21:
		b.WriteString(digits[:n])
		b.WriteByte('.')
		b.WriteString(digits[n:])
	case -6 < n && n <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -n))
		b.WriteString(digits)
	default:
		b.WriteString(digits[:1])
		if k > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if n-1 >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(n - 1))
	}
	return number(b.String()), nil
}

// writeValue writes v; nl is "" for the canonical form or "\n" plus the current indent for
// the pretty one, where visible escapes non-printing characters (see Pretty).
func writeValue(b *bytes.Buffer, v any, nl string, visible bool) {
	switch v := v.(type) {
	case object:
		if len(v) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, m := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeIndent(b, nl, 1)
			writeString(b, m.key, visible)
			b.WriteByte(':')
			if nl != "" {
				b.WriteByte(' ')
			}
			writeValue(b, m.val, deeper(nl), visible)
		}
		writeIndent(b, nl, 0)
		b.WriteByte('}')
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeIndent(b, nl, 1)
			writeValue(b, e, deeper(nl), visible)
		}
		writeIndent(b, nl, 0)
		b.WriteByte(']')
	case string:
		writeString(b, v, visible)
	case number:
		b.WriteString(string(v))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case jsonNull:
		b.WriteString("null")
	}
}

func deeper(nl string) string {
	if nl == "" {
		return ""
	}
	return nl + "  "
}

func writeIndent(b *bytes.Buffer, nl string, extra int) {
	if nl == "" {
		return
	}
	b.WriteString(nl)
	b.WriteString(strings.Repeat("  ", extra))
}

// writeString writes s as a JSON string the JCS way: only '"', '\\' and C0 controls are
// escaped (\b \t \n \f \r short forms, \u00xx otherwise). With visible, every rune that does
// not print itself is escaped too (as a UTF-16 surrogate pair above the BMP).
func writeString(b *bytes.Buffer, s string, visible bool) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case visible && hidden(r):
				if r >= 0x10000 {
					r1, r2 := utf16.EncodeRune(r)
					fmt.Fprintf(b, `\u%04x\u%04x`, r1, r2)
				} else {
					fmt.Fprintf(b, `\u%04x`, r)
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// hidden reports whether r does not show itself on a terminal: anything not graphic (controls,
// format, tag and private-use characters, line and paragraph separators, unassigned code
// points, U+FFFD from invalid UTF-8), and invisibleExtra.
func hidden(r rune) bool {
	return r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.Is(unicode.Cf, r) ||
		unicode.Is(unicode.Co, r) || invisibleExtra(r) || (r >= 0xe0000 && r <= 0xe0fff)
}
