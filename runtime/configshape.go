package runtime

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkShape walks the YAML document against the Config type before it is decoded, so that
// every unknown key and every value of the wrong type is reported with its key path and, for
// a misspelt key, the key that was probably meant: "profiles.lint.pids: want an integer, got
// "many"", "workspce: unknown key, did you mean workspace?". yaml.v3's own errors name a Go
// type and a line instead, and stop at the first.
//
// Unknown keys are errors, not warnings: a misspelt "workspce: ro" silently ignored would
// leave the operator believing in a restriction that is not there.
func (c *Config) checkShape() error {
	if c.root == nil || len(c.root.Content) == 0 {
		return nil
	}
	return c.shape(c.root.Content[0], reflect.TypeFor[Config](), nil)
}

var (
	durationType    = reflect.TypeFor[Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

func (c *Config) shape(n *yaml.Node, t reflect.Type, path []any) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.ShortTag() == "!!null" {
		return nil // an empty value decodes to the zero value; the checks after decoding judge it
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(msg string) error {
		return &ConfigError{File: c.File, Line: n.Line, Path: pathString(path), Msg: msg}
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || isScalarKind(t.Kind()) {
		if n.Kind != yaml.ScalarNode {
			return bad(fmt.Sprintf("want %s, got %s", wantText(t), kindText(n)))
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return bad(fmt.Sprintf("want %s, got %q", wantText(t), n.Value))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return bad(fmt.Sprintf("want a mapping of keys (%s), got %s", strings.Join(yamlKeys(t), ", "), kindText(n)))
		}
		keys := yamlKeys(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := yamlField(t, k.Value)
			if !ok {
				msg := "unknown key" + didYouMean(k.Value, keys)
				if !strings.Contains(msg, "?") {
					msg += "; the keys here are " + strings.Join(keys, ", ")
				}
				return &ConfigError{File: c.File, Line: k.Line, Path: pathString(append(path, k.Value)), Msg: msg}
			}
			if err := c.shape(v, f.Type, append(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return bad(fmt.Sprintf("want a mapping, got %s", kindText(n)))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := c.shape(n.Content[i+1], t.Elem(), append(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return bad(fmt.Sprintf("want a list, got %s", kindText(n)))
		}
		for i, e := range n.Content {
			if err := c.shape(e, t.Elem(), append(path, i)); err != nil {
				return err
			}
		}
	case reflect.Interface:
		// Free-form (input_schema): anything goes here; the tool's JSON Schema is compiled later.
	}
	return nil
}

func isScalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// wantText says what a value of type t looks like in YAML.
func wantText(t reflect.Type) string {
	if t == durationType {
		return "a positive Go duration such as 30s or 10m"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	}
	return "a " + t.Kind().String()
}

func kindText(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// yamlKeys lists the keys a struct accepts, in field order.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlKey(f) == key && key != "" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlKey is the key a struct field is decoded from, or "" for fields YAML does not set.
func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

// pathString writes a key path the way errors show it: profiles.lint.pids, tools[2].argv.
func pathString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}
