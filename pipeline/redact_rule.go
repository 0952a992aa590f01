package pipeline

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/zricethezav/gitleaks/v8/config"
)

// A redactRule is one secret rule in the form the Redactor runs it. Its regular expression is
// gitleaks' (or one of Airlock's own, see extraRules), analysed once so that each keyword
// occurrence costs a bounded amount of matching:
//
//   - gitleaks' semi-generic rules begin with a lazy `[\w.-]{0,50}?` that only lets a match
//     start up to 50 identifier characters before its keyword. It decides neither whether
//     there is a match nor the secret, but it multiplies the states Go's regexp tracks at every
//     byte by fifty. It is removed from re; where a match would have started is worked out
//     afterwards (leftExtent) for the allowlists that look at the whole match.
//   - A rule whose every match begins with one of its keywords (anchored) is tried only at
//     the keyword occurrences, each attempt anchored there, so it never scans text between
//     them. The others scan windows around their keywords, as wide as a match can be.
//   - width bounds how far a match can reach; a rule that can match without bound (`{11,}`,
//     `.*`) is given widthCap, or a short first slice when a cut-off match still shows at the
//     cut (openEnd), and is widened only when a match reaches the cut.
type redactRule struct {
	id      string
	generic bool
	// re is the rule's expression without the lazy identifier prefix, unanchored.
	re *regexp.Regexp
	// at0 and at1 are re anchored at the start of the slice they are given; at1 first
	// consumes one character, the one before the keyword, so that a leading \b judges the
	// real neighbour and not the slice's edge.
	at0, at1 *regexp.Regexp
	anchored bool
	// local: every match contains a keyword (containsKeyword), so a window of width around
	// each occurrence is enough; otherwise the window also takes in contextReach of the line.
	local bool
	// width is the most bytes a match can span, or widthCap; bounded says it is exact.
	width   int
	bounded bool
	// cutShows: a match cut short by the end of a slice still matches, up to the cut (the
	// expression ends in a greedy repetition, or may end at the end of the text in place of
	// its closing delimiter), so a long match can be looked for in a short slice first.
	cutShows bool
	lean     int // leanWidth
	// leftExtent is the length of the removed lazy prefix (0: none) and leftClass its class.
	leftExtent int
	leftClass  func(byte) bool
	// needs: every match contains one of these (lowercase), and they are not all keywords; a
	// slice or window without any of them is not handed to the expression.
	needs []string
	// member[c]: byte c can be part of a match. An anchored attempt's slice ends just after
	// the first byte that cannot, so its cost follows the text that could match.
	member *[256]bool
	// after, when set, must match the text right after a keyword (up to afterWindow bytes)
	// for that occurrence to count (see keywordGuards).
	after       *regexp.Regexp
	afterWindow int

	secretGroup int
	entropy     float64
	allowlists  []*config.Allowlist
}

const (
	// widthCap is the reach given to a rule whose expression is unbounded and whose cut-off
	// matches do not show at the cut (a PEM block's lazy `[\s\S-]{64,}?` up to "KEY-----"):
	// 16 KiB holds an RSA-16384 private key.
	widthCap = 16 << 10
	// lineCap is the reach of a rule that can match without bound through `.*` (curl -H and
	// -u: anything may stand between "curl" and the header on up to six lines). Go runs such
	// an expression in its slow NFA; 2 KiB holds a long curl command.
	lineCap = 2 << 10
	// openSlice is the first slice a rule whose cut-off matches show (cutShows) is tried on
	// when its matches can be longer; a match that reaches the cut is tried again on twice as
	// much, and so on.
	openSlice = 512
	// contextReach is how far from its keyword a rule whose matches need not contain the
	// keyword (facebook-access-token: "facebook" somewhere near a bare `\d{15,16}|...`) looks
	// on the keyword's line and the next, in addition to its own width.
	contextReach = 512
)

// compileRule analyses one rule. keywords are lowercase.
func compileRule(id, expr string, keywords []string) (redactRule, error) {
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return redactRule{}, fmt.Errorf("rule %s: %w", id, err)
	}
	r := redactRule{id: id, generic: strings.Contains(id, "generic")}
	src := expr
	if core, n, class := stripLazyPrefix(tree); core != nil {
		// Printing a syntax tree costs a fold-closure walk over every character class (all of
		// Unicode for [\s\S]), so only a changed tree is printed.
		tree, r.leftExtent, r.leftClass = core, n, class
		src = tree.String()
	}
	if r.re, err = regexp.Compile(src); err != nil {
		return redactRule{}, fmt.Errorf("rule %s: %w", id, err)
	}
	r.at0 = regexp.MustCompile(`^(?:` + src + `)`)
	r.at1 = regexp.MustCompile(`^(?s:.)(?:` + src + `)`)
	r.width, r.bounded = maxWidth(tree)
	if !r.bounded || r.width > widthCap {
		r.width, r.bounded = widthCap, false
		if anyStar(tree) {
			r.width = lineCap
		}
	}
	r.cutShows = cutShows(tree)
	r.lean = leanWidth(tree)
	if leads, ok := leadStrings(tree); ok && len(leads) > 0 {
		r.anchored = true
		for _, l := range leads {
			if !hasKeywordPrefix(l, keywords) {
				r.anchored = false
				break
			}
		}
	}
	r.local = r.anchored || containsKeyword(tree, keywords)
	r.needs = requiredFactors(tree, keywords)
	r.member = &[256]bool{}
	members(tree, r.member)
	return r, nil
}

func hasKeywordPrefix(s string, keywords []string) bool {
	for _, k := range keywords {
		if strings.HasPrefix(s, k) {
			return true
		}
	}
	return false
}

// stripLazyPrefix removes the leading lazy repetitions of a character class that cannot match
// a newline (`[\w.-]{0,50}?`, sometimes twice in a row) from re, or from each alternative of
// a top-level alternation, and returns the rest, how far the removed part could reach and its
// class (the union over alternatives). It returns nil when there is nothing to remove.
func stripLazyPrefix(re *syntax.Regexp) (*syntax.Regexp, int, func(byte) bool) {
	if re.Op == syntax.OpAlternate {
		out := *re
		out.Sub = make([]*syntax.Regexp, len(re.Sub))
		most, stripped := 0, false
		var classes []func(byte) bool
		for i, s := range re.Sub {
			out.Sub[i] = s
			if core, n, in := stripLazyPrefix(s); core != nil {
				out.Sub[i], most, stripped = core, max(most, n), true
				classes = append(classes, in)
			}
		}
		if !stripped {
			return nil, 0, nil
		}
		return &out, most, func(c byte) bool { return slices.ContainsFunc(classes, func(in func(byte) bool) bool { return in(c) }) }
	}
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return nil, 0, nil
	}
	var classes [][]rune
	n, i := 0, 0
	for ; i < len(re.Sub)-1; i++ {
		p := re.Sub[i]
		if p.Op != syntax.OpRepeat || p.Min != 0 || p.Max <= 0 || p.Flags&syntax.NonGreedy == 0 ||
			p.Sub[0].Op != syntax.OpCharClass || matchesNewline(p.Sub[0]) {
			break
		}
		n += p.Max
		classes = append(classes, p.Sub[0].Rune)
	}
	if i == 0 {
		return nil, 0, nil
	}
	in := func(c byte) bool {
		for _, class := range classes {
			for j := 0; j+1 < len(class); j += 2 {
				if class[j] <= rune(c) && rune(c) <= class[j+1] {
					return true
				}
			}
		}
		return false
	}
	rest := *re
	rest.Sub = re.Sub[i:]
	if len(rest.Sub) == 1 {
		return rest.Sub[0], n, in
	}
	return &rest, n, in
}

// containsKeyword reports whether every match of re contains one of the keywords, so that a
// window around each keyword occurrence, as wide as a match, holds every match.
func containsKeyword(re *syntax.Regexp, keywords []string) bool {
	all := func(ls []string, ok bool) bool {
		if !ok || len(ls) == 0 {
			return false
		}
		for _, l := range ls {
			if !slices.ContainsFunc(keywords, func(k string) bool { return strings.Contains(l, k) }) {
				return false
			}
		}
		return true
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return containsKeyword(re.Sub[0], keywords)
	case syntax.OpRepeat:
		return re.Min >= 1 && containsKeyword(re.Sub[0], keywords)
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if !containsKeyword(s, keywords) {
				return false
			}
		}
		return true
	case syntax.OpConcat:
		for i, s := range re.Sub {
			if containsKeyword(s, keywords) {
				return true
			}
			rest := &syntax.Regexp{Op: syntax.OpConcat, Sub: re.Sub[i:]}
			if all(leadStrings(rest)) {
				return true
			}
		}
		return false
	}
	return all(leadStrings(re))
}

// minNeed is the shortest factor worth looking for before running an expression.
const minNeed = 3

// requiredFactors returns strings, lowercase, at least one of which every match of re
// contains, chosen to be as long as possible and not all keywords (which are present
// anyway); nil when there are none at least minNeed long.
func requiredFactors(re *syntax.Regexp, keywords []string) []string {
	fs := factors(re, keywords)
	for _, f := range fs {
		if len(f) < minNeed {
			return nil
		}
	}
	return fs
}

// factors is requiredFactors without the length floor.
func factors(re *syntax.Regexp, keywords []string) []string {
	switch re.Op {
	case syntax.OpLiteral:
		var b strings.Builder
		for _, c := range re.Rune {
			b.WriteRune(unicode.ToLower(c))
		}
		if slices.Contains(keywords, b.String()) {
			return nil
		}
		return []string{b.String()}
	case syntax.OpCapture, syntax.OpPlus:
		return factors(re.Sub[0], keywords)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return factors(re.Sub[0], keywords)
		}
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			f := factors(s, keywords)
			if f == nil {
				return nil
			}
			out = append(out, f...)
		}
		slices.Sort(out)
		return slices.Compact(out)
	case syntax.OpConcat:
		var best []string
		score := func(fs []string) int {
			if fs == nil {
				return -1
			}
			m := -1
			for _, f := range fs {
				if m < 0 || len(f) < m {
					m = len(f)
				}
			}
			return m
		}
		for _, s := range re.Sub {
			if f := factors(s, keywords); score(f) > score(best) {
				best = f
			}
		}
		return best
	}
	return nil
}

// hasFactor reports whether lower (lowercased text) contains one of needs.
func hasFactor(lower []byte, needs []string) bool {
	for _, n := range needs {
		if bytes.Contains(lower, []byte(n)) {
			return true
		}
	}
	return false
}

// members marks in m every byte that can be part of a match of re: ASCII characters as
// themselves (both cases where re folds case), and every byte of a multi-byte character as
// any byte from 0x80 up.
func members(re *syntax.Regexp, m *[256]bool) {
	mark := func(lo, hi rune, fold bool) {
		if hi >= utf8.RuneSelf {
			for c := 0x80; c < 256; c++ {
				m[c] = true
			}
			hi = utf8.RuneSelf - 1
		}
		for c := lo; c <= hi; c++ {
			m[c] = true
			if fold {
				m[unicode.ToLower(c)], m[unicode.ToUpper(c)] = true, true
			}
		}
	}
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			mark(c, c, re.Flags&syntax.FoldCase != 0)
		}
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			mark(re.Rune[i], re.Rune[i+1], false)
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		for c := range m {
			m[c] = true
		}
		m['\n'] = re.Op == syntax.OpAnyChar || m['\n']
	}
	for _, s := range re.Sub {
		members(s, m)
	}
}

// maxWidth is the most bytes re can match, and whether that is bounded.
func maxWidth(re *syntax.Regexp) (int, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0, true
	case syntax.OpLiteral:
		n := 0
		for _, c := range re.Rune {
			n += runeWidth(c, re.Flags&syntax.FoldCase != 0)
		}
		return n, true
	case syntax.OpCharClass:
		n := 0
		for i := 1; i < len(re.Rune); i += 2 {
			n = max(n, utf8.RuneLen(re.Rune[i]))
		}
		return n, true
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax, true
	case syntax.OpCapture, syntax.OpQuest:
		return maxWidth(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return 0, false
	case syntax.OpRepeat:
		if re.Max < 0 {
			return 0, false
		}
		n, ok := maxWidth(re.Sub[0])
		return n * re.Max, ok
	case syntax.OpConcat:
		sum := 0
		for _, s := range re.Sub {
			n, ok := maxWidth(s)
			if !ok {
				return 0, false
			}
			sum += n
		}
		return sum, true
	case syntax.OpAlternate:
		most := 0
		for _, s := range re.Sub {
			n, ok := maxWidth(s)
			if !ok {
				return 0, false
			}
			most = max(most, n)
		}
		return most, true
	}
	return 0, false
}

// runeWidth is the UTF-8 length of c, or of the longest character it matches when folded
// (a case-insensitive "k" also matches U+212A KELVIN SIGN, three bytes).
func runeWidth(c rune, fold bool) int {
	n := utf8.RuneLen(c)
	if fold {
		for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
			n = max(n, utf8.RuneLen(f))
		}
	}
	return max(n, 1)
}

// cutShows reports whether a match of re that the end of the text cuts short still matches up
// to the cut, wherever inside an unbounded repetition the cut falls: every unbounded
// repetition is a greedy run of a character class, and everything that may follow it can
// match nothing at the end of the text (`={0,3}`, `(?:[\x60'"\s;]|$)`). A cut inside the bounded
// parts is avoided by slices at least leanWidth long.
func cutShows(re *syntax.Regexp) bool {
	return cutSafe(re, true)
}

// cutSafe is cutShows for re followed by something that can (restOK) or cannot match nothing
// at the end of the text.
func cutSafe(re *syntax.Regexp, restOK bool) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus:
		return restOK && re.Flags&syntax.NonGreedy == 0 && oneChar(re.Sub[0])
	case syntax.OpRepeat:
		if re.Max < 0 {
			return restOK && re.Flags&syntax.NonGreedy == 0 && oneChar(re.Sub[0])
		}
		// A copy may be followed by another copy.
		return cutSafe(re.Sub[0], restOK && re.Max <= 1)
	case syntax.OpQuest, syntax.OpCapture:
		return cutSafe(re.Sub[0], restOK)
	case syntax.OpConcat:
		ok := restOK
		for i := len(re.Sub) - 1; i >= 0; i-- {
			if !cutSafe(re.Sub[i], ok) {
				return false
			}
			ok = ok && emptyAtEnd(re.Sub[i])
		}
		return true
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if !cutSafe(s, restOK) {
				return false
			}
		}
		return true
	}
	return true
}

// anyStar reports whether re repeats `.` without bound.
func anyStar(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		if s := re.Sub[0]; (re.Op != syntax.OpRepeat || re.Max < 0) && (s.Op == syntax.OpAnyChar || s.Op == syntax.OpAnyCharNotNL) {
			return true
		}
	}
	return slices.ContainsFunc(re.Sub, anyStar)
}

// oneChar reports whether re matches exactly one character.
func oneChar(re *syntax.Regexp) bool {
	return re.Op == syntax.OpCharClass || (re.Op == syntax.OpLiteral && len(re.Rune) == 1)
}

// emptyAtEnd reports whether re can match nothing at the end of the text.
func emptyAtEnd(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpEndText, syntax.OpEndLine, syntax.OpWordBoundary, syntax.OpNoWordBoundary,
		syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpCapture, syntax.OpPlus:
		return emptyAtEnd(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || emptyAtEnd(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !emptyAtEnd(s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if emptyAtEnd(s) {
				return true
			}
		}
	}
	return false
}

// leanWidth is maxWidth with every unbounded repetition counted at its minimum: the longest
// a match can be before its unbounded runs.
func leanWidth(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpStar:
		return 0
	case syntax.OpPlus:
		return leanWidth(re.Sub[0])
	case syntax.OpRepeat:
		if re.Max < 0 {
			return re.Min * leanWidth(re.Sub[0])
		}
		return re.Max * leanWidth(re.Sub[0])
	case syntax.OpCapture, syntax.OpQuest:
		return leanWidth(re.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, s := range re.Sub {
			n += leanWidth(s)
		}
		return n
	case syntax.OpAlternate:
		n := 0
		for _, s := range re.Sub {
			n = max(n, leanWidth(s))
		}
		return n
	}
	n, _ := maxWidth(re)
	return n
}

// minWidth is the fewest bytes re can match.
func minWidth(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minWidth(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min * minWidth(re.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, s := range re.Sub {
			n += minWidth(s)
		}
		return n
	case syntax.OpAlternate:
		n := -1
		for _, s := range re.Sub {
			if m := minWidth(s); n < 0 || m < n {
				n = m
			}
		}
		return max(n, 0)
	}
	return 0
}

// matchesNewline reports whether re can match a newline character.
func matchesNewline(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpAnyChar:
		return true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i] <= '\n' && '\n' <= re.Rune[i+1] {
				return true
			}
		}
	case syntax.OpLiteral:
		return slices.Contains(re.Rune, '\n')
	}
	for _, s := range re.Sub {
		if matchesNewline(s) {
			return true
		}
	}
	return false
}

// endsOpen reports whether re may end its match at the end of the text in place of the
// delimiter that otherwise follows a secret (`(?:[\x60'"\s;]|\\[nr]|$)`): a match cut short by
// the end of a slice then still appears, reaching the cut, instead of silently failing.
func endsOpen(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEndText:
		return true
	case syntax.OpCapture:
		return endsOpen(re.Sub[0])
	case syntax.OpConcat:
		return endsOpen(re.Sub[len(re.Sub)-1])
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if endsOpen(s) {
				return true
			}
		}
	}
	return false
}

// leadStrings lists, lowercased, the literal text every match of re begins with: one string
// per way a match can begin, as far as that beginning is literal. ok is false when there
// would be too many.
func leadStrings(re *syntax.Regexp) ([]string, bool) {
	out, _ := leads(re, []string{""})
	if out == nil {
		return nil, false
	}
	return out, true
}

const maxLeads = 256

// leads extends each prefix in ps by what re matches at its start. more reports whether re
// was literal to its end, so that what follows it may extend the prefixes further.
func leads(re *syntax.Regexp, ps []string) (out []string, more bool) {
	if ps == nil {
		return nil, false
	}
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginText, syntax.OpBeginLine, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return ps, true
	case syntax.OpLiteral:
		var b strings.Builder
		for _, c := range re.Rune {
			b.WriteRune(unicode.ToLower(c))
		}
		out = make([]string, len(ps))
		for i, p := range ps {
			out[i] = p + b.String()
		}
		return out, true
	case syntax.OpCharClass:
		chars := map[rune]bool{}
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i+1]-re.Rune[i] > 8 {
				return ps, false
			}
			for c := re.Rune[i]; c <= re.Rune[i+1]; c++ {
				chars[unicode.ToLower(c)] = true
			}
		}
		if len(chars) > 4 || len(ps)*len(chars) > maxLeads {
			return ps, false
		}
		for _, p := range ps {
			for c := range chars {
				out = append(out, p+string(c))
			}
		}
		return out, true
	case syntax.OpCapture:
		return leads(re.Sub[0], ps)
	case syntax.OpConcat:
		more = true
		for _, s := range re.Sub {
			if ps, more = leads(s, ps); !more || ps == nil {
				return ps, false
			}
		}
		return ps, true
	case syntax.OpAlternate:
		more = true
		for _, s := range re.Sub {
			o, m := leads(s, ps)
			if o == nil {
				return nil, false
			}
			out = append(out, o...)
			more = more && m
		}
		if len(out) > maxLeads {
			return nil, false
		}
		return out, more
	case syntax.OpQuest:
		o, m := leads(re.Sub[0], ps)
		if o == nil {
			return nil, false
		}
		return append(o, ps...), m
	case syntax.OpPlus:
		o, _ := leads(re.Sub[0], ps)
		return o, false
	case syntax.OpRepeat:
		if re.Min >= 1 {
			o, _ := leads(re.Sub[0], ps)
			return o, false
		}
	}
	return ps, false
}

// shannonEntropy is gitleaks' entropy of a secret (detect.shannonEntropy): bits per character,
// with the frequencies taken over the byte length, as gitleaks computes them.
func shannonEntropy(data string) float64 {
	if data == "" {
		return 0
	}
	var ascii [utf8.RuneSelf]int
	var other map[rune]int
	for _, c := range data {
		if c < utf8.RuneSelf {
			ascii[c]++
			continue
		}
		if other == nil {
			other = map[rune]int{}
		}
		other[c]++
	}
	inv := 1.0 / float64(len(data))
	e := 0.0
	add := func(n int) {
		if n > 0 {
			f := float64(n) * inv
			e -= f * math.Log2(f)
		}
	}
	for _, n := range ascii {
		add(n)
	}
	for _, n := range other {
		add(n)
	}
	return e
}
