package pipeline

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	ahocorasick "github.com/BobuSumisu/aho-corasick"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"golang.org/x/sys/unix"
)

// Redactor finds secrets in tool output with gitleaks' default rule set (the rules, keywords,
// entropy thresholds, secret groups and allowlists of github.com/zricethezav/gitleaks/v8) plus
// Airlock's own rules for credentials real workspaces hold that gitleaks does not look for
// (extraRules), and replaces them with [REDACTED:<rule-id>].
//
// gitleaks runs every rule whose keyword occurs anywhere over the whole input. Its generic
// rules are triggered by words as common as "key", "api" and "token", its expressions are
// large, and Go's regexp falls back to its slow NFA on long inputs: a 1 MiB line made of the
// rule keywords took 30-39 s that way. The Redactor bounds what each keyword occurrence costs
// (see redactRule): a rule whose matches begin with its keyword is tried once per occurrence,
// anchored there, on a slice as long as a match can be; the other rules scan windows around
// their keywords, merged where they overlap. Every byte handed to a regular expression is
// charged to a budget (see redactBudget); when the budget runs out the text is withheld,
// never returned unchecked. TestRedactorRecall checks recall against gitleaks on all of
// gitleaks' own rule fixtures, and on the same fixtures inside long lines.
//
// A Redactor is immutable after NewRedactor and safe for concurrent use.
type Redactor struct {
	rules     []redactRule
	trie      *ahocorasick.Trie
	keywords  []string // trie pattern index -> keyword
	byPattern [][]int  // trie pattern index -> rules
	always    []int    // rules with no keywords
	global    []*config.Allowlist
	allow     map[*config.Allowlist]*allowMatcher
}

// keywordGuards are necessary conditions on the text that follows a rule's keyword. gitleaks'
// generic-api-key rule is triggered by "api", "key", "token", "auth", "access"... which occur
// on most lines of ordinary logs ("GET /api/v1"). Its pattern
// `(?:access|auth|api|...|token)(?:[ \t\w.-]{0,20})[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)...`
// requires, right after the keyword, at most 20 identifier characters and 3 quotes/spaces and
// then an assignment-like operator; every keyword of the rule is one of the words of that
// alternation, so a keyword occurrence not followed by that cannot be part of a match.
// Likewise jwt's keyword "ey" occurs in "key" and "they"; its pattern
// `\b(ey[a-zA-Z0-9]{17,}\.ey...` needs 17 alphanumerics and ".ey" right after the "ey" a match
// starts with. TestRedactorRecall checks these guards against gitleaks' fixtures.
// A guard is given the text after the keyword up to its window; it counts as work the run of
// letters and digits it starts with (what jwt's guard reads).
var keywordGuards = map[string]struct {
	after  string
	window int
}{
	"generic-api-key": {`^[ \t\w.-]{0,20}[\s'"]{0,3}[=>:|?,]`, 64},
	"jwt":             {`^[a-zA-Z0-9]{17,}\.ey`, 16 << 10},
}

// factorDiscount: looking for a rule's required factors (see redactRule.needs) is a plain
// substring search, counted as a sixteenth of the work of running an expression.
const factorDiscount = 16

// NewRedactor loads gitleaks' default configuration and Airlock's own rules. It uses its own
// viper instance, so it touches no global state; it takes about 30 ms, so load it once per
// Pipeline.
//
// Rules that gitleaks applies only to files of a given name (nuget.config, *.tf, *.yaml,
// *.php) are left out, as gitleaks' own detector leaves them out of text without a file name;
// so are rules that only report as part of another (SkipReport). A rule that gitleaks reports
// only next to others (RequiredRules) is applied on its own, which redacts more, not less.
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
	r := &Redactor{global: cfg.Allowlists, allow: map[*config.Allowlist]*allowMatcher{}}
	byKeyword := map[string][]int{}
	add := func(rr redactRule, keywords []string) {
		idx := len(r.rules)
		r.rules = append(r.rules, rr)
		if len(keywords) == 0 {
			r.always = append(r.always, idx)
		}
		for _, k := range keywords {
			if _, seen := byKeyword[k]; !seen {
				r.keywords = append(r.keywords, k)
			}
			byKeyword[k] = append(byKeyword[k], idx)
		}
	}
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range cfg.Rules {
			if !yield(id) {
				return
			}
		}
	}) {
		rule := cfg.Rules[id]
		if rule.Regex == nil || rule.Path != nil || rule.SkipReport {
			continue
		}
		kws := lowerAll(rule.Keywords)
		rr, err := compileRule(id, rule.Regex.String(), kws)
		if err != nil {
			return nil, fmt.Errorf("secret redaction: %w", err)
		}
		rr.secretGroup, rr.entropy, rr.allowlists = rule.SecretGroup, rule.Entropy, rule.Allowlists
		if g, ok := keywordGuards[id]; ok {
			rr.after, rr.afterWindow = regexp.MustCompile(g.after), g.window
		}
		add(rr, kws)
	}
	for _, x := range extraRules {
		if _, dup := cfg.Rules[x.id]; dup {
			return nil, fmt.Errorf("secret redaction: Airlock's rule %s has the id of a gitleaks rule", x.id)
		}
		kws := lowerAll(x.keywords)
		rr, err := compileRule(x.id, x.regex, kws)
		if err != nil {
			return nil, fmt.Errorf("secret redaction: %w", err)
		}
		rr.secretGroup, rr.entropy = x.secretGroup, x.entropy
		if x.allow != "" {
			al := &config.Allowlist{Regexes: []*regexp.Regexp{regexp.MustCompile(x.allow)}}
			if err := al.Validate(); err != nil {
				return nil, fmt.Errorf("secret redaction: rule %s: %w", x.id, err)
			}
			rr.allowlists = []*config.Allowlist{al}
		}
		add(rr, kws)
	}
	for _, a := range r.global {
		r.allow[a] = newAllowMatcher(a)
	}
	for _, rule := range r.rules {
		for _, a := range rule.allowlists {
			r.allow[a] = newAllowMatcher(a)
		}
	}
	r.byPattern = make([][]int, len(r.keywords))
	for i, k := range r.keywords {
		r.byPattern[i] = byKeyword[k]
	}
	r.trie = ahocorasick.NewTrieBuilder().AddStrings(r.keywords).Build()
	return r, nil
}

func lowerAll(ks []string) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = strings.ToLower(k)
	}
	return out
}

// ErrRedactionBudget means checking an output for secrets would have cost more than its
// budget; the output is withheld.
var ErrRedactionBudget = errors.New("output withheld: checking it for secrets would exceed the redaction budget")

// redactBudget is what one tool call may spend on redaction, in CPU time of the thread that
// runs it: budgetBase, plus budgetPerMiB for every MiB of output (charge). Ordinary output
// needs a few per cent of that (BenchmarkRedactTypical); text written to be expensive, such as
// a line made of nothing but rule keywords, runs out of it and is withheld
// (BenchmarkRedactWorstCase), so no output costs Airlock more than about 100 ms of CPU per
// MiB, outside every cgroup and limit. The clock is the thread's own
// (CLOCK_THREAD_CPUTIME_ID, with the goroutine locked to its thread while it scans), so other
// processes' load does not make output be withheld; the race detector's tenfold slowdown is
// allowed for (raceFactor).
type redactBudget struct {
	allow, used time.Duration
	start       time.Duration // the thread's CPU clock when the running scan began
	pending     int           // work since the clock was last read
	over        bool
}

const (
	budgetBase   = 20 * time.Millisecond * raceFactor
	budgetPerMiB = 65 * time.Millisecond * raceFactor
	// checkEvery is how much work (bytes handed to expressions) passes between readings of
	// the clock; the slowest expression takes a few milliseconds for that much.
	checkEvery = 32 << 10
	// minWork is what any one attempt counts as, however short its slice.
	minWork = 64
)

func newRedactBudget() *redactBudget { return &redactBudget{allow: budgetBase} }

// charge adds the allowance for n more bytes of output.
func (b *redactBudget) charge(n int) {
	b.allow += time.Duration(int64(budgetPerMiB) * int64(n) >> 20)
}

// begin starts a scan: the goroutine stays on its thread until end, so the thread's CPU
// clock measures this scan alone.
func (b *redactBudget) begin() {
	runtime.LockOSThread()
	b.start = threadCPU()
}

func (b *redactBudget) end() {
	b.used += threadCPU() - b.start
	runtime.UnlockOSThread()
}

// spend counts n bytes of work and reports whether the budget still holds, reading the clock
// every checkEvery bytes.
func (b *redactBudget) spend(n int) bool {
	if b.over {
		return false
	}
	b.pending += max(n, minWork)
	if b.pending >= checkEvery {
		b.pending = 0
		if b.used+threadCPU()-b.start > b.allow {
			b.over = true
		}
	}
	return !b.over
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// A finding is one secret found: where it is in the scanned text and which rule found it.
type finding struct {
	rule       int
	start, end int
}

// Redact returns s with every secret found replaced by [REDACTED:<rule-id>] and the number of
// replacements per rule id. It never returns the secrets themselves. When checking s would
// exceed the budget for its size, it returns ErrRedactionBudget and no text.
func (r *Redactor) Redact(s string) (string, map[string]int, error) {
	b := newRedactBudget()
	b.charge(len(s))
	found, err := r.scan(s, b)
	if err != nil {
		return "", nil, err
	}
	known := newSecretSet()
	r.remember(known, s, found)
	out, counts := r.apply(s, found, known)
	return out, counts, nil
}

// scan finds the secrets in s, charging b.
func (r *Redactor) scan(s string, b *redactBudget) ([]finding, error) {
	if s == "" {
		return nil, nil
	}
	b.begin()
	defer b.end()
	lower := asciiLower(s)
	type hit struct{ pos, n int }
	hits := make([][]hit, len(r.rules))
	over := false
	r.trie.Walk(lower, func(end, n, pattern int64) bool {
		pos := int(end - n + 1)
		for _, i := range r.byPattern[pattern] {
			if g := r.rules[i].after; g != nil {
				after := s[end+1 : min(len(s), int(end)+1+r.rules[i].afterWindow)]
				if !b.spend(alnumRun(after)) {
					over = true
					return false
				}
				if !g.MatchString(after) {
					continue
				}
			}
			hits[i] = append(hits[i], hit{pos, int(n)})
		}
		return true
	})
	if over {
		return nil, ErrRedactionBudget
	}
	var found []finding
	for i := range r.rules {
		hs := hits[i]
		if len(hs) == 0 && !slices.Contains(r.always, i) {
			continue
		}
		// Walk reports occurrences by where they end; attempts go by where they start.
		slices.SortFunc(hs, func(a, b hit) int { return cmp.Or(cmp.Compare(a.pos, b.pos), cmp.Compare(b.n, a.n)) })
		rule := &r.rules[i]
		var err error
		if rule.anchored {
			last := -1
			for j, h := range hs {
				if h.pos < last || (j > 0 && hs[j-1].pos == h.pos) {
					continue // inside the previous match, or tried already
				}
				var end int
				if found, end, err = r.anchoredAt(i, s, lower, h.pos, b, found); err != nil {
					return nil, err
				}
				last = max(last, end)
			}
			continue
		}
		var wins []span
		if len(hs) == 0 {
			wins = []span{{0, len(s)}}
		}
		for _, h := range hs {
			w := span{h.pos + h.n - rule.width - utf8.UTFMax, h.pos + rule.width + utf8.UTFMax}
			if !rule.local {
				ls := strings.LastIndexByte(s[max(0, h.pos-contextReach):h.pos], '\n') + 1 + max(0, h.pos-contextReach)
				le := lineEnd(s, h.pos)
				if le < len(s) {
					le = lineEnd(s, le+1) // and the next line: "facebook:\n  <token>"
				}
				w.start = min(w.start, max(ls, h.pos-contextReach))
				w.end = max(w.end, min(le, h.pos+h.n+contextReach))
			}
			w.start, w.end = max(0, w.start), min(len(s), w.end)
			// Hits come in text order: merge a window that overlaps the previous one, so
			// every byte is scanned at most once per rule however dense the keywords are.
			if n := len(wins); n > 0 && w.start <= wins[n-1].end {
				wins[n-1].end = max(wins[n-1].end, w.end)
				continue
			}
			wins = append(wins, w)
		}
		for _, w := range wins {
			if found, err = r.window(i, s, lower, w, b, found); err != nil {
				return nil, err
			}
		}
	}
	return found, nil
}

type span struct{ start, end int }

// anchoredAt tries rule i at pos, where one of its keywords begins, and returns where the
// match ended (-1: none).
func (r *Redactor) anchoredAt(i int, s string, lower []byte, pos int, b *redactBudget, found []finding) ([]finding, int, error) {
	rule := &r.rules[i]
	// Past the longest match, so `$` cannot match at the cut; or, when a cut-off match would
	// show, a short slice first.
	limit := rule.width + utf8.UTFMax
	n := limit
	if rule.cutShows && n > openSlice {
		n = max(openSlice, rule.lean+utf8.UTFMax)
	}
	// The match cannot go past a byte no part of the rule matches; the slice keeps that byte,
	// so `$` and \b still see what follows.
	stop := len(s)
	for j := pos; j < len(s) && j < pos+limit; j++ {
		if !rule.member[s[j]] {
			stop = j + 1
			break
		}
	}
	for {
		end := min(stop, pos+n)
		from, skip := pos, 0
		re := rule.at0
		if pos > 0 {
			// One character of context, for a leading \b.
			_, skip = utf8.DecodeLastRuneInString(s[:pos])
			from, re = pos-skip, rule.at1
		}
		if rule.needs != nil {
			if !b.spend((end - pos) / factorDiscount) {
				return found, -1, ErrRedactionBudget
			}
			if !hasFactor(lower[pos:end], rule.needs) {
				return found, -1, nil
			}
		}
		if !b.spend(end - from) {
			return found, -1, ErrRedactionBudget
		}
		loc := re.FindStringIndex(s[from:end])
		if loc == nil {
			return found, -1, nil
		}
		ms, me := pos, from+loc[1]
		if me == end && end < stop && (n < limit || !rule.bounded) {
			n *= 2 // the match reached the cut: it may go on
			continue
		}
		return r.match(i, s, ms, me, b, found), me, nil
	}
}

// window scans w with rule i, widening it while a match of an unbounded rule reaches one of
// its edges inside the text.
func (r *Redactor) window(i int, s string, lower []byte, w span, b *redactBudget, found []finding) ([]finding, error) {
	rule := &r.rules[i]
	for {
		if rule.needs != nil {
			if !b.spend((w.end - w.start) / factorDiscount) {
				return found, ErrRedactionBudget
			}
			if !hasFactor(lower[w.start:w.end], rule.needs) {
				return found, nil
			}
		}
		if !b.spend(w.end - w.start) {
			return found, ErrRedactionBudget
		}
		locs := rule.re.FindAllStringIndex(s[w.start:w.end], -1)
		if !rule.bounded && len(locs) > 0 {
			first, last := locs[0], locs[len(locs)-1]
			grow := max(w.end-w.start, openSlice)
			if (first[0] == 0 && w.start > 0) || (last[1] == w.end-w.start && w.end < len(s)) {
				w = span{max(0, w.start-grow), min(len(s), w.end+grow)}
				continue
			}
		}
		for _, l := range locs {
			found = r.match(i, s, w.start+l[0], w.start+l[1], b, found)
		}
		return found, nil
	}
}

// match turns a match of rule i at s[ms:me] into a finding as gitleaks' detector does: the
// secret group, the entropy threshold, then the global and the rule's allowlists.
func (r *Redactor) match(i int, s string, ms, me int, b *redactBudget, found []finding) []finding {
	rule := &r.rules[i]
	m := s[ms:me]
	secret := strings.Trim(m, "\n")
	at := ms + len(m) - len(strings.TrimLeft(m, "\n"))
	if g := rule.re.FindStringSubmatchIndex(secret); len(g) >= 4 {
		gs, ge := -1, -1
		if rule.secretGroup > 0 {
			if 2*rule.secretGroup+1 >= len(g) {
				return found
			}
			gs, ge = g[2*rule.secretGroup], g[2*rule.secretGroup+1]
		} else {
			for k := 2; k+1 < len(g); k += 2 {
				if g[k] >= 0 && g[k+1] > g[k] {
					gs, ge = g[k], g[k+1]
					break
				}
			}
			if gs < 0 {
				gs, ge = 0, len(secret)
			}
		}
		if gs < 0 {
			return found
		}
		at += gs
		secret = secret[gs:ge]
	}
	if secret == "" || strings.Contains(secret, markerPrefix) {
		return found // a marker left by an earlier redaction is not a secret
	}
	if rule.entropy != 0 && shannonEntropy(secret) <= rule.entropy {
		return found
	}
	if r.allowed(rule, s, ms, me, secret, b, r.global) || r.allowed(rule, s, ms, me, secret, b, rule.allowlists) {
		return found
	}
	return append(found, finding{rule: i, start: at, end: at + len(secret)})
}

// markerPrefix starts what replaces a secret: [REDACTED:<rule-id>].
const markerPrefix = "[REDACTED:"

// lineReach bounds the "line" an allowlist looks at on a very long line.
const lineReach = 4 << 10

// allowed is gitleaks' checkFindingAllowed for text without a file path or commit: an
// allowlist with the AND condition that names paths or commits never holds.
func (r *Redactor) allowed(rule *redactRule, s string, ms, me int, secret string, b *redactBudget, lists []*config.Allowlist) bool {
	for _, a := range lists {
		target := secret
		switch a.RegexTarget {
		case "match":
			start := ms
			for start > 0 && ms-start < rule.leftExtent && rule.leftClass(s[start-1]) {
				start--
			}
			target = strings.Trim(s[start:me], "\n")
		case "line":
			ls := strings.LastIndexByte(s[max(0, ms-lineReach):ms], '\n') + 1 + max(0, ms-lineReach)
			le := me
			if i := strings.IndexByte(s[me:min(len(s), me+lineReach)], '\n'); i >= 0 {
				le = me + i
			} else {
				le = min(len(s), me+lineReach)
			}
			target = s[ls:le]
		}
		b.spend(len(target))
		regexAllowed := len(a.Regexes) > 0 && r.allow[a].MatchString(target)
		stop, _ := a.ContainsStopWord(secret)
		if a.MatchCondition == config.AllowlistMatchAnd {
			if len(a.Commits) > 0 || len(a.Paths) > 0 {
				continue
			}
			ok := len(a.Regexes) > 0 || len(a.StopWords) > 0
			if len(a.Regexes) > 0 && !regexAllowed {
				ok = false
			}
			if len(a.StopWords) > 0 && !stop {
				ok = false
			}
			if ok {
				return true
			}
			continue
		}
		if regexAllowed || stop {
			return true
		}
	}
	return false
}

// propagateMin: a secret this long is replaced wherever it occurs in a call's output, not only
// where its rule recognised it (a password matched in "DB_PASSWORD=..." is also gone from the
// connection string three lines down). Shorter ones are replaced only where found, so a
// four-letter password does not blank every word that contains it.
const propagateMin = 8

// A secretSet holds the secrets found so far in one call's output, each with the rule that
// found it, and an index to find them all in a text in one pass.
type secretSet struct {
	rule map[string]int
	idx  *secretIndex // nil until needed; dropped when a secret is added
}

func newSecretSet() *secretSet { return &secretSet{rule: map[string]int{}} }

func (set *secretSet) len() int { return len(set.rule) }

// remember adds the findings in s long enough to propagate.
func (r *Redactor) remember(set *secretSet, s string, found []finding) {
	for _, f := range found {
		sec := s[f.start:f.end]
		if len(sec) < propagateMin {
			continue
		}
		if old, ok := set.rule[sec]; !ok || r.prefer(f.rule, old) {
			set.rule[sec] = f.rule
			set.idx = nil
		}
	}
}

// A secretIndex finds every occurrence of a set of strings at least propagateMin long: each
// text position's next eight bytes are hashed into a bit table, and only positions whose
// bits are set are looked up. It costs a couple of nanoseconds per byte however many secrets
// there are (strings.Index per secret would cost a pass per secret).
type secretIndex struct {
	bits     [1 << 16 / 64]uint64
	byPrefix map[uint64][]string
}

func prefix8(s string) uint64 { return binary.LittleEndian.Uint64([]byte(s[:8])) }

func hash16(k uint64) uint32 { return uint32((k * 0x9E3779B97F4A7C15) >> 48) }

func (set *secretSet) index() *secretIndex {
	if set.idx == nil {
		x := &secretIndex{byPrefix: map[uint64][]string{}}
		for sec := range set.rule {
			k := prefix8(sec)
			h := hash16(k)
			x.bits[h/64] |= 1 << (h % 64)
			x.byPrefix[k] = append(x.byPrefix[k], sec)
		}
		set.idx = x
	}
	return set.idx
}

// each calls fn for every occurrence in s of a secret of the set.
func (x *secretIndex) each(s string, fn func(start, end int, sec string)) {
	for i := 0; i+propagateMin <= len(s); i++ {
		k := binary.LittleEndian.Uint64([]byte(s[i : i+8]))
		if h := hash16(k); x.bits[h/64]&(1<<(h%64)) == 0 {
			continue
		}
		for _, sec := range x.byPrefix[k] {
			if strings.HasPrefix(s[i:], sec) {
				fn(i, i+len(sec), sec)
			}
		}
	}
}

// prefer reports whether rule a names a secret better than rule b: specific rules before
// generic ones (as gitleaks prefers them), then by id for a stable choice.
func (r *Redactor) prefer(a, b int) bool {
	ra, rb := &r.rules[a], &r.rules[b]
	if ra.generic != rb.generic {
		return !ra.generic
	}
	return ra.id < rb.id
}

// apply replaces, in s, the findings (positions in s) and every occurrence of the secrets in
// known, with [REDACTED:<rule-id>]. Overlapping secrets are replaced together by one marker
// named after the most specific, longest of them, so no part of either survives. It returns
// the count of markers per rule id.
func (r *Redactor) apply(s string, found []finding, known *secretSet) (string, map[string]int) {
	spans := slices.Clone(found)
	if known.len() > 0 {
		known.index().each(s, func(start, end int, sec string) {
			spans = append(spans, finding{rule: known.rule[sec], start: start, end: end})
		})
	}
	if len(spans) == 0 {
		return s, nil
	}
	slices.SortFunc(spans, func(a, b finding) int { return cmp.Compare(a.start, b.start) })
	var out strings.Builder
	out.Grow(len(s))
	counts := map[string]int{}
	prev := 0
	for i := 0; i < len(spans); {
		g := spans[i]
		best := g
		j := i + 1
		for ; j < len(spans) && spans[j].start < g.end; j++ {
			f := spans[j]
			g.end = max(g.end, f.end)
			if l, lb := f.end-f.start, best.end-best.start; (r.rules[f.rule].generic != r.rules[best.rule].generic && r.prefer(f.rule, best.rule)) ||
				(r.rules[f.rule].generic == r.rules[best.rule].generic && (l > lb || (l == lb && r.prefer(f.rule, best.rule)))) {
				best = f
			}
		}
		out.WriteString(s[prev:g.start])
		id := r.rules[best.rule].id
		out.WriteString(markerPrefix + id + "]")
		counts[id]++
		prev = g.end
		i = j
	}
	out.WriteString(s[prev:])
	return out.String(), counts
}

// alnumRun is the length of the run of ASCII letters and digits s starts with.
func alnumRun(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; !('a' <= c && c <= 'z') && !('0' <= s[i] && s[i] <= '9') {
			return i
		}
	}
	return len(s)
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
