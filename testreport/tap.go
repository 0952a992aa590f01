package testreport

import (
	"regexp"
	"strconv"
	"strings"
)

var (
	tapVersion = regexp.MustCompile(`^\s*TAP version 1[34]\s*$`)
	tapPlan    = regexp.MustCompile(`^\s*1\.\.\d+`)
	// tapPoint is a test point: "ok 1 - name # SKIP reason", "not ok 2 name".
	tapPoint     = regexp.MustCompile(`^(\s*)(not ok|ok)\b[ \t]*(\d+)?[ \t]*(?:-[ \t]*)?(.*)$`)
	tapDirective = regexp.MustCompile(`(?i)^(skip|todo)\S*\s*(.*)$`)
	tapSubtest   = regexp.MustCompile(`^(\s*)# Subtest: ?(.*)$`)
	yamlKey      = regexp.MustCompile(`^([A-Za-z_][\w.-]*):(?:\s+(.*)|)$`)
)

const (
	// tapMaxYAML bounds the lines kept from one YAML diagnostic block.
	tapMaxYAML = 200
	// tapMaxDepth bounds the subtest names kept for a point's full name.
	tapMaxDepth = 64
)

// tapPending is a test point whose YAML diagnostics may follow.
type tapPending struct {
	name   string
	indent int
	failed bool
	yaml   []string
}

// tapLevel is the test points at one indentation whose parent has not been seen yet.
type tapLevel struct {
	indent    int
	failedAny bool
}

// parseTAP reads TAP 13/14, including indented subtests (TAP 14 and Node's reporter). A parent
// test point closes its subtests, which precede it; like Node, only the leaves are counted, and
// a parent counts only if it failed with no failing subtest (a hook or the suite itself failed).
// TODO tests count as skipped: their result says nothing about the code yet.
func parseTAP(in []byte) (*Report, bool) {
	b := newBuilder(FormatTAP)
	versioned, planned, points := false, false, 0
	var (
		pending  *tapPending
		levels   []tapLevel // by increasing indent
		subtests []struct {
			indent int
			name   string
		}
		yamlIndent = -1
	)
	flush := func() {
		if pending != nil && pending.failed {
			tapFailure(b, pending)
		}
		pending = nil
		yamlIndent = -1
	}
	eachLine(in, func(raw []byte) bool {
		line := string(raw)
		if pending != nil && yamlIndent >= 0 {
			// Inside a YAML block: it ends at "..." or at a line indented less than "---".
			t := strings.TrimSpace(line)
			if t == "..." {
				flush()
				return true
			}
			if t == "" || indentOf(line) >= yamlIndent {
				if len(pending.yaml) < tapMaxYAML {
					pending.yaml = append(pending.yaml, line)
				}
				return true
			}
			flush()
		}
		if pending != nil && strings.TrimSpace(line) == "---" && indentOf(line) >= pending.indent {
			yamlIndent = indentOf(line)
			return true
		}
		switch {
		case tapVersion.MatchString(line):
			versioned = true
			return true
		case tapPlan.MatchString(line):
			planned = true
			return true
		}
		if m := tapSubtest.FindStringSubmatch(line); m != nil {
			ind := len(m[1])
			for len(subtests) > 0 && subtests[len(subtests)-1].indent >= ind {
				subtests = subtests[:len(subtests)-1]
			}
			if len(subtests) < tapMaxDepth {
				subtests = append(subtests, struct {
					indent int
					name   string
				}{ind, clip(strings.TrimSpace(m[2]), maxName)})
			}
			return true
		}
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "Bail out!") {
			flush()
			b.r.Failed++
			b.addFailure(Failure{Name: "Bail out!", Message: strings.TrimSpace(strings.TrimPrefix(t, "Bail out!"))})
			return true
		}
		m := tapPoint.FindStringSubmatch(line)
		if m == nil {
			return true
		}
		flush()
		points++
		ind := len(m[1])
		desc, directive := tapSplitDirective(m[4])

		// A point closes the deeper points before it: they were its subtests.
		failed := m[2] == "not ok"
		seenBelow, failedBelow := false, false
		for len(levels) > 0 && levels[len(levels)-1].indent > ind {
			top := levels[len(levels)-1]
			seenBelow = true
			failedBelow = failedBelow || top.failedAny
			levels = levels[:len(levels)-1]
		}
		if len(levels) == 0 || levels[len(levels)-1].indent < ind {
			levels = append(levels, tapLevel{indent: ind})
		}
		lv := &levels[len(levels)-1]
		isParent, childFailed := seenBelow, failedBelow
		lv.failedAny = lv.failedAny || failed

		// The full name joins the enclosing subtests' names.
		var parts []string
		for _, s := range subtests {
			if s.indent < ind {
				parts = append(parts, s.name)
			}
		}
		for len(subtests) > 0 && subtests[len(subtests)-1].indent >= ind {
			subtests = subtests[:len(subtests)-1]
		}
		name := strings.ReplaceAll(strings.TrimSpace(desc), `\#`, "#")
		if name == "" && m[3] != "" {
			name = "test " + m[3]
		}
		parts = append(parts, name)

		pending = &tapPending{indent: ind}
		if isParent && (!failed || childFailed) {
			return true
		}
		switch {
		case directive != "":
			b.r.Skipped++
		case failed:
			b.r.Failed++
			pending = &tapPending{name: strings.Join(parts, " > "), indent: ind, failed: true}
			return true
		default:
			b.r.Passed++
		}
		return true
	})
	flush()
	if !versioned && !(planned && points > 0) {
		return nil, false
	}
	return b.report(), true
}

// tapSplitDirective separates "name # SKIP reason" into the name and the directive; "\#" is an
// escaped hash that belongs to the name.
func tapSplitDirective(s string) (string, string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == '#' {
			if m := tapDirective.FindStringSubmatch(strings.TrimSpace(s[i+1:])); m != nil {
				return strings.TrimSpace(s[:i]), strings.ToUpper(m[1])
			}
		}
	}
	return s, ""
}

// tapFailure turns a failed point and its YAML diagnostics into a Failure. The message is the
// block's "message" (TAP 13 convention) or "error" (Node); the location is "at" (a string
// "file:line:col" or a map with file and line), else "file"/"line", else the stack frame in the
// test's file, else Node's "location" (where the test was declared).
func tapFailure(b *builder, p *tapPending) {
	f := Failure{Name: p.name}
	y := parseYAMLBlock(p.yaml)
	f.Message = y["message"]
	if f.Message == "" {
		f.Message = y["error"]
	}
	if f.Message == "" {
		f.Message = y["stack"]
	}
	declared, hasDeclared := parseLocation(y["location"])
	var loc location
	var ok bool
	if at := y["at"]; at != "" {
		loc, ok = parseLocation(at)
	}
	if !ok && y["at.file"] != "" {
		loc.file = y["at.file"]
		loc.line, _ = strconv.Atoi(y["at.line"])
		ok = true
	}
	if !ok && y["file"] != "" {
		loc.file = y["file"]
		loc.line, _ = strconv.Atoi(y["line"])
		ok = true
	}
	if !ok && y["stack"] != "" {
		prefer := ""
		if hasDeclared {
			prefer = declared.file
		}
		if fr, found := pickFrame(frames(y["stack"], 32), prefer); found && (prefer == "" || fr.file == prefer) {
			loc, ok = fr, true
		}
	}
	if !ok && hasDeclared {
		loc, ok = declared, true
	}
	if ok {
		f.File, f.Line = loc.file, loc.line
	}
	b.addFailure(f)
}

// parseYAMLBlock reads the subset of YAML that TAP diagnostics use: top-level "key: value"
// pairs with plain or quoted scalars, block scalars ("|", "|-", ">"), and one level of nested
// map, flattened as "parent.key". Anything else is ignored rather than rejected.
func parseYAMLBlock(lines []string) map[string]string {
	out := map[string]string{}
	base := -1
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			if n := indentOf(l); base < 0 || n < base {
				base = n
			}
		}
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || indentOf(l) != base {
			continue
		}
		m := yamlKey.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		key, val := m[1], strings.TrimSpace(m[2])
		// Gather the lines indented under the key.
		j := i + 1
		for j < len(lines) && (strings.TrimSpace(lines[j]) == "" || indentOf(lines[j]) > base) {
			j++
		}
		under := lines[i+1 : j]
		i = j - 1
		switch {
		case val == "":
			sub := parseYAMLBlock(under)
			for k, v := range sub {
				if !strings.Contains(k, ".") {
					out[key+"."+k] = v
				}
			}
		case strings.HasPrefix(val, "|") || strings.HasPrefix(val, ">"):
			sep := "\n"
			if val[0] == '>' {
				sep = " "
			}
			out[key] = strings.TrimSpace(strings.Join(dedent(under), sep))
		default:
			out[key] = yamlScalar(val)
		}
	}
	return out
}

func yamlScalar(v string) string {
	switch {
	case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		if s, err := strconv.Unquote(v); err == nil {
			return s
		}
		return v[1 : len(v)-1]
	}
	return v
}
