package pipeline

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/sandbox"
)

// DefaultMaxOutputBytes caps each sanitised output stream when Config.MaxOutputBytes is 0.
const DefaultMaxOutputBytes = 256 << 10

// HostPathMarker replaces host paths other than the workspace in tool output.
const HostPathMarker = "[host-path]"

// Sanitizer is stage 6. Tool output is untrusted data produced by code the agent chose to run;
// before it reaches the agent (and through it, a human's terminal or a model's context) it is
// made safe to display and free of what the host should not disclose:
//
//  1. invalid UTF-8 becomes U+FFFD;
//  2. terminal escape sequences (CSI, OSC, DCS, ...), C0/C1 control characters other than tab
//     and newline, and invisible characters (see invisible) are removed; CR becomes a newline;
//  3. the host workspace path becomes /workspace and other host paths become [host-path], also
//     in the forms a sandbox's mount table shows them (see mountinfoForms);
//  4. secrets are replaced with [REDACTED:<rule-id>] (see Redactor), within a redaction
//     budget (see redactBudget); output over it is withheld;
//  5. the text is cut to the size cap on a character boundary.
//
// Redaction runs after escapes are stripped, so an escape sequence cannot split a secret to
// hide it, and before the cap, so the cap cannot cut a secret into an unrecognisable half.
// Everything one call returns is cleaned by one callCleaner. A Sanitizer is immutable and safe
// for concurrent use.
type Sanitizer struct {
	redactor *Redactor
	paths    *pathScrubber
	maxBytes int
}

// NewSanitizer builds a Sanitizer. workspace is the host directory shown to tools as
// /workspace (its symlink-resolved form is scrubbed too); hostPaths are other host
// directories to hide (the state directory, the home directory...). maxBytes <= 0 means
// DefaultMaxOutputBytes.
func NewSanitizer(r *Redactor, workspace string, hostPaths []string, maxBytes int) *Sanitizer {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxOutputBytes
	}
	repl := map[string]string{}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	mountinfo := string(mi)
	variants := func(p string) []string {
		if p == "" {
			return nil
		}
		p, err := filepath.Abs(p)
		if err != nil {
			return nil
		}
		if p == "/" {
			return nil // scrubbing "/" would rewrite every path inside the sandbox
		}
		out := []string{p}
		if real, err := filepath.EvalSymlinks(p); err == nil && real != p && real != "/" {
			out = append(out, real)
		}
		// How a sandbox sees these paths in its mount table (see mountinfoForms).
		for _, v := range slices.Clone(out) {
			out = append(out, mountinfoForms(v, mountinfo)...)
		}
		return out
	}
	for _, p := range hostPaths {
		for _, v := range variants(p) {
			repl[v] = HostPathMarker
		}
	}
	for _, v := range variants(workspace) {
		repl[v] = sandbox.WorkspaceTarget
	}
	// Longest first, so /home/u/proj (the workspace) wins over /home/u (a host path).
	olds := slices.SortedFunc(maps.Keys(repl), func(a, b string) int {
		if d := len(b) - len(a); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	news := make([]string, len(olds))
	for i, o := range olds {
		news[i] = repl[o]
	}
	return &Sanitizer{redactor: r, paths: newPathScrubber(olds, news), maxBytes: maxBytes}
}

// DefaultHostPaths are host directories scrubbed from output besides the workspace: Airlock's
// state directory ($AIRLOCK_STATE_DIR or /var/lib/airlock: bundles, images, the audit log) and
// the home directory of the user running Airlock (unless it is / or /tmp, which exist in every
// sandbox).
func DefaultHostPaths() []string {
	state := os.Getenv("AIRLOCK_STATE_DIR")
	if state == "" {
		state = "/var/lib/airlock"
	}
	if abs, err := filepath.Abs(state); err == nil {
		state = abs
	}
	out := []string{state}
	if h, err := os.UserHomeDir(); err == nil && h != "/" && h != "/tmp" {
		out = append(out, h)
	}
	return out
}

// redactMargin is how far past the size cap output is still sanitised and redacted.
const redactMargin = 64 << 10

// Clean sanitises one output stream on its own, with its own redaction budget. It returns the
// text, the secrets redacted per rule id, and whether the size cap cut the text. Output whose
// redaction would exceed the budget is replaced by a message saying it was withheld.
func (s *Sanitizer) Clean(b []byte) (string, map[string]int, bool) {
	c := s.newCall()
	text, cut := s.prepareStream(b)
	c.charge(len(text))
	text = c.redact(text)
	if c.err != nil {
		return withheldText(len(b)), nil, cut
	}
	text, capped := s.capText(text)
	return text, c.counts(), cut || capped
}

// prepareStream cuts a stream at the cap plus the margin and runs the steps before
// redaction. Only what survives the cap needs redacting, and redaction is the expensive step:
// the margin past the cap lets a secret that straddles the cut be recognised whole (and
// markers longer than the secrets they replace cannot pull unredacted text under the cap).
func (s *Sanitizer) prepareStream(b []byte) (string, bool) {
	truncated := false
	if limit := s.maxBytes + redactMargin; len(b) > limit {
		b, truncated = b[:limit], true
	}
	return s.prepare(b), truncated
}

// prepare runs steps 1-3: valid UTF-8, no terminal control or invisible formatting, no host
// paths.
func (s *Sanitizer) prepare(b []byte) string {
	return s.paths.Replace(stripControls(b))
}

// capText cuts text to the size cap on a character boundary.
func (s *Sanitizer) capText(text string) (string, bool) {
	if len(text) <= s.maxBytes {
		return text, false
	}
	cut := s.maxBytes
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut], true
}

// withheldText is what replaces output whose redaction would exceed the budget.
func withheldText(n int) string {
	return fmt.Sprintf("[airlock: output withheld: checking these %d bytes for secrets would exceed the "+
		"redaction budget, so none of it is returned. Ask for less or plainer output: read_file with a "+
		"smaller limit, a narrower search pattern or path, or a command piped through head, cut or grep.]", n)
}

// A callCleaner sanitises everything one tool call returns (both streams or the tool's
// decoded JSON, the tool's rendering, its structured fields) against one redaction budget,
// sized from all of it, and shares what it finds: a secret recognised in one string, where
// its context made it recognisable, is replaced in every other string of the result too
// (see propagateMin).
type callCleaner struct {
	s     *Sanitizer
	b     *redactBudget
	known *secretSet
	found map[string][]finding // per prepared string: what scan found in it
	// data and text count the markers put into the structured data and into the text block;
	// the result reports, per rule, the larger (the same secret in both is one secret).
	data, text map[string]int
	err        error
}

func (s *Sanitizer) newCall() *callCleaner {
	return &callCleaner{s: s, b: newRedactBudget(), known: newSecretSet(), found: map[string][]finding{},
		data: map[string]int{}, text: map[string]int{}}
}

// charge adds n bytes of output to the budget (see redactBudget).
func (c *callCleaner) charge(n int) {
	c.b.charge(n)
}

// scan finds the secrets in a prepared string and remembers them.
func (c *callCleaner) scan(text string) {
	if c.err != nil || c.s.redactor == nil || text == "" {
		return
	}
	if _, done := c.found[text]; done {
		return
	}
	f, err := c.s.redactor.scan(text, c.b)
	if err != nil {
		c.err = err
		return
	}
	c.found[text] = f
	c.s.redactor.remember(c.known, text, f)
}

// apply replaces what scan found in text, and every known secret, counting the markers into
// into.
func (c *callCleaner) apply(text string, into map[string]int) string {
	if c.s.redactor == nil || c.err != nil {
		return text
	}
	out, n := c.s.redactor.apply(text, c.found[text], c.known)
	for k, v := range n {
		into[k] += v
	}
	return out
}

// redact scans and applies in one step, for a string whose secrets need not reach others
// first.
func (c *callCleaner) redact(text string) string {
	c.scan(text)
	return c.apply(text, c.data)
}

// counts is the number of secrets redacted per rule id.
func (c *callCleaner) counts() map[string]int {
	out := map[string]int{}
	for k, v := range c.data {
		out[k] = v
	}
	for k, v := range c.text {
		out[k] = max(out[k], v)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// CleanText sanitises text derived from already-cleaned output (a tool's rendering of it)
// without the size cap, with its own budget.
func (s *Sanitizer) CleanText(text string) (string, map[string]int) {
	c := s.newCall()
	text = s.prepare([]byte(text))
	c.charge(len(text))
	text = c.redact(text)
	if c.err != nil {
		return withheldText(len(text)), nil
	}
	return text, c.counts()
}

// StripControls is stage 6's terminal-control cleaning alone (see stripControls), without
// redaction or path scrubbing: for text that does not come out of a sandbox but still reaches
// the model or a human, such as an upstream MCP server's tool descriptions.
func StripControls(s string) string { return stripControls([]byte(s)) }

// stripControls forces b to valid UTF-8 and removes terminal control: ANSI/VT escape
// sequences, C0 and C1 control characters except tab and newline, DEL, and the invisible
// characters (see invisible). A lone CR or CRLF becomes LF.
//
// Escape sequences in output can rewrite a terminal's title, move the cursor to overwrite what
// a human approves, or (OSC 52) write the clipboard; bidi overrides make text read differently
// from what it is ("Trojan Source"); zero-width and tag characters hide instructions from the
// human while the model reads them. None of them carry data an agent needs.
func stripControls(b []byte) string {
	var out strings.Builder
	out.Grow(len(b))
	i := 0
	for i < len(b) {
		c := b[i]
		if c >= 0x20 && c < 0x7f { // printable ASCII: the common case
			j := i + 1
			for j < len(b) && b[j] >= 0x20 && b[j] < 0x7f {
				j++
			}
			out.Write(b[i:j])
			i = j
			continue
		}
		switch {
		case c == '\n' || c == '\t':
			out.WriteByte(c)
			i++
		case c == '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				i++ // CRLF: the LF is written next round
			} else {
				out.WriteByte('\n')
				i++
			}
		case c == 0x1b:
			i = skipEscape(b, i+1)
		case c < 0x20 || c == 0x7f:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			switch {
			case r == utf8.RuneError && n <= 1:
				out.WriteString("\uFFFD")
			case r == 0x9b: // C1 CSI
				i = skipCSI(b, i+n)
				continue
			case r == 0x9d || r == 0x90 || r == 0x98 || r == 0x9e || r == 0x9f: // C1 OSC, DCS, SOS, PM, APC
				i = skipString(b, i+n)
				continue
			case r >= 0x80 && r <= 0x9f: // other C1 controls
			case invisible(r):
			default:
				out.Write(b[i : i+n])
			}
			i += n
		}
	}
	return out.String()
}

// invisible reports whether r is a character that changes how text reads without showing
// itself: every Unicode format character (category Cf: the bidirectional embeddings,
// overrides and isolates, zero-width space, joiners and marks, word joiner, soft hyphen, the
// byte order mark, interlinear annotation marks...), the tag characters U+E0000-U+E007F, which
// spell ASCII invisibly ("ASCII smuggling" of instructions past the human who reads the
// output to the model that reads it all), and the supplementary variation selectors
// U+E0100-U+E01EF, which carry bytes the same way.
func invisible(r rune) bool {
	return unicode.Is(unicode.Cf, r) || (r >= 0xe0000 && r <= 0xe007f) || (r >= 0xe0100 && r <= 0xe01ef)
}

// skipEscape skips an escape sequence whose ESC was just before b[i] and returns the index
// after it.
func skipEscape(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '[':
		return skipCSI(b, i+1)
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: strings up to BEL or ST
		return skipString(b, i+1)
	}
	// nF sequences: intermediates 0x20-0x2F then one final byte 0x30-0x7E.
	for i < len(b) && b[i] >= 0x20 && b[i] <= 0x2f {
		i++
	}
	if i < len(b) && b[i] >= 0x30 && b[i] <= 0x7e {
		i++
	}
	return i
}

// skipCSI skips parameters (0x30-0x3F), intermediates (0x20-0x2F) and the final byte
// (0x40-0x7E) of a control sequence. It stops early at a byte that cannot be part of one.
func skipCSI(b []byte, i int) int {
	for i < len(b) && b[i] >= 0x30 && b[i] <= 0x3f {
		i++
	}
	for i < len(b) && b[i] >= 0x20 && b[i] <= 0x2f {
		i++
	}
	if i < len(b) && b[i] >= 0x40 && b[i] <= 0x7e {
		i++
	}
	return i
}

// skipString skips a control string up to and including its terminator: BEL, ESC \ or the C1
// ST (U+009C). An unterminated string ends at the next newline, so a stray ESC ] cannot
// swallow the rest of the output.
func skipString(b []byte, i int) int {
	for i < len(b) {
		switch {
		case b[i] == '\n':
			return i
		case b[i] == 0x07:
			return i + 1
		case b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\':
			return i + 2
		case b[i] == 0xc2 && i+1 < len(b) && b[i+1] == 0x9c:
			return i + 2
		}
		i++
	}
	return i
}
