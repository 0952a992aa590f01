package testreport

import (
	"regexp"
	"strings"
)

var (
	// jestTests is the summary line: "Tests:       2 failed, 1 skipped, 2 passed, 5 total".
	jestTests = regexp.MustCompile(`^Tests:\s+(.*\d+ total)\s*$`)
	jestCount = regexp.MustCompile(`(\d+) (failed|passed|skipped|todo|pending)`)
	// jestSuite is a test file's header: "FAIL src/calc.test.js" (a duration may follow).
	jestSuite = regexp.MustCompile(`^\s*(PASS|FAIL) (\S+)`)
	// jestResult is a verbose result line: "✓ adds (3 ms)", "✕ adds", "○ skipped adds".
	jestResult = regexp.MustCompile(`^\s+(✓|✕|√|×|○|✎) (.*?)(?: \(\d+(?:\.\d+)? m?s\))?$`)
	// jestBlock is a failure block's header: "  ● add › adds negatives".
	jestBlock = regexp.MustCompile(`^  ● (.+)$`)
	// jestCodeFrame is a line of jest's code frame: "    >  9 |     expect(...)".
	jestCodeFrame = regexp.MustCompile(`^\s*>?\s*\d*\s+\|`)
	jestAt        = regexp.MustCompile(`^\s+at `)
)

const jestSuiteFailed = "Test suite failed to run"

// jestFailure is the "●" block being read.
type jestFailure struct {
	name  string
	suite string
	lines []string
}

// parseJest reads jest's default reporter. Counts come from the "Tests:" line when there is
// one, else from verbose result lines. A test file that failed to run ("● Test suite failed to
// run") is a failure of its own and is added to the failed count, since none of its tests ran.
func parseJest(in []byte) (*Report, bool) {
	b := newBuilder(FormatJest)
	var (
		summary       bool
		suites        int
		blocks        int
		suite         string
		cur           *jestFailure
		done          bool // past "Summary of all failing tests", which repeats the blocks
		pass, fail    int
		skip, suiteKO int
	)
	finish := func() {
		if cur != nil {
			if cur.name == jestSuiteFailed {
				suiteKO++
			}
			jestFinish(b, cur)
		}
		cur = nil
	}
	eachLine(in, func(raw []byte) bool {
		line := string(raw)
		if m := jestTests.FindStringSubmatch(line); m != nil {
			finish()
			summary = true
			b.r.Passed, b.r.Failed, b.r.Skipped = 0, 0, 0
			for _, c := range jestCount.FindAllStringSubmatch(m[1], -1) {
				n := count(c[1])
				switch c[2] {
				case "passed":
					b.r.Passed = n
				case "failed":
					b.r.Failed = n
				default:
					b.r.Skipped += n
				}
			}
			return true
		}
		if strings.HasPrefix(line, "Summary of all failing tests") {
			finish()
			done = true
			return true
		}
		if m := jestSuite.FindStringSubmatch(line); m != nil && indentOf(line) == 0 {
			finish()
			suites++
			suite = m[2]
			return true
		}
		if m := jestBlock.FindStringSubmatch(line); m != nil {
			finish()
			name := strings.TrimSpace(m[1])
			// "● Console" blocks hold console.log output, not failures.
			if done || suite == "" || name == "Console" {
				return true
			}
			blocks++
			cur = &jestFailure{name: name, suite: suite}
			return true
		}
		if cur != nil {
			if strings.TrimSpace(line) != "" && indentOf(line) == 0 {
				finish()
			} else {
				if len(cur.lines) < 200 {
					cur.lines = append(cur.lines, line)
				}
				return true
			}
		}
		if m := jestResult.FindStringSubmatch(line); m != nil && suite != "" {
			switch m[1] {
			case "✓", "√":
				pass++
			case "✕", "×":
				fail++
			default:
				skip++
			}
		}
		return true
	})
	finish()
	if !summary && (suites == 0 || (blocks == 0 && pass+fail+skip == 0)) {
		return nil, false
	}
	if !summary {
		b.r.Passed, b.r.Failed, b.r.Skipped = pass, fail, skip
	}
	b.r.Failed += suiteKO
	return b.report(), true
}

// jestFinish turns a "●" block into a Failure: the message is the block's text up to the code
// frame, the location the first stack frame in the test file (else the first outside
// node_modules).
func jestFinish(b *builder, j *jestFailure) {
	f := Failure{Name: j.name}
	if j.name == jestSuiteFailed {
		f.Name = j.suite + ": " + strings.ToLower(j.name[:1]) + j.name[1:]
	}
	var msg, stack []string
	inFrame := false
	for _, l := range j.lines {
		switch {
		case jestAt.MatchString(l):
			stack = append(stack, l)
		case jestCodeFrame.MatchString(l) && strings.TrimSpace(l) != "":
			inFrame = true
		case len(stack) == 0 && !inFrame:
			msg = append(msg, l)
		}
	}
	f.Message = strings.TrimSpace(joinCapped(dedent(msg)))
	if loc, ok := pickFrame(frames(strings.Join(stack, "\n"), 32), j.suite); ok {
		f.File, f.Line = loc.file, loc.line
	} else if j.name == jestSuiteFailed {
		f.File = j.suite
	}
	b.addFailure(f)
}
