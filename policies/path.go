package policies

import (
	"fmt"
	"strconv"
	"strings"
)

// Paths name the value a condition tests:
//
//	args.a.b      key b of object a in the call's arguments
//	args.list.0   element 0 of array list (a numeric segment indexes arrays, and is a plain key
//	              when the value at that point is an object)
//	grant.id      the caller's grant ID
//	grant.labels.<k>  label k of the caller's grant
//	session.id    the MCP session ID
//
// A path is split once, when the policy is compiled; evaluation walks the pre-split segments
// without allocating.

type pathRoot int

const (
	rootArgs pathRoot = iota
	rootGrantID
	rootGrantLabel
	rootSession
)

type segment struct {
	key   string
	index int // -1 when key is not a valid array index
}

type compiledPath struct {
	text  string
	root  pathRoot
	label string // rootGrantLabel
	segs  []segment
}

func compilePath(s string) (compiledPath, error) {
	p := compiledPath{text: s}
	switch {
	case s == "grant.id":
		p.root = rootGrantID
		return p, nil
	case s == "session.id":
		p.root = rootSession
		return p, nil
	case strings.HasPrefix(s, "grant.labels."):
		p.root = rootGrantLabel
		p.label = strings.TrimPrefix(s, "grant.labels.")
		if p.label == "" {
			return p, fmt.Errorf("path %q names no label; write grant.labels.<name>", s)
		}
		return p, nil
	case strings.HasPrefix(s, "args."):
		p.root = rootArgs
		for i, part := range strings.Split(strings.TrimPrefix(s, "args."), ".") {
			if part == "" {
				return p, fmt.Errorf("path %q has an empty segment at position %d", s, i+1)
			}
			seg := segment{key: part, index: -1}
			if n, err := strconv.Atoi(part); err == nil && n >= 0 && strconv.Itoa(n) == part {
				seg.index = n
			}
			p.segs = append(p.segs, seg)
		}
		return p, nil
	}
	return p, fmt.Errorf("unknown path %q; paths start with args., grant.id, grant.labels. or session.id", s)
}

// lookup is the outcome of resolving a path.
type lookup int

const (
	found    lookup = iota
	missing         // a key is absent, an index is out of range, or the value is null
	mismatch        // the path runs through a string, number or boolean
)

// resolveString finds a grant.* or session.id value; ok is false when it is absent or empty.
func (p *compiledPath) resolveString(req *Request) (string, bool) {
	switch p.root {
	case rootGrantID:
		return req.Grant.ID, req.Grant.ID != ""
	case rootSession:
		return req.Session, req.Session != ""
	case rootGrantLabel:
		v, ok := req.Grant.Labels[p.label]
		return v, ok
	}
	return "", false
}

// resolve finds the path's value in req.
func (p *compiledPath) resolve(req *Request) (any, lookup) {
	if p.root != rootArgs {
		s, ok := p.resolveString(req)
		if !ok {
			return nil, missing
		}
		return s, found
	}
	if req.Args == nil {
		return nil, missing
	}
	var cur any = req.Args
	for i := range p.segs {
		seg := &p.segs[i]
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg.key]
			if !ok {
				return nil, missing
			}
			cur = v
		case []any:
			if seg.index < 0 {
				return nil, mismatch
			}
			if seg.index >= len(c) {
				return nil, missing
			}
			cur = c[seg.index]
		case nil:
			return nil, missing
		default:
			return nil, mismatch
		}
	}
	if cur == nil {
		return nil, missing
	}
	return cur, found
}
