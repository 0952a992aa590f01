package pins

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/pipeline"
)

// DefaultMaxDescription is the cap CleanDescription applies when max <= 0, in runes.
const DefaultMaxDescription = 2048

// TruncatedNote ends a description that CleanDescription cut.
const TruncatedNote = "…[truncated]"

// CleanDescription makes an upstream's tool description safe to show to the model (and to
// the human who reads the same tools/list in a client):
//
//  1. invalid UTF-8 becomes U+FFFD; terminal escape sequences (CSI, OSC, DCS...), C0/C1
//     controls other than newline and tab, Unicode format characters (category Cf: zero-width
//     characters, bidi embeddings, overrides and isolates, the BOM...), the tag block
//     U+E0000-U+E007F and the supplementary variation selectors are removed, exactly as
//     stage 6 cleans tool output; CR becomes a newline;
//  2. the BMP and Mongolian variation selectors and the Hangul fillers are removed too (see
//     invisibleExtra);
//  3. HTML comments are removed, an unterminated one up to the end;
//  4. the text is cut to max runes (DefaultMaxDescription when max <= 0), the cut marked with
//     TruncatedNote (which counts towards max).
//
// "Tool poisoning" hides instructions for the model where a human reviewing the tool cannot
// see them: tag characters and zero-width characters spell text invisibly, a bidi override
// makes text read differently from what it is, a Markdown renderer hides HTML comments, and
// an escape sequence clears the terminal that shows the description. The cap stops an
// upstream from flooding the model's context through a description.
func CleanDescription(s string, max int) string {
	if max <= 0 {
		max = DefaultMaxDescription
	}
	// Stage 6's cleaner without redaction or path scrubbing: the one implementation of
	// terminal-escape parsing in Airlock.
	s = pipeline.StripControls(s)
	s = strings.Map(func(r rune) rune {
		if invisibleExtra(r) {
			return -1
		}
		return r
	}, s)
	s = stripComments(s)
	return capRunes(s, max)
}

// invisibleExtra reports the invisible characters that are not format characters, which
// stage 6 leaves alone but a description has no use for: the variation selectors U+FE00-FE0F
// and the Mongolian free variation selectors (both carry bytes invisibly after a visible
// character: "emoji smuggling"), and the Hangul fillers, which render as nothing.
func invisibleExtra(r rune) bool {
	switch {
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0x180b && r <= 0x180f:
		return true
	case r == 0x115f, r == 0x1160, r == 0x3164, r == 0xffa0:
		return true
	}
	return false
}

// stripComments removes HTML comments: from "<!--" to the next "-->" or "--!>" (where HTML
// ends them), or to the end of the text if none follows. It repeats until none is left, so
// removing one comment cannot join the text around it into a new one ("<!<!---->-- x -->").
func stripComments(s string) string {
	for {
		i := strings.Index(s, "<!--")
		if i < 0 {
			return s
		}
		var b strings.Builder
		for {
			b.WriteString(s[:i])
			rest := s[i+len("<!--"):]
			end := commentEnd(rest)
			if end < 0 {
				s = ""
				break
			}
			s = rest[end:]
			if i = strings.Index(s, "<!--"); i < 0 {
				b.WriteString(s)
				break
			}
		}
		s = b.String()
	}
}

// commentEnd returns the index just after the end of a comment whose "<!--" preceded rest,
// or -1 if it is unterminated. "<!-->" and "<!--->" are (empty) comments in HTML.
func commentEnd(rest string) int {
	switch {
	case strings.HasPrefix(rest, ">"):
		return 1
	case strings.HasPrefix(rest, "->"):
		return 2
	}
	end := -1
	if j := strings.Index(rest, "-->"); j >= 0 {
		end = j + 3
	}
	if j := strings.Index(rest, "--!>"); j >= 0 && (end < 0 || j+4 < end) {
		end = j + 4
	}
	return end
}

// capRunes cuts s to at most max runes, TruncatedNote included.
func capRunes(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	keep := max - utf8.RuneCountInString(TruncatedNote)
	i := 0
	for n := 0; n < keep && i < len(s); n++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + TruncatedNote
}

// CleanSchema returns a tool's JSON Schema as shown to the model: the title, description and
// $comment of the schema and of every subschema in it (properties, items, $defs, allOf...)
// cleaned by CleanDescription, each capped at max runes. A schema's descriptions reach the
// model as its tool description does, and hide instructions as well. Values are left as they
// are (const, enum, default, examples): they are data the upstream validates against, and
// changing them would change what a call may send. The result is compact canonical JSON;
// empty or null raw stays nil.
func CleanSchema(raw json.RawMessage, max int) (json.RawMessage, error) {
	v, err := parseJSON(raw)
	if err != nil || v == nil {
		return nil, err
	}
	cleanSubschema(v, max)
	var b bytes.Buffer
	writeValue(&b, v, "", false)
	return b.Bytes(), nil
}

// cleanSubschema cleans one schema in place and recurses into the keywords whose values are
// schemas (JSON Schema draft 2020-12 and the draft-07 forms MCP servers still send).
func cleanSubschema(v any, max int) {
	obj, ok := v.(object)
	if !ok {
		return // true, false, or not a schema
	}
	for i, m := range obj {
		switch m.key {
		case "title", "description", "$comment":
			if s, ok := m.val.(string); ok {
				obj[i].val = CleanDescription(s, max)
			}
		case "properties", "patternProperties", "$defs", "definitions", "dependentSchemas":
			if sub, ok := m.val.(object); ok {
				for _, p := range sub {
					cleanSubschema(p.val, max)
				}
			}
		case "allOf", "anyOf", "oneOf", "prefixItems", "items":
			if arr, ok := m.val.([]any); ok {
				for _, e := range arr {
					cleanSubschema(e, max)
				}
				continue
			}
			cleanSubschema(m.val, max)
		case "additionalProperties", "additionalItems", "unevaluatedProperties", "unevaluatedItems", "not",
			"if", "then", "else", "contains", "propertyNames", "contentSchema":
			cleanSubschema(m.val, max)
		}
	}
}
