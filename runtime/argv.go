package runtime

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// An argv template is a list of elements. An element is either literal text or exactly one
// placeholder that fills the whole element:
//
//	{{args.name}}      the argument's value as one element (string, number or boolean)
//	{{args.name...}}   an array argument, one element per item
//
// A placeholder is never spliced into surrounding text and no shell is involved, so an argument
// such as "x; rm -rf /" stays one inert argv element. A missing optional argument drops its
// element.
type argvTemplate []argvPart

type argvPart struct {
	literal string
	path    []string // nil for a literal
	splat   bool
}

var placeholder = regexp.MustCompile(`^\{\{\s*args((?:\.[A-Za-z0-9_-]+)+)(\.\.\.)?\s*\}\}$`)

func parseTemplate(argv []string) (argvTemplate, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("argv is empty")
	}
	var t argvTemplate
	for i, el := range argv {
		if g := placeholder.FindStringSubmatch(el); g != nil {
			if i == 0 {
				// argv[0] chooses the program; letting an argument pick it would turn any
				// tool into run-anything.
				return nil, fmt.Errorf("argv[0] must be a literal program, not %q", el)
			}
			t = append(t, argvPart{path: strings.Split(g[1][1:], "."), splat: g[2] != ""})
			continue
		}
		if strings.Contains(el, "{{") || strings.Contains(el, "}}") {
			return nil, fmt.Errorf("argv[%d] %q: a placeholder must be the whole element, like \"{{args.path}}\" (no text around it)", i, el)
		}
		if el == "" && i == 0 {
			return nil, fmt.Errorf("argv[0] is empty")
		}
		t = append(t, argvPart{literal: el})
	}
	return t, nil
}

// expand fills the template from validated arguments.
func (t argvTemplate) expand(args map[string]any) ([]string, error) {
	var out []string
	for _, p := range t {
		if p.path == nil {
			out = append(out, p.literal)
			continue
		}
		v, ok := lookup(args, p.path)
		if !ok || v == nil {
			continue
		}
		name := "args." + strings.Join(p.path, ".")
		if p.splat {
			items, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("%s: want an array for {{%s...}}, got %T", name, name, v)
			}
			for i, it := range items {
				s, err := scalar(it)
				if err != nil {
					return nil, fmt.Errorf("%s[%d]: %w", name, i, err)
				}
				out = append(out, s)
			}
			continue
		}
		s, err := scalar(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func lookup(args map[string]any, path []string) (any, bool) {
	var cur any = args
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return "", fmt.Errorf("contains a NUL byte")
		}
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		return x.String(), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	default:
		return "", fmt.Errorf("want a string, number or boolean, got %T", v)
	}
}
