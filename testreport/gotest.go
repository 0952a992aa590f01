package testreport

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// goEvent is one line of `go test -json` (cmd/test2json), including the build events Go 1.24+
// emits in the same stream.
type goEvent struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string
	FailedBuild string
}

// goTest is a test that has started and not yet finished.
type goTest struct {
	out         tailLines
	hasChild    bool
	failedChild bool
}

// goPackage is what is remembered about a package until its final event.
type goPackage struct {
	out        tailLines
	testFailed bool
}

const (
	// goTestTail is how many lines of a test's own output are kept for its failure message.
	goTestTail = 32
	// goMaxRunning bounds the tests and packages tracked at once (tests past it are counted as
	// leaves), so retained output stays under goMaxRunning*2*goTestTail*maxLine bytes.
	goMaxRunning = 1000
	// goMaxEvent is the longest event line decoded; an output event longer than this (a test
	// printing one huge line) is skipped, which loses only that line.
	goMaxEvent = 64 * 1024
	// goMaxBlocks bounds the build-output blocks kept.
	goMaxBlocks = 1000
)

var (
	// goTestLine is a line of t.Log/t.Error output: "    calc_test.go:14: message".
	goTestLine = regexp.MustCompile(`^(\s*)([^\s:]+\.go):(\d+): ?(.*)$`)
	// goCompileLine is a compiler diagnostic: "broken/broken_test.go:6:17: cannot use ...".
	goCompileLine = regexp.MustCompile(`^([^\s:]+\.go):(\d+)(?::\d+)?: (.*)$`)
	// goPanicFrame is a goroutine trace frame: "\t/src/x/calc_test.go:14 +0x1d".
	goPanicFrame = regexp.MustCompile(`^\s+(\S+\.go):(\d+)(?: \+0x[0-9a-f]+)?$`)
)

// goAction reports whether a is an action test2json emits.
func goAction(a string) bool {
	switch a {
	case "start", "run", "pause", "cont", "pass", "bench", "fail", "output", "skip",
		"build-output", "build-fail":
		return true
	}
	return false
}

// parseGoTestJSON reads test2json events. Lines that are not JSON objects are kept aside: older
// Go versions print compiler errors to stderr as plain text rather than as build-output events.
func parseGoTestJSON(in []byte) (*Report, bool) {
	b := newBuilder(FormatGoTestJSON)
	tests := map[string]*goTest{}
	pkgs := map[string]*goPackage{}
	builds := map[string][]string{} // ImportPath -> compiler output
	var plain []string              // non-JSON lines that may be compiler output
	events := 0

	pkgOf := func(name string) *goPackage {
		p := pkgs[name]
		if p == nil {
			if len(pkgs) >= goMaxRunning {
				return &goPackage{out: tailLines{n: 16}}
			}
			p = &goPackage{out: tailLines{n: 16}}
			pkgs[name] = p
		}
		return p
	}

	// Plain lines first: with the streams concatenated, compiler errors printed on stderr come
	// after the JSON events that report the failed build.
	eachLine(in, func(raw []byte) bool {
		if line := bytes.TrimSpace(raw); len(line) > 0 && line[0] != '{' && len(plain) < 4*goTestTail {
			plain = append(plain, string(stripANSI(raw)))
		}
		return true
	})
	eachLineMax(in, goMaxEvent, func(raw []byte) bool {
		line := bytes.TrimSpace(raw)
		if len(line) == 0 || line[0] != '{' {
			return true
		}
		var ev goEvent
		if json.Unmarshal(line, &ev) != nil || !goAction(ev.Action) {
			return true
		}
		events++
		switch ev.Action {
		case "build-output":
			if len(builds) < goMaxBlocks || builds[ev.ImportPath] != nil {
				if out := builds[ev.ImportPath]; len(out) < goTestTail {
					builds[ev.ImportPath] = append(out, strings.TrimRight(ev.Output, "\n"))
				}
			}
			return true
		case "build-fail":
			return true
		}
		if ev.Test == "" {
			goPackageEvent(b, ev, pkgOf(ev.Package), builds, plain)
			if ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip" {
				delete(pkgs, ev.Package)
			}
			return true
		}
		key := ev.Package + "\x00" + ev.Test
		switch ev.Action {
		case "run":
			if len(tests) < goMaxRunning {
				tests[key] = &goTest{out: tailLines{n: goTestTail}}
			}
			if parent := tests[goParentKey(ev.Package, ev.Test)]; parent != nil {
				parent.hasChild = true
			}
		case "output":
			if t := tests[key]; t != nil {
				t.out.add(strings.TrimRight(clip(ev.Output, maxLine), "\n"))
			}
		case "pass", "skip", "fail":
			t := tests[key]
			delete(tests, key)
			if t == nil {
				t = &goTest{}
			}
			if ev.Action == "fail" {
				pkgOf(ev.Package).testFailed = true
				if parent := tests[goParentKey(ev.Package, ev.Test)]; parent != nil {
					parent.failedChild = true
				}
			}
			goTestResult(b, ev, t)
		}
		return true
	})
	if events == 0 {
		return nil, false
	}
	return b.report(), true
}

// goParentKey is the map key of a subtest's parent, or "" for a top-level test.
func goParentKey(pkg, test string) string {
	i := strings.LastIndexByte(test, '/')
	if i < 0 {
		return ""
	}
	return pkg + "\x00" + test[:i]
}

// goTestResult counts a finished test. Tests are counted at the leaves: a parent whose subtests
// ran is counted only when it failed on its own (its output says why, or none of its subtests
// failed), so a table test with one bad row reads "1 failed", not "2 failed".
func goTestResult(b *builder, ev goEvent, t *goTest) {
	own := goOwnOutput(t.out.get())
	if t.hasChild {
		if ev.Action != "fail" || (t.failedChild && len(own) == 0) {
			return
		}
	}
	switch ev.Action {
	case "pass":
		b.r.Passed++
	case "skip":
		b.r.Skipped++
	case "fail":
		b.r.Failed++
		f := Failure{Name: ev.Package + "." + ev.Test}
		if ev.Package == "" {
			f.Name = ev.Test
		}
		goDescribe(&f, own)
		b.addFailure(f)
	}
}

// goOwnOutput drops the framing lines test2json attributes to a test (=== RUN, --- FAIL, ...).
func goOwnOutput(lines []string) []string {
	var out []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// goDescribe fills a failure's location and message from the test's own output. t.Log and
// t.Error print alike ("    file_test.go:12: text"), so the location is the last such line: a
// t.Fatal ends the test, and logging usually comes before the check that fails. Other located
// lines follow in the message so no t.Error is lost. A panic is described by its panic line and
// the first frame in a _test.go file.
func goDescribe(f *Failure, own []string) {
	for i, l := range own {
		if !strings.HasPrefix(l, "panic: ") {
			continue
		}
		msg := []string{l}
		var loc, any location
		for _, fr := range own[i+1:] {
			m := goPanicFrame.FindStringSubmatch(fr)
			if m == nil {
				if strings.HasPrefix(fr, "panic: ") && len(msg) < 4 {
					msg = append(msg, fr)
				}
				continue
			}
			n, _ := strconv.Atoi(m[2])
			if any.file == "" && !strings.Contains(m[1], "/src/runtime/") && !strings.Contains(m[1], "/src/testing/") {
				any = location{m[1], n}
			}
			if strings.HasSuffix(m[1], "_test.go") {
				loc = location{m[1], n}
				break
			}
		}
		if loc.file == "" {
			loc = any
		}
		f.File, f.Line = loc.file, loc.line
		f.Message = joinCapped(msg)
		return
	}

	last := -1
	for i, l := range own {
		if goTestLine.MatchString(l) {
			last = i
		}
	}
	if last < 0 {
		f.Message = joinCapped(dedent(own))
		return
	}
	m := goTestLine.FindStringSubmatch(own[last])
	f.File = m[2]
	f.Line, _ = strconv.Atoi(m[3])
	// Continuation lines of a multi-line message are indented deeper than the located line.
	cont := 0
	for _, l := range own[last+1:] {
		if indentOf(l) <= len(m[1]) || goTestLine.MatchString(l) {
			break
		}
		cont++
	}
	msg := append([]string{m[4]}, dedent(own[last+1:last+1+cont])...)
	var other []string
	for i, l := range own {
		if (i < last || i > last+cont) && goTestLine.MatchString(l) {
			other = append(other, strings.TrimSpace(l))
		}
	}
	if len(other) > 0 {
		msg = append(msg, "")
		msg = append(msg, other...)
	}
	f.Message = joinCapped(msg)
}

// goPackageEvent handles an event without a test: the package's output and its final result.
// A package that fails with no failed test failed to build, timed out or crashed outside a
// test; that is a failure of its own.
func goPackageEvent(b *builder, ev goEvent, p *goPackage, builds map[string][]string, plain []string) {
	switch ev.Action {
	case "output":
		p.out.add(strings.TrimRight(clip(ev.Output, maxLine), "\n"))
		return
	case "fail":
	default:
		return
	}
	if p.testFailed {
		return
	}
	b.r.Failed++
	buildFailed := ev.FailedBuild != ""
	for _, l := range p.out.get() {
		if strings.Contains(l, "[build failed]") || strings.Contains(l, "[setup failed]") {
			buildFailed = true
		}
	}
	if buildFailed {
		f := Failure{Name: "build " + ev.Package}
		out := builds[ev.FailedBuild]
		if out == nil {
			out = goPlainBuildOutput(plain, ev.Package)
		}
		var msg []string
		for _, l := range out {
			if strings.HasPrefix(l, "# ") {
				continue
			}
			// The first diagnostic gives the location, so its message is given without it;
			// later ones keep theirs.
			if m := goCompileLine.FindStringSubmatch(l); m != nil && f.File == "" {
				f.File = m[1]
				f.Line, _ = strconv.Atoi(m[2])
				l = m[3]
			}
			msg = append(msg, l)
		}
		if len(msg) == 0 {
			msg = []string{"build failed"}
		}
		f.Message = joinCapped(msg)
		b.addFailure(f)
		return
	}
	var msg []string
	for _, l := range p.out.get() {
		t := strings.TrimSpace(l)
		if t == "FAIL" || strings.HasPrefix(t, "FAIL\t") || strings.HasPrefix(t, "exit status ") {
			continue
		}
		msg = append(msg, l)
	}
	f := Failure{Name: ev.Package}
	goDescribe(&f, msg)
	if f.Message == "" {
		f.Message = "package failed outside any test"
	}
	b.addFailure(f)
}

// goPlainBuildOutput finds a package's compiler errors among plain-text lines: a "# pkg" header
// followed by diagnostics, as go test prints them to stderr before Go 1.24.
func goPlainBuildOutput(plain []string, pkg string) []string {
	var out []string
	in := false
	for _, l := range plain {
		if strings.HasPrefix(l, "# ") {
			name := strings.Fields(l[2:])
			in = len(name) > 0 && name[0] == pkg
			continue
		}
		if in {
			if !goCompileLine.MatchString(l) && !strings.HasPrefix(l, "\t") {
				in = false
				continue
			}
			out = append(out, l)
		}
	}
	return out
}
