package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
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

// validateArgs checks args against sch and turns a failure into ArgErrors that name each
// offending field by JSON pointer.
func validateArgs(sch *jsonschema.Schema, args map[string]any) error {
	err := sch.Validate(args)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return ArgErrors{{Reason: err.Error()}}
	}
	printer := message.NewPrinter(language.English)
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
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		ptr := pointerOf(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				add(ptr+"/"+escapePointer(m), "required property is missing")
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				add(ptr+"/"+escapePointer(p), "property is not allowed by the tool's schema")
			}
		default:
			add(ptr, e.ErrorKind.LocalizedString(printer))
		}
	}
	walk(ve)
	if len(out) == 0 {
		add("", ve.Error())
	}
	slices.SortStableFunc(out, func(a, b *ArgError) int { return strings.Compare(a.Pointer, b.Pointer) })
	return out
}

func pointerOf(loc []string) string {
	var b strings.Builder
	for _, t := range loc {
		b.WriteByte('/')
		b.WriteString(escapePointer(t))
	}
	return b.String()
}
