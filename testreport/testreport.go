// Package testreport turns the output of a test run into a structured summary an agent can act
// on: how many tests passed, failed and were skipped, and for each failure its name, the file and
// line the tool printed, and a short message.
//
// Airlock's run_tests tool runs a project's test command in a sandbox; what comes back is
// megabytes of interleaved runner output. Parse recognises the common runners' formats (go test
// -json, JUnit XML, TAP, pytest and jest terminal output) and Summary renders a few lines the
// agent can read instead of the raw log. The input is the untrusted output of code the agent
// wrote, so every parser is a single bounded pass: it never panics on malformed input, keeps at
// most MaxFailures failures of at most MaxMessage bytes each, and its memory does not grow with
// the amount of log a test prints.
package testreport

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Formats a Report can carry.
const (
	FormatGoTestJSON = "go-test-json"
	FormatJUnit      = "junit"
	FormatTAP        = "tap"
	FormatPytest     = "pytest"
	FormatJest       = "jest"
)

// Bounds on what a Report holds, whatever the size of the input.
const (
	// MaxFailures is the number of failures a Report lists; the rest are counted only.
	MaxFailures = 50
	// MaxMessage caps a failure's message in bytes.
	MaxMessage = 2048
	// maxName caps a failure's name and file in bytes.
	maxName = 512
	// maxLine caps one line of retained runner output in bytes.
	maxLine = 1024
)

// Report is the structured result of one test run.
type Report struct {
	Format            string    `json:"format"`
	Passed            int       `json:"passed"`
	Failed            int       `json:"failed"`
	Skipped           int       `json:"skipped"`
	Failures          []Failure `json:"failures"`
	FailuresTruncated bool      `json:"failures_truncated"`
}

// Failure is one failed test (or a build or suite that failed before its tests ran).
type Failure struct {
	// Name identifies the test the way its runner does, e.g. "example.com/x.TestAdd",
	// "tests/test_calc.py::test_add", "add › adds negatives".
	Name string `json:"name"`
	// File is the file as the runner printed it (often relative to the project); empty when the
	// output names none.
	File string `json:"file,omitempty"`
	// Line is the 1-based line in File, or 0 when unknown.
	Line int `json:"line,omitempty"`
	// Message is what the test said about the failure, at most MaxMessage bytes.
	Message string `json:"message,omitempty"`
}

// Parse recognises a test run's output and summarises it. stdout and stderr are the run's
// streams; files holds report files found in the workspace after the run (JUnit XML), keyed by
// path, and may be nil. It returns ok=false when nothing in the input is a test report Airlock
// knows.
//
// The runners' own terminal output is preferred over report files: it is what this run printed,
// while a report file in the workspace may be left over from an earlier run.
func Parse(stdout, stderr []byte, files map[string][]byte) (*Report, bool) {
	combined := make([]byte, 0, len(stdout)+1+len(stderr))
	combined = append(combined, stdout...)
	if len(stdout) > 0 && stdout[len(stdout)-1] != '\n' {
		combined = append(combined, '\n')
	}
	combined = append(combined, stderr...)

	if r, ok := parseGoTestJSON(combined); ok {
		return r, true
	}
	if r, ok := parseJUnitText(combined); ok {
		return r, true
	}
	text := stripANSI(combined)
	if r, ok := parseTAP(text); ok {
		return r, true
	}
	if r, ok := parseJest(text); ok {
		return r, true
	}
	if r, ok := parsePytest(text); ok {
		return r, true
	}
	if r, ok := parseJUnitFiles(files); ok {
		return r, true
	}
	return nil, false
}

// Summary renders the report as a few lines of text: the counts, then one line per listed
// failure with its location and the first line of its message, and up to summaryExtraLines
// further lines of the message indented beneath it.
func (r *Report) Summary() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d passed, %d failed, %d skipped", r.Passed, r.Failed, r.Skipped)
	for _, f := range r.Failures {
		b.WriteString("\nFAIL ")
		b.WriteString(f.Name)
		switch {
		case f.File != "" && f.Line > 0:
			fmt.Fprintf(&b, " (%s:%d)", f.File, f.Line)
		case f.File != "":
			fmt.Fprintf(&b, " (%s)", f.File)
		}
		lines := nonEmptyLines(f.Message)
		if len(lines) == 0 {
			continue
		}
		b.WriteString(": ")
		b.WriteString(clip(lines[0], summaryLineWidth))
		for i, l := range lines[1:] {
			if i == summaryExtraLines {
				b.WriteString("\n    …")
				break
			}
			b.WriteString("\n    ")
			b.WriteString(clip(l, summaryLineWidth))
		}
	}
	if r.FailuresTruncated {
		if more := r.Failed - len(r.Failures); more > 0 {
			fmt.Fprintf(&b, "\n… %d more failures not listed", more)
		} else {
			b.WriteString("\n… more failures not listed")
		}
	}
	return b.String()
}

const (
	summaryExtraLines = 4
	summaryLineWidth  = 200
)

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, " \t"))
		}
	}
	return out
}

// builder accumulates a Report, keeping at most MaxFailures failures.
type builder struct {
	r Report
}

func newBuilder(format string) *builder {
	return &builder{r: Report{Format: format, Failures: []Failure{}}}
}

// addFailure records a failure for the listing; it does not change the counts.
func (b *builder) addFailure(f Failure) {
	if len(b.r.Failures) >= MaxFailures {
		b.r.FailuresTruncated = true
		return
	}
	f.Name = clean(f.Name, maxName)
	f.File = clean(f.File, maxName)
	f.Message = clean(strings.Trim(f.Message, "\n"), MaxMessage)
	if f.Line < 0 {
		f.Line = 0
	}
	b.r.Failures = append(b.r.Failures, f)
}

func (b *builder) report() *Report {
	r := b.r
	if r.Failed < len(r.Failures) {
		r.Failed = len(r.Failures)
	}
	return &r
}

// ansiEscape matches CSI and OSC terminal sequences; jest colours its code frames even when not
// writing to a terminal.
var ansiEscape = regexp.MustCompile(`\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])`)

func stripANSI(b []byte) []byte {
	if bytes.IndexByte(b, 0x1b) < 0 {
		return b
	}
	return ansiEscape.ReplaceAll(b, nil)
}

// clean makes s safe to hand to an agent as a field: terminal escapes and control bytes other
// than newline and tab are removed (they could rewrite what a person reviewing the transcript
// sees), invalid UTF-8 is replaced, and the result is capped at max bytes on a rune boundary.
func clean(s string, max int) string {
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansiEscape.ReplaceAllString(s, "")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
	return clip(s, max)
}

// clip cuts s to at most max bytes on a rune boundary, marking the cut with "…".
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// eachLine calls fn for every line of b without its line ending (and without anything before a
// carriage return inside it), stopping early when fn returns
// false. Lines longer than maxLine are passed cut to maxLine so no parser holds more than that of
// any single line.
func eachLine(b []byte, fn func(line []byte) bool) {
	eachLineMax(b, maxLine, fn)
}

// eachLineMax is eachLine with lines cut at max bytes.
func eachLineMax(b []byte, max int, fn func(line []byte) bool) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var line []byte
		if i < 0 {
			line, b = b, nil
		} else {
			line, b = b[:i], b[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		// A carriage return inside a line (progress output) leaves only what follows it on a
		// terminal; parse what a person would have seen.
		if j := bytes.LastIndexByte(line, '\r'); j >= 0 {
			line = line[j+1:]
		}
		if len(line) > max {
			line = line[:max]
		}
		if !fn(line) {
			return
		}
	}
}

// indentOf counts leading spaces and tabs.
func indentOf(s string) int {
	return len(s) - len(strings.TrimLeft(s, " \t"))
}

// dedent removes the common leading whitespace of the non-empty lines.
func dedent(lines []string) []string {
	min := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := indentOf(l); min < 0 || n < min {
			min = n
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) >= min && min > 0 {
			out[i] = strings.TrimRight(l[min:], " \t")
		} else {
			out[i] = strings.TrimSpace(l)
		}
	}
	return out
}

// joinCapped joins lines with newlines, stopping once the result reaches MaxMessage.
func joinCapped(lines []string) string {
	var b strings.Builder
	for i, l := range lines {
		if b.Len() > MaxMessage {
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return strings.Trim(b.String(), "\n")
}

// tailLines keeps the last n lines appended to it, so a test that logs a million lines costs no
// more than one that logs n.
type tailLines struct {
	n     int
	lines []string
}

func (t *tailLines) add(s string) {
	t.lines = append(t.lines, s)
	if len(t.lines) >= 2*t.n {
		copy(t.lines, t.lines[len(t.lines)-t.n:])
		t.lines = t.lines[:t.n]
	}
}

func (t *tailLines) get() []string {
	if len(t.lines) > t.n {
		return t.lines[len(t.lines)-t.n:]
	}
	return t.lines
}

// maxCount caps a count read from a runner's summary line, so sums of counts cannot overflow.
const maxCount = 1 << 30

// count reads a count printed by a runner, capped at maxCount; anything unreadable is 0.
func count(s string) int {
	if len(s) > 10 {
		return maxCount
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return min(n, maxCount)
}

// sortedKeys returns the keys of m in order, so reports built from several files are stable.
func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
