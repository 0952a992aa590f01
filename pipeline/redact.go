package pipeline

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	ahocorasick "github.com/BobuSumisu/aho-corasick"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
)

// Redactor finds secrets in tool output with gitleaks' default rule set (the rules, keywords,
// entropy thresholds, secret groups and allowlists of github.com/zricethezav/gitleaks/v8) and
// replaces them with [REDACTED:<rule-id>].
//
// gitleaks itself runs every triggered rule's regex over the whole input. Its generic rules are
// triggered by words as common as "key", "api" and "token", and Go's regexp falls back to its
// slow NFA on long inputs, so a plain gitleaks scan of 10 KB of ordinary log output takes about
// 2 ms. The Redactor runs the same rules the same way (keyword prefilter, then each rule's own
// gitleaks detector) but only on the lines where one of the rule's keywords occurs, which keeps
// each regex on short inputs. Rules whose pattern can span lines (private keys, YAML secrets)
// and rules without keywords still scan the whole text. TestRedactorRecall checks recall against
// gitleaks on gitleaks' own rule fixtures.
//
// A Redactor is immutable after NewRedactor and safe for concurrent use.
type Redactor struct {
	rules     []redactRule
	trie      *ahocorasick.Trie
	keywords  []string // trie pattern index -> keyword
	byKeyword map[string][]int
	always    []int // rules with no keywords
}

type redactRule struct {
	id        string
	det       *detect.Detector // a detector holding only this rule (and the rules it requires)
	multiline bool
	// after, when set, must match the text right after a keyword for that keyword occurrence
	// to trigger the rule; a match then starts at most before bytes ahead of the keyword
	// (see keywordGuards).
	after  *regexp.Regexp
	before int
}

// keywordGuards are necessary conditions on the text that follows a rule's keyword. gitleaks'
// generic-api-key rule is triggered by "api", "key", "token", "auth", "access"... which occur
// on most lines of ordinary logs ("GET /api/v1"), and its regex is slow. Its pattern
// `(?:access|auth|api|...|token)(?:[ \t\w.-]{0,20})[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)...`
// requires, right after the keyword, at most 20 identifier characters and 3 quotes/spaces and
// then an assignment-like operator; every keyword of the rule is one of the words of that
// alternation, so a keyword occurrence not followed by that cannot be part of a match.
// Likewise jwt's keyword "ey" occurs in "key" and "they"; its pattern
// `\b(ey[a-zA-Z0-9]{17,}\.ey...` needs 17 alphanumerics and ".ey" right after the "ey" a match
// starts with. TestRedactorRecall checks these guards against gitleaks' fixtures.
// The scan window of a guarded rule starts where the pattern's leading part could start: 50
// identifier characters before the keyword for generic-api-key (`[\w.-]{0,50}?`), one byte
// before it for jwt (so `\b` sees the character before "ey").
var keywordGuards = map[string]struct {
	after  string
	before int
}{
	"generic-api-key": {`^[ \t\w.-]{0,20}[\s'"]{0,3}[=>:|?,]`, 50},
	"jwt":             {`^[a-zA-Z0-9]{17,}\.ey`, 1},
}

// NewRedactor loads gitleaks' default configuration. It uses its own viper instance, so it
// touches no global state; it takes about 20 ms, so load it once per Pipeline.
func NewRedactor() (*Redactor, error) {
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(config.DefaultConfig)); err != nil {
		return nil, fmt.Errorf("secret redaction: reading gitleaks' default rules: %w", err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return nil, fmt.Errorf("secret redaction: reading gitleaks' default rules: %w", err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		return nil, fmt.Errorf("secret redaction: compiling gitleaks' default rules: %w", err)
	}
	r := &Redactor{byKeyword: map[string][]int{}}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range cfg.Rules {
			if !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		rule := cfg.Rules[id]
		if rule.Regex == nil {
			continue // path-only rules (e.g. pkcs12-file) have nothing to find in output
		}
		one := config.Config{
			Rules:        map[string]config.Rule{id: rule},
			Keywords:     map[string]struct{}{},
			OrderedRules: []string{id},
			Allowlists:   cfg.Allowlists,
		}
		for _, req := range rule.RequiredRules {
			if rr, ok := cfg.Rules[req.RuleID]; ok {
				one.Rules[req.RuleID] = rr
			}
		}
		for _, rr := range one.Rules {
			for _, k := range rr.Keywords {
				one.Keywords[strings.ToLower(k)] = struct{}{}
			}
		}
		idx := len(r.rules)
		det := detect.NewDetector(one)
		// "gitleaks:allow" marks a finding as accepted in a repository scan. In tool output it
		// proves nothing, and any command can print it next to a secret.
		det.IgnoreGitleaksAllow = true
		rr := redactRule{id: id, det: det, multiline: canSpanLines(rule.Regex.String())}
		if g, ok := keywordGuards[id]; ok {
			rr.after, rr.before = regexp.MustCompile(g.after), g.before
		}
		r.rules = append(r.rules, rr)
		if len(rule.Keywords) == 0 {
			r.always = append(r.always, idx)
		}
		for _, k := range rule.Keywords {
			k = strings.ToLower(k)
			if _, seen := r.byKeyword[k]; !seen {
				r.keywords = append(r.keywords, k)
			}
			r.byKeyword[k] = append(r.byKeyword[k], idx)
		}
	}
	r.trie = ahocorasick.NewTrieBuilder().AddStrings(r.keywords).Build()
	return r, nil
}

// canSpanLines reports whether a regular expression may match text containing a newline
// outside of a trailing delimiter, e.g. `[\s\S]*?` in a PEM block. Such rules see the whole
// text instead of single lines.
func canSpanLines(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return true
	}
	return spans(re)
}

// spans walks the parse tree looking for a loop that can cross lines: a repeated group that
// contains a newline-matching part (curl's `(?:[\r\n]{1,2}.*?){1,5}`), or a newline-matching
// character class repeated without a small bound (a PEM body's `[\s\S-]{64,}?`). A short run
// of delimiters such as `[\x60'"\s=]{0,5}` between a keyword and a secret is not a span: the
// Redactor covers it by scanning the line after each keyword line too.
func spans(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		sub := re.Sub[0]
		unbounded := re.Op != syntax.OpRepeat || re.Max == -1 || re.Max > 5
		switch sub.Op {
		case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpLiteral:
			if unbounded && matchesNewline(sub) {
				return true
			}
		default:
			if (re.Op != syntax.OpRepeat || re.Max != 1) && matchesNewline(sub) {
				return true
			}
		}
		return spans(sub)
	}
	for _, s := range re.Sub {
		if spans(s) {
			return true
		}
	}
	return false
}

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
	case syntax.OpAlternate, syntax.OpConcat, syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		for _, s := range re.Sub {
			if matchesNewline(s) {
				return true
			}
		}
	}
	return false
}

// guardWindow is how much text after a keyword a guard looks at.
const guardWindow = 4096

type finding struct {
	rule, secret string
	generic      bool
}

// Redact returns s with every secret found replaced by [REDACTED:<rule-id>] and the number of
// replacements per rule id. It never returns the secrets themselves.
func (r *Redactor) Redact(s string) (string, map[string]int) {
	if s == "" {
		return s, nil
	}
	lower := asciiLower(s)
	// For each triggered rule: the set of line starts to scan, or -1 for the whole text.
	type span struct{ start, end int }
	lines := map[int][]span{}
	whole := map[int]bool{}
	for _, i := range r.always {
		whole[i] = true
	}
	r.trie.Walk(lower, func(end, n, pattern int64) bool {
		pos := int(end - n + 1)
		ls := strings.LastIndexByte(s[:pos], '\n') + 1
		le := lineEnd(s, pos)
		if le < len(s) {
			le = lineEnd(s, le+1) // and the next line: "token:\n    <secret>"
		}
		for _, i := range r.byKeyword[r.keywords[pattern]] {
			start := ls
			if g := r.rules[i].after; g != nil {
				if !g.MatchString(s[end+1 : min(len(s), int(end)+1+guardWindow)]) {
					continue
				}
				start = max(ls, pos-r.rules[i].before)
			}
			if r.rules[i].multiline {
				whole[i] = true
				continue
			}
			// Hits come in text order: merge a window that overlaps the previous one, so
			// every byte is scanned at most once per rule even when keywords are dense.
			spans := lines[i]
			if n := len(spans); n > 0 && start <= spans[n-1].end {
				spans[n-1].end = max(spans[n-1].end, le)
				continue
			}
			lines[i] = append(spans, span{start, le})
		}
		return true
	})

	var found []finding
	scan := func(i int, text string) {
		for _, f := range r.rules[i].det.DetectString(text) {
			if f.Secret != "" {
				found = append(found, finding{rule: f.RuleID, secret: f.Secret, generic: strings.Contains(f.RuleID, "generic")})
			}
		}
	}
	for i := range whole {
		scan(i, s)
	}
	for i, spans := range lines {
		if whole[i] {
			continue
		}
		for _, sp := range spans {
			scan(i, s[sp.start:sp.end])
		}
	}
	if len(found) == 0 {
		return s, nil
	}
	// Specific rules before generic ones (as gitleaks prefers them), longer secrets first, so a
	// secret inside another is attributed to the most specific, outermost match.
	slices.SortFunc(found, func(a, b finding) int {
		if a.generic != b.generic {
			if a.generic {
				return 1
			}
			return -1
		}
		if d := len(b.secret) - len(a.secret); d != 0 {
			return d
		}
		if c := strings.Compare(a.rule, b.rule); c != 0 {
			return c
		}
		return strings.Compare(a.secret, b.secret)
	})
	counts := map[string]int{}
	for _, f := range found {
		n := strings.Count(s, f.secret)
		if n == 0 {
			continue // already replaced as part of another finding
		}
		s = strings.ReplaceAll(s, f.secret, "[REDACTED:"+f.rule+"]")
		counts[f.rule] += n
	}
	return s, counts
}

// lineEnd is the index of the newline ending the line that holds pos, or len(s).
func lineEnd(s string, pos int) int {
	if i := strings.IndexByte(s[pos:], '\n'); i >= 0 {
		return pos + i
	}
	return len(s)
}

// asciiLower lowercases ASCII letters only, so byte offsets in the result are offsets in s.
// Keywords are ASCII, so this finds the same keyword occurrences as gitleaks' strings.ToLower.
func asciiLower(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
}
