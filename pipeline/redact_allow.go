package pipeline

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"

	ahocorasick "github.com/BobuSumisu/aho-corasick"
	"github.com/zricethezav/gitleaks/v8/config"
)

// An allowMatcher answers, for one gitleaks allowlist, whether any of its regexes matches a
// target, as Allowlist.RegexAllowed does, but faster. gitleaks joins an allowlist's regexes
// into one alternation; generic-api-key's list of harmless names ("public_key", "api_version",
// "keyring"... about sixty alternatives, case-insensitive) then costs Go's NFA about 28 µs on
// a 40-byte match, and gitleaks runs it on every candidate secret: on a file of key = value
// lines that was two thirds of all redaction time.
//
// Each alternative that must begin with literal text (once leading optional parts, which
// cannot decide whether there is a match somewhere, are dropped) is tried only where that
// text occurs, anchored there; the others stay one ordinary expression. Case-insensitive
// literals are found by their ASCII lowercase; one that only a non-ASCII case variant would
// match (U+212A for "k") is missed, which makes an allowlist allow less, never more.
type allowMatcher struct {
	trie     *ahocorasick.Trie
	at0, at1 *regexp.Regexp // the anchorable alternatives, anchored (at1: after one character of context)
	rest     *regexp.Regexp // the other alternatives; nil when there are none
}

func newAllowMatcher(a *config.Allowlist) *allowMatcher {
	var anchored, rest []string // rest: the alternatives not anchorable, printed
	var leadSet []string
	seen := map[string]bool{}
	// gitleaks matches the regexes joined into one group (config.joinRegexOr), so a flag at the
	// start of one ("(?i)^true|false|null$") also applies to those after it. Parse that same
	// group, and split its alternatives.
	pats := make([]string, len(a.Regexes))
	for i, re := range a.Regexes {
		pats[i] = re.String()
	}
	joined := "(?:" + strings.Join(pats, "|") + ")"
	if _, err := syntax.Parse(joined, syntax.Perl); err != nil {
		return &allowMatcher{rest: regexp.MustCompile(joined)}
	}
	// The parser factors the alternatives' common prefixes, so its branches need not be the
	// patterns; each pattern is analysed on its own, parsed with the flags it inherits.
	for _, src := range splitAlternation(joined) {
		b, err := syntax.Parse(src, syntax.Perl)
		if err != nil {
			rest = append(rest, src)
			continue
		}
		core := dropLeadingOptional(b)
		leads, ok := leadStrings(core)
		if ok && len(leads) > 0 && allLonger(leads, 2) {
			anchored = append(anchored, src)
			for _, l := range leads {
				if !seen[l] {
					seen[l] = true
					leadSet = append(leadSet, l)
				}
			}
			continue
		}
		rest = append(rest, src)
	}
	m := &allowMatcher{}
	if len(anchored) > 0 {
		// Anchored at a lead, the whole group is tried: an alternative whose dropped optional
		// start matches nothing there, or one that is not anchorable, matching at a lead still
		// matches somewhere, as RegexAllowed asks. (Printing the alternatives separately would
		// cost a fold-closure walk over every negated class, tens of milliseconds each.)
		m.at0 = regexp.MustCompile(`^` + joined)
		m.at1 = regexp.MustCompile(`^(?s:.)` + joined)
		m.trie = ahocorasick.NewTrieBuilder().AddStrings(leadSet).Build()
	}
	if len(rest) > 0 {
		m.rest = regexp.MustCompile(strings.Join(rest, "|"))
	}
	return m
}

// splitAlternation splits "(?:a|b|c)", a group of alternatives as gitleaks joins them, into
// its top-level alternatives, each prefixed with the flags an earlier "(?i)" in the group
// set for it. It never prints a syntax tree, which costs a fold-closure walk over every
// negated character class.
func splitAlternation(group string) []string {
	body := strings.TrimSuffix(strings.TrimPrefix(group, "(?:"), ")")
	var out []string
	flags := ""
	depth, start := 0, 0
	inClass := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(body) && body[i+1] == '^' {
				i++
			}
			if i+1 < len(body) && body[i+1] == ']' {
				i++ // a literal ] first in a class
			}
		case c == '(':
			if depth == 0 {
				// A flag group at the top level, "(?i)", sets flags for the rest of the group.
				if j := strings.IndexByte(body[i:], ')'); j > 2 && body[i+1] == '?' && isFlags(body[i+2:i+j]) {
					flags = mergeFlags(flags, body[i+2:i+j])
				}
			}
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			out = append(out, withFlags(flags, body[start:i]))
			start = i + 1
		}
	}
	return append(out, withFlags(flags, body[start:]))
}

// isFlags reports whether s is the inside of a flag group such as "i" or "-i" or "is".
func isFlags(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("imsU-", c) {
			return false
		}
	}
	return true
}

// mergeFlags applies the flag group f on top of the current flags cur ("i", "is"...).
func mergeFlags(cur, f string) string {
	on, off, _ := strings.Cut(f, "-")
	for _, c := range off {
		cur = strings.ReplaceAll(cur, string(c), "")
	}
	for _, c := range on {
		if !strings.ContainsRune(cur, c) {
			cur += string(c)
		}
	}
	return cur
}

// withFlags prefixes an alternative with the flags in force where it starts. Its own flag
// groups still apply after that.
func withFlags(flags, alt string) string {
	if flags == "" {
		return alt
	}
	return "(?" + flags + ")" + alt
}

func allLonger(ls []string, n int) bool {
	for _, l := range ls {
		if len(l) <= n {
			return false
		}
	}
	return true
}

// dropLeadingOptional removes from a concatenation the leading repetitions that may match
// nothing (`[a-z0-9-]*?`): whether the expression matches somewhere does not depend on them.
func dropLeadingOptional(re *syntax.Regexp) *syntax.Regexp {
	if re.Op != syntax.OpConcat {
		return re
	}
	i := 0
	for ; i < len(re.Sub)-1; i++ {
		s := re.Sub[i]
		optional := s.Op == syntax.OpStar || s.Op == syntax.OpQuest || (s.Op == syntax.OpRepeat && s.Min == 0)
		if !optional {
			break
		}
	}
	if i == 0 {
		return re
	}
	out := *re
	out.Sub = re.Sub[i:]
	if len(out.Sub) == 1 {
		return out.Sub[0]
	}
	return &out
}

// MatchString reports whether any of the allowlist's regexes matches s.
func (m *allowMatcher) MatchString(s string) bool {
	if s == "" {
		return false
	}
	if m.trie != nil {
		hit := false
		last := -1
		m.trie.Walk(asciiLower(s), func(end, n, _ int64) bool {
			pos := int(end - n + 1)
			if pos == last {
				return true
			}
			last = pos
			if pos == 0 {
				hit = m.at0.MatchString(s)
			} else {
				_, w := utf8.DecodeLastRuneInString(s[:pos])
				hit = m.at1.MatchString(s[pos-w:])
			}
			return !hit
		})
		if hit {
			return true
		}
	}
	return m.rest != nil && m.rest.MatchString(s)
}
