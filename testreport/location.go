package testreport

import (
	"regexp"
	"strconv"
	"strings"
)

// location is a file and line as a runner printed them.
type location struct {
	file string
	line int
}

// framePath matches "path.ext:line" or "path.ext:line:col" as stack traces print them, with an
// optional file:// prefix (Node prints ES module frames as URLs). The extension requirement
// leaves out Node's internal frames ("node:internal/test_runner/test:796:25").
var framePath = regexp.MustCompile(`(?:file://)?([^\s()'"<>]*[^\s()'"<>:]\.[A-Za-z0-9]{1,10}):(\d{1,9})(?::\d{1,9})?`)

// frames returns the locations in text, in order, at most max of them.
func frames(text string, max int) []location {
	var out []location
	for _, m := range framePath.FindAllStringSubmatch(text, max) {
		n, err := strconv.Atoi(m[2])
		if err != nil || n <= 0 {
			continue
		}
		out = append(out, location{file: m[1], line: n})
	}
	return out
}

// pickFrame chooses the frame an agent should look at: the first in prefer (the test's own
// file) when there is one, else the first outside dependencies, else the first.
func pickFrame(fs []location, prefer string) (location, bool) {
	if len(fs) == 0 {
		return location{}, false
	}
	if prefer != "" {
		for _, f := range fs {
			if f.file == prefer || strings.HasSuffix(f.file, "/"+prefer) {
				return f, true
			}
		}
	}
	for _, f := range fs {
		if !strings.Contains(f.file, "node_modules/") && !strings.Contains(f.file, "site-packages/") {
			return f, true
		}
	}
	return fs[0], true
}

// parseLocation reads "path:line" or "path:line:col", possibly wrapped as "fn (path:line:col)".
func parseLocation(s string) (location, bool) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '('); i >= 0 && strings.HasSuffix(s, ")") {
		s = s[i+1 : len(s)-1]
	}
	s = strings.TrimPrefix(s, "file://")
	// Up to two numeric suffixes: line, or line and column.
	var nums []int
	for k := 0; k < 2; k++ {
		i := strings.LastIndexByte(s, ':')
		if i <= 0 {
			break
		}
		n, err := strconv.Atoi(s[i+1:])
		if err != nil {
			break
		}
		nums = append(nums, n)
		s = s[:i]
	}
	if len(nums) == 0 || s == "" {
		return location{}, false
	}
	line := nums[len(nums)-1]
	if line <= 0 {
		return location{}, false
	}
	return location{file: s, line: line}, true
}
