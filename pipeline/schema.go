package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// schemaBase is the base URL tool schemas are registered under. The .invalid TLD can never
// resolve, and the loader below refuses every URL anyway.
const schemaBase = "https://airlock.invalid/tools/"

// refusingLoader refuses to load any schema resource. A tool schema's $ref may only point
// inside the schema itself (or at the embedded draft meta-schemas): loading from files or the
// network would let a config file read host files or make the server fetch URLs at start-up.
type refusingLoader struct{}

func (refusingLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("schema $ref %q: Airlock does not load schemas from files or the network; inline the definition under $defs", u)
}

// compileSchema compiles one tool's input schema: draft 2020-12 unless the schema names
// another draft, formats asserted, no external $ref. A top-level object schema that says
// nothing about extra properties gets additionalProperties:false, so an argument the tool does
// not declare cannot slip past the schema into the policy or the tool.
func compileSchema(tool string, raw []byte) (*jsonschema.Schema, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte(`{"type":"object"}`)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("tool %q: input schema is not valid JSON: %w", tool, err)
	}
	if obj, ok := doc.(map[string]any); ok {
		_, hasAP := obj["additionalProperties"]
		_, hasUP := obj["unevaluatedProperties"]
		if !hasAP && !hasUP && obj["type"] == "object" {
			obj["additionalProperties"] = false
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refusingLoader{})
	loc := schemaBase + url.PathEscape(tool) + ".json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("tool %q: input schema: %w", tool, err)
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("tool %q: input schema does not compile: %w", tool, err)
	}
	return sch, nil
}

// maxArgErrors bounds the errors one refusal lists: 11,000 unknown keys are one mistake,
// and listing each would send the agent megabytes.
const maxArgErrors = 20

// validateArgs checks args against sch and turns a failure into ArgErrors that name each
// offending field by JSON pointer and say what the schema wants there.
//
// The reasons never quote an argument value: the library's messages do ("'AKIA…' does not
// match pattern …", "'hunter2' is not valid email: …"), and they end up in the audit record,
// which stores values only when the config asks (RecordArgs), and in logs. The agent knows what
// it sent; it needs what is wrong and what would be right. Keys in pointers are client text of
// any length, so they are cut to MaxRecordKeyBytes.
func validateArgs(sch *jsonschema.Schema, args map[string]any) error {
	err := sch.Validate(args)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return ArgErrors{{Reason: "the arguments could not be checked against the tool's schema"}}
	}
	var out ArgErrors
	seen := map[string]bool{}
	add := func(ptr, reason string) {
		if k := ptr + "\x00" + reason; !seen[k] {
			seen[k] = true
			out = append(out, &ArgError{Pointer: ptr, Reason: reason})
		}
	}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		ptr := pointerOf(e.InstanceLocation)
		if k, ok := e.ErrorKind.(*kind.PropertyNames); ok {
			// Its causes describe the key as if it were the whole document; report the key.
			add(ptr+"/"+escapePointer(boundKey(k.Property)), `property name is not allowed by the schema's "propertyNames"`)
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				add(ptr+"/"+escapePointer(boundKey(m)), "required property is missing")
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				add(ptr+"/"+escapePointer(boundKey(p)), "property is not allowed by the tool's schema")
			}
		default:
			add(ptr, schemaReason(e.ErrorKind))
		}
	}
	walk(ve)
	if len(out) == 0 {
		add("", "the arguments do not satisfy the tool's schema")
	}
	slices.SortStableFunc(out, func(a, b *ArgError) int { return strings.Compare(a.Pointer, b.Pointer) })
	if n := len(out); n > maxArgErrors {
		out = append(out[:maxArgErrors:maxArgErrors], &ArgError{Reason: fmt.Sprintf("and %d more errors like these", n-maxArgErrors)})
	}
	return out
}

// schemaReason says what the schema wants where a value failed it. It quotes the schema (a
// pattern, a format name, enum values, bounds), never the value. A kind not listed here gets
// a reason naming its keyword, so a new kind in the library cannot bring a value along.
func schemaReason(ek jsonschema.ErrorKind) string {
	switch k := ek.(type) {
	case *kind.Type:
		return fmt.Sprintf("got %s, want %s", k.Got, strings.Join(k.Want, " or "))
	case *kind.Pattern:
		return fmt.Sprintf("does not match the pattern %s", schemaValue(k.Want))
	case *kind.Format:
		if hint, ok := formatHints[k.Want]; ok {
			return fmt.Sprintf("is not a valid %q: want %s", k.Want, hint)
		}
		return fmt.Sprintf("is not a valid %q", k.Want)
	case *kind.Enum:
		return "must be one of " + schemaValues(k.Want)
	case *kind.Const:
		return "must be " + schemaValue(k.Want)
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters long", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long", k.Want)
	case *kind.Minimum:
		return "must be at least " + ratString(k.Want)
	case *kind.Maximum:
		return "must be at most " + ratString(k.Want)
	case *kind.ExclusiveMinimum:
		return "must be greater than " + ratString(k.Want)
	case *kind.ExclusiveMaximum:
		return "must be less than " + ratString(k.Want)
	case *kind.MultipleOf:
		return "must be a multiple of " + ratString(k.Want)
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items", k.Want)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items", k.Want)
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d properties", k.Want)
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %d properties", k.Want)
	case *kind.UniqueItems:
		return fmt.Sprintf("items %d and %d are equal; the items must be unique", k.Duplicates[0], k.Duplicates[1])
	case *kind.AdditionalItems:
		return fmt.Sprintf("has %d more items than the schema allows", k.Count)
	case *kind.Contains:
		return `no item matches the schema's "contains"`
	case *kind.MinContains:
		return fmt.Sprintf(`at least %d items must match the schema's "contains"`, k.Want)
	case *kind.MaxContains:
		return fmt.Sprintf(`at most %d items may match the schema's "contains"`, k.Want)
	case *kind.DependentRequired:
		return fmt.Sprintf("with property %s, properties %s are required", schemaValue(k.Prop), schemaValues(k.Missing))
	case *kind.Dependency:
		return fmt.Sprintf("with property %s, properties %s are required", schemaValue(k.Prop), schemaValues(k.Missing))
	case *kind.FalseSchema:
		return "is not allowed by the tool's schema"
	case *kind.OneOf:
		if len(k.Subschemas) == 0 {
			return `matches none of the schemas under "oneOf"`
		}
		return `matches more than one of the schemas under "oneOf"; it must match exactly one`
	case *kind.Not:
		return `matches the schema under "not", which it must not`
	}
	if kw := ek.KeywordPath(); len(kw) > 0 {
		return fmt.Sprintf("does not satisfy the schema's %q", kw[0])
	}
	return "does not satisfy the tool's schema"
}

// formatHints say what a valid value of a format looks like.
var formatHints = map[string]string{
	"email":     "an address like name@example.com",
	"date-time": "an RFC 3339 date and time like 2025-01-31T13:45:00Z",
	"date":      "a date like 2025-01-31",
	"time":      "a time like 13:45:00Z",
	"duration":  "an ISO 8601 duration like P1DT2H",
	"ipv4":      "an address like 192.0.2.1",
	"ipv6":      "an address like 2001:db8::1",
	"hostname":  "a host name like host.example.com",
	"uri":       "an absolute URI like https://example.com/path",
	"uuid":      "a UUID like 123e4567-e89b-12d3-a456-426614174000",
}

// maxSchemaValues bounds how many enum values a reason lists.
const maxSchemaValues = 20

// schemaValue renders a value taken from the schema as JSON, or says where to find it when it
// is long.
func schemaValue(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a pattern reads "<", not "\u003c"
	if err := enc.Encode(v); err != nil || b.Len() > 200 {
		return "the value given in the tool's schema"
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func schemaValues[T any](vs []T) string {
	parts := make([]string, 0, min(len(vs), maxSchemaValues)+1)
	for i, v := range vs {
		if i == maxSchemaValues {
			parts = append(parts, fmt.Sprintf("… (%d in all, see the tool's schema)", len(vs)))
			break
		}
		parts = append(parts, schemaValue(v))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// ratString renders a bound from the schema: exactly when it is an integer.
func ratString(r *big.Rat) string {
	if r == nil {
		return "the bound given in the tool's schema"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func pointerOf(loc []string) string {
	var b strings.Builder
	for _, t := range loc {
		b.WriteByte('/')
		b.WriteString(escapePointer(boundKey(t)))
	}
	return b.String()
}
