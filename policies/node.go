package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// node is one value of a policy document, read from JSON or YAML into the same shape so that
// validation, and the pointers in its errors, are identical for both formats. Objects keep
// their key order (errors come out in document order) and duplicate keys are an error: with a
// plain map the second "run_command" entry would silently replace the first one, and a reviewer
// reading the file top to bottom would approve rules that are not in force.
type node struct {
	kind  nodeKind
	str   string // kindString; kindNumber keeps its literal text here
	b     bool
	keys  []string
	vals  []*node
	items []*node
}

type nodeKind int

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k nodeKind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "boolean"
	case kindNumber:
		return "number"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	case kindObject:
		return "object"
	}
	return "unknown"
}

// docError is a reading error located at a JSON pointer (duplicate keys).
type docError struct {
	ptr string
	msg string
}

func (e *docError) Error() string { return e.msg }

// maxDocDepth bounds nesting so a hostile document cannot exhaust the stack.
const maxDocDepth = 64

// isYAMLName reports whether a file name says YAML; anything else is sniffed.
func isYAMLName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// readDocument parses data as JSON when it looks like JSON (a leading '{' and not a .yaml
// name), otherwise as YAML.
func readDocument(name string, data []byte) (*node, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return nil, errors.New("empty document")
	}
	if !isYAMLName(name) && trimmed[0] == '{' {
		return readJSON(data)
	}
	return readYAML(data)
}

// readJSON walks the token stream so duplicate keys and trailing data are caught.
func readJSON(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readJSONValue(dec, 0, "")
	if err != nil {
		return nil, jsonErr(data, dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, jsonErr(data, dec, errors.New("unexpected data after the document"))
	}
	return n, nil
}

func jsonErr(data []byte, dec *json.Decoder, err error) error {
	off := dec.InputOffset()
	var de *docError
	if errors.As(err, &de) {
		return err
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Errorf("line %d column %d: %w", line, col, err)
}

func readJSONValue(dec *json.Decoder, depth int, ptr string) (*node, error) {
	if depth > maxDocDepth {
		return nil, fmt.Errorf("document nested deeper than %d levels", maxDocDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: kindObject}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %v, not a string", kt)
				}
				if seen[k] {
					return nil, &docError{ptr: join(ptr, k), msg: fmt.Sprintf("duplicate key %q: the second entry would silently replace the first", k)}
				}
				seen[k] = true
				v, err := readJSONValue(dec, depth+1, join(ptr, k))
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &node{kind: kindArray}
			for dec.More() {
				v, err := readJSONValue(dec, depth+1, join(ptr, len(n.items)))
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		return &node{kind: kindString, str: t}, nil
	case json.Number:
		return &node{kind: kindNumber, str: string(t)}, nil
	case bool:
		return &node{kind: kindBool, b: t}, nil
	case nil:
		return &node{kind: kindNull}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

func readYAML(data []byte) (*node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, errors.New("more than one YAML document in the file")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("empty document")
	}
	return fromYAML(doc.Content[0], 0, "")
}

// fromYAML converts a yaml.v3 node. Anchors and aliases are refused: they make the document
// read differently from how it evaluates and are the vehicle of "billion laughs" expansion.
func fromYAML(y *yaml.Node, depth int, ptr string) (*node, error) {
	if depth > maxDocDepth {
		return nil, fmt.Errorf("line %d: document nested deeper than %d levels", y.Line, maxDocDepth)
	}
	if y.Anchor != "" || y.Kind == yaml.AliasNode {
		return nil, fmt.Errorf("line %d: YAML anchors and aliases are not supported in policies; write the value out", y.Line)
	}
	switch y.Kind {
	case yaml.MappingNode:
		n := &node{kind: kindObject}
		seen := map[string]bool{}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!bool" && k.Tag != "!!float") {
				return nil, fmt.Errorf("line %d: mapping key must be a plain string", k.Line)
			}
			if k.Value == "<<" && k.Tag != "!!str" {
				return nil, fmt.Errorf("line %d: YAML merge keys are not supported in policies", k.Line)
			}
			if seen[k.Value] {
				return nil, &docError{ptr: join(ptr, k.Value), msg: fmt.Sprintf("line %d: duplicate key %q: the second entry would silently replace the first", k.Line, k.Value)}
			}
			seen[k.Value] = true
			cv, err := fromYAML(v, depth+1, join(ptr, k.Value))
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k.Value)
			n.vals = append(n.vals, cv)
		}
		return n, nil
	case yaml.SequenceNode:
		n := &node{kind: kindArray}
		for i, c := range y.Content {
			cv, err := fromYAML(c, depth+1, join(ptr, i))
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, cv)
		}
		return n, nil
	case yaml.ScalarNode:
		switch y.Tag {
		case "!!null":
			return &node{kind: kindNull}, nil
		case "!!bool":
			var b bool
			if err := y.Decode(&b); err != nil {
				return nil, fmt.Errorf("line %d: %w", y.Line, err)
			}
			return &node{kind: kindBool, b: b}, nil
		case "!!int", "!!float":
			var f float64
			if err := y.Decode(&f); err != nil {
				return nil, fmt.Errorf("line %d: %w", y.Line, err)
			}
			lit := strings.ReplaceAll(y.Value, "_", "")
			if !json.Valid([]byte(lit)) {
				// 0x1F, 0o17, .inf and friends: normalise to the decoded value.
				if y.Tag == "!!int" {
					var i int64
					if err := y.Decode(&i); err == nil {
						lit = fmt.Sprint(i)
					} else {
						return nil, fmt.Errorf("line %d: number %q out of range", y.Line, y.Value)
					}
				} else {
					b, err := json.Marshal(f)
					if err != nil {
						return nil, fmt.Errorf("line %d: number %q is not finite", y.Line, y.Value)
					}
					lit = string(b)
				}
			}
			return &node{kind: kindNumber, str: lit}, nil
		case "!!str", "!!timestamp", "!!binary":
			return &node{kind: kindString, str: y.Value}, nil
		}
		return nil, fmt.Errorf("line %d: YAML tag %s is not supported in policies", y.Line, y.Tag)
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", y.Line)
}
