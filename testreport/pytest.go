package testreport

import (
	"regexp"
	"strconv"
	"strings"
)

var (
	// pytestFinal is the last line: "=== 3 failed, 2 passed, 1 skipped in 0.03s ===", or without
	// the rules under -q.
	pytestFinal = regexp.MustCompile(`^=*\s*((?:\d+ (?:passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?|rerun)(?:, )?)+|no tests ran) in [\d.]+s(?: \([^)]*\))?\s*=*$`)
	pytestCount = regexp.MustCompile(`(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)`)
	// pytestHeader is a section rule: "=== FAILURES ===", "=== short test summary info ===".
	pytestHeader = regexp.MustCompile(`^={3,} ?(.*?) ?={3,}$`)
	// pytestSection is a failure's heading: "___ test_add_negative ___".
	pytestSection = regexp.MustCompile(`^_{3,} (.+?) _{3,}$`)
	// pytestShort is a short summary entry: "FAILED tests/x.py::test - message".
	pytestShort = regexp.MustCompile(`^(FAILED|ERROR) (\S.*?)(?: - (.*))?$`)
)

// pytestSectionText is one traceback section under FAILURES or ERRORS.
type pytestSectionText struct {
	name   string
	locs   []location
	elines []string
	used   bool
}

// parsePytest reads pytest's terminal output (default, -q, -rA). Counts come from the final
// line; errors (fixture and collection failures) count as failed. Failures come from the short
// test summary, each matched with its traceback section for the location and the "E" lines;
// without a summary (-rN) the sections themselves are the failures.
func parsePytest(in []byte) (*Report, bool) {
	b := newBuilder(FormatPytest)
	var (
		final, sawSection bool
		section           string // the current "=== X ===" section
		sections          []*pytestSectionText
		cur               *pytestSectionText
		shorts            [][3]string
	)
	eachLine(in, func(raw []byte) bool {
		line := string(raw)
		if m := pytestFinal.FindStringSubmatch(line); m != nil {
			final = true
			b.r.Passed, b.r.Failed, b.r.Skipped = 0, 0, 0
			for _, c := range pytestCount.FindAllStringSubmatch(m[1], -1) {
				n := count(c[1])
				switch c[2] {
				case "passed", "xpassed":
					b.r.Passed += n
				case "failed", "error", "errors":
					b.r.Failed += n
				default:
					b.r.Skipped += n
				}
			}
			section = ""
			return true
		}
		if m := pytestHeader.FindStringSubmatch(line); m != nil {
			section = strings.ToLower(m[1])
			cur = nil
			if section == "failures" || section == "errors" || section == "short test summary info" {
				sawSection = true
			}
			return true
		}
		switch section {
		case "failures", "errors":
			if m := pytestSection.FindStringSubmatch(line); m != nil {
				cur = nil
				if len(sections) < 2*MaxFailures {
					cur = &pytestSectionText{name: m[1]}
					sections = append(sections, cur)
				}
				return true
			}
			if cur == nil {
				return true
			}
			if strings.HasPrefix(line, "E ") || line == "E" {
				if len(cur.elines) < 32 {
					cur.elines = append(cur.elines, line[1:])
				}
			} else if m := pytestLocLine.FindStringSubmatch(line); m != nil && len(cur.locs) < 32 {
				if n, err := strconv.Atoi(m[2]); err == nil && n > 0 {
					cur.locs = append(cur.locs, location{file: m[1], line: n})
				}
			}
		case "short test summary info":
			if m := pytestShort.FindStringSubmatch(line); m != nil && len(shorts) < 4*MaxFailures {
				shorts = append(shorts, [3]string{m[1], m[2], m[3]})
			}
		}
		return true
	})
	if !final && !sawSection {
		return nil, false
	}
	if len(shorts) > 0 {
		for _, s := range shorts {
			pytestShortFailure(b, s, sections)
		}
	} else {
		for _, s := range sections {
			f := Failure{Name: s.name}
			pytestDescribe(&f, s, "")
			b.addFailure(f)
		}
	}
	if !final {
		b.r.Failed = len(shorts)
		if b.r.Failed == 0 {
			b.r.Failed = len(sections)
		}
	}
	return b.report(), true
}

// pytestShortFailure builds a failure from a short summary entry and its traceback section.
func pytestShortFailure(b *builder, s [3]string, sections []*pytestSectionText) {
	nodeID, msg := s[1], s[2]
	file, test := nodeID, ""
	if i := strings.Index(nodeID, "::"); i >= 0 {
		file, test = nodeID[:i], strings.ReplaceAll(nodeID[i+2:], "::", ".")
	}
	f := Failure{Name: nodeID, File: file, Message: msg}
	for _, sec := range sections {
		if sec.used || pytestSectionTest(sec.name) != test && !(test == "" && pytestSectionTest(sec.name) == file) {
			continue
		}
		sec.used = true
		pytestDescribe(&f, sec, file)
		if f.Message == "" {
			f.Message = msg
		}
		break
	}
	b.addFailure(f)
}

// pytestSectionTest is the test a section heading names: "test_x", "TestC.test_x",
// "ERROR at setup of test_x", "ERROR collecting tests/test_x.py".
func pytestSectionTest(name string) string {
	for _, p := range []string{"ERROR at setup of ", "ERROR at teardown of ", "ERROR at call of ", "ERROR collecting "} {
		if strings.HasPrefix(name, p) {
			return name[len(p):]
		}
	}
	return name
}

// pytestDescribe takes the location and message from a traceback section: the last location
// in the test's own file (else the last of all, where the exception surfaced), and the "E"
// lines.
func pytestDescribe(f *Failure, s *pytestSectionText, file string) {
	var loc location
	for _, l := range s.locs {
		if file == "" || l.file == file {
			loc = l
		}
	}
	if loc.file == "" && len(s.locs) > 0 {
		loc = s.locs[len(s.locs)-1]
	}
	if loc.file != "" {
		f.File, f.Line = loc.file, loc.line
	}
	if len(s.elines) > 0 {
		f.Message = joinCapped(dedent(s.elines))
	}
}
