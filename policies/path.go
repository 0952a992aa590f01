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
//	session.tainted      whether an untrusted tool ran in this session (boolean)
//	session.tainted_by   the untrusted tools that ran (array of strings)
//	session.tools        the tools whose calls executed, this one excluded (array of strings)
//	session.labels       the labels label_if rules gave the session (array of strings)
//	session.calls        how many calls the session made before this one (number)
//	session.tools.*      (and tainted_by.*, labels.*) some element, as for args
//
// An args path may end in a transform and a selector:
//
//	args.command|words     the string at args.command split into the words sh passes to the
//	                       program (shellwords.go), as an array of strings; a string that needs
//	                       expansion or is more than one simple command is a mismatch
//	args.command|words.0   one word (here the command name); missing when there are fewer
//	args.argv.*            every element of an array: the condition holds when it holds for
//	args.command|words.*   some element (an empty array is missing), so a deny_if on "some
//	                       word starts with --output" fires if any word does
//
// A path is split once, when the policy is compiled; evaluation walks the pre-split segments
// without allocating.

type pathRoot int

const (
	rootArgs pathRoot = iota
	rootGrantID
	rootGrantLabel
	rootSession
	// The session state's values (session.go); rootSessionTainted must stay the first.
	rootSessionTainted
	rootSessionTaintedBy
	rootSessionTools
	rootSessionLabels
	rootSessionCalls
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
	// words: the value at segs is a string split into shell words (|words); wordIndex then
	// selects one of them (-1: all, as an array).
	words     bool
	wordIndex int
	// each: a final "*" tests every element of the array, holding when one holds.
	each bool
}

// wordsTransform is the one transform a path may name after "|".
const wordsTransform = "words"

func compilePath(s string) (compiledPath, error) {
	p := compiledPath{text: s}
	switch {
	case s == "grant.id":
		p.root = rootGrantID
		return p, nil
	case s == "session.id":
		p.root = rootSession
		return p, nil
	case strings.HasPrefix(s, "session."):
		base, each := strings.CutSuffix(s, ".*")
		root, ok := sessionPaths[base]
		switch {
		case !ok:
			return p, fmt.Errorf("unknown path %q; the session paths are session.id, session.tainted, session.tainted_by, session.tools, session.labels and session.calls", s)
		case each && !root.isList():
			return p, fmt.Errorf("path %q: * follows an array (session.tainted_by, session.tools, session.labels)", s)
		}
		p.root, p.each = root, each
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
		p.wordIndex = -1
		base, xform, hasXform := strings.Cut(strings.TrimPrefix(s, "args."), "|")
		var sel string
		if hasXform {
			name, rest, _ := strings.Cut(xform, ".")
			if name != wordsTransform {
				return p, fmt.Errorf("path %q: unknown transform %q after \"|\"; the one transform is |words (a shell command's words)", s, name)
			}
			p.words, sel = true, rest
			if strings.Contains(xform, ".") && sel == "" {
				return p, fmt.Errorf("path %q: empty segment after |words; write |words, |words.<n> or |words.*", s)
			}
		}
		parts := strings.Split(base, ".")
		if sel == "" && !hasXform && len(parts) > 0 && parts[len(parts)-1] == "*" {
			p.each, parts = true, parts[:len(parts)-1]
			if len(parts) == 0 {
				return p, fmt.Errorf("path %q: * needs an array path before it, such as args.argv.*", s)
			}
		}
		for i, part := range parts {
			if part == "" {
				return p, fmt.Errorf("path %q has an empty segment at position %d", s, i+1)
			}
			if part == "*" {
				return p, fmt.Errorf("path %q: * may only be the last segment (it tests every element of an array)", s)
			}
			seg := segment{key: part, index: -1}
			if n, err := strconv.Atoi(part); err == nil && n >= 0 && strconv.Itoa(n) == part {
				seg.index = n
			}
			p.segs = append(p.segs, seg)
		}
		switch {
		case sel == "":
		case sel == "*":
			p.each = true
		default:
			n, err := strconv.Atoi(sel)
			if err != nil || n < 0 || strconv.Itoa(n) != sel {
				return p, fmt.Errorf("path %q: after |words write a word index (|words.0 is the command name) or * (every word), not %q", s, sel)
			}
			p.wordIndex = n
		}
		return p, nil
	}
	if _, _, ok := strings.Cut(s, "|"); ok {
		return p, fmt.Errorf("path %q: |words applies to args. paths only", s)
	}
	return p, fmt.Errorf("unknown path %q; paths start with args., grant.id, grant.labels. or session.", s)
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
	if p.root.isState() {
		return p.resolveState(req), found
	}
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

// resolveSelected resolves the path, then applies |words and its word index. It allocates
// the words; paths without a transform use resolve alone.
func (p *compiledPath) resolveSelected(req *Request) (any, lookup) {
	v, l := p.resolve(req)
	if !p.words || l != found {
		return v, l
	}
	s, ok := v.(string)
	if !ok {
		return nil, mismatch
	}
	words, err := shellWords(s)
	if err != nil {
		return nil, mismatch
	}
	if p.wordIndex >= 0 {
		if p.wordIndex >= len(words) {
			return nil, missing
		}
		return words[p.wordIndex], found
	}
	arr := make([]any, len(words))
	for i, w := range words {
		arr[i] = w
	}
	return arr, found
}

// wordsError explains why the string at a |words path has no words a policy can judge; ""
// when it has, or the path is not a |words path.
func (p *compiledPath) wordsError(req *Request) string {
	if !p.words {
		return ""
	}
	v, l := p.resolve(req)
	if l != found {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		return "not a string"
	}
	if _, err := shellWords(s); err != nil {
		return err.Error()
	}
	return ""
}
