package testreport

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	if name == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("fixture %s: %v (see testdata/README.md to regenerate)", name, err)
	}
	return data
}

// Messages shared by fixtures of the same run.
const (
	pyNegMsg   = "assert -3 == 1\n +  where -3 = add(-1, 2)"
	pyTableMsg = "assert 1 == -5\n +  where 1 = add(-2, -3)"
	jestNegMsg = "expect(received).toBe(expected) // Object.is equality\n\nExpected: 1\nReceived: -3"
)

var goCalcFailures = []Failure{
	{Name: "example.com/fx/calc.TestAddNegative", File: "calc_test.go", Line: 14,
		Message: "Add(-1, 2) = -3, want 1\n\ncalc_test.go:12: checking negatives"},
	{Name: "example.com/fx/calc.TestTable/neg", File: "calc_test.go", Line: 30, Message: "got 1, want -5"},
}

var goBuildFailure = Failure{Name: "build example.com/fx/broken", File: "broken/broken_test.go", Line: 6,
	Message: "cannot use Double(2) (value of type int) as string value in variable declaration"}

var pytestFailures = []Failure{
	{Name: "tests/test_calc.py::test_add_negative", File: "tests/test_calc.py", Line: 15, Message: pyNegMsg},
	{Name: "tests/test_calc.py::test_divide", File: "tests/test_calc.py", Line: 24, Message: "ValueError: cannot divide by zero"},
	{Name: "tests/test_calc.py::test_table[-2--3--5]", File: "tests/test_calc.py", Line: 29, Message: pyTableMsg},
	{Name: "tests/test_calc.py::test_uses_db", File: "tests/test_calc.py", Line: 34, Message: "RuntimeError: no database"},
}

var jestFailures = []Failure{
	{Name: "add › adds negatives", File: "src/calc.test.js", Line: 9, Message: jestNegMsg},
	{Name: "divides by zero", File: "src/calc.test.js", Line: 18, Message: "cannot divide by zero"},
}

// TestParseFixtures runs Parse on real output of each runner, generated as testdata/README.md
// describes, and checks the whole report: counts, and each failure's name, file, line and
// message.
func TestParseFixtures(t *testing.T) {
	cases := []struct {
		name           string
		stdout, stderr string            // fixture names
		files          map[string]string // report path -> fixture name
		want           Report
	}{
		{
			name:   "go test -json: pass, fail with t.Log before t.Error, skip, failing table row",
			stdout: "go-test-json.stdout",
			want:   Report{Format: FormatGoTestJSON, Passed: 2, Failed: 2, Skipped: 1, Failures: goCalcFailures},
		},
		{
			name:   "go test -json ./...: compile error as build-output events (Go 1.24+)",
			stdout: "go-build-fail.stdout",
			want: Report{Format: FormatGoTestJSON, Passed: 2, Failed: 3, Skipped: 1,
				Failures: append([]Failure{goBuildFailure}, goCalcFailures...)},
		},
		{
			name:   "go test -json ./...: compile error as text on stderr (GODEBUG=gotestjsonbuildtext=1, older Go)",
			stdout: "go-build-text.stdout",
			stderr: "go-build-text.stderr",
			want: Report{Format: FormatGoTestJSON, Passed: 2, Failed: 3, Skipped: 1,
				Failures: append([]Failure{goBuildFailure}, goCalcFailures...)},
		},
		{
			name:   "go test -json: a test panics",
			stdout: "go-panic.stdout",
			want: Report{Format: FormatGoTestJSON, Failed: 1, Failures: []Failure{{
				Name: "example.com/fx/crash.TestIndex", File: "/tmp/fx/gofx/crash/crash_test.go", Line: 7,
				Message: "panic: runtime error: index out of range [3] with length 0 [recovered, repanicked]"}}},
		},
		{
			name:   "pytest default output with a fixture error",
			stdout: "pytest-default.stdout",
			want:   Report{Format: FormatPytest, Passed: 2, Failed: 4, Skipped: 1, Failures: pytestFailures},
		},
		{
			name:   "pytest -q",
			stdout: "pytest-q.stdout",
			want:   Report{Format: FormatPytest, Passed: 2, Failed: 4, Skipped: 1, Failures: pytestFailures},
		},
		{
			name:   "pytest -rA lists ERROR before FAILED",
			stdout: "pytest-rA.stdout",
			want: Report{Format: FormatPytest, Passed: 2, Failed: 4, Skipped: 1,
				Failures: append([]Failure{pytestFailures[3]}, pytestFailures[:3]...)},
		},
		{
			name:   "pytest --junitxml: the terminal output wins over the report file",
			stdout: "pytest-junit.stdout",
			files:  map[string]string{"report.xml": "pytest-junit.xml"},
			want:   Report{Format: FormatPytest, Passed: 2, Failed: 4, Skipped: 1, Failures: pytestFailures},
		},
		{
			name:  "JUnit file written by pytest",
			files: map[string]string{"report.xml": "pytest-junit.xml"},
			want: Report{Format: FormatJUnit, Passed: 2, Failed: 4, Skipped: 1, Failures: []Failure{
				{Name: "tests.test_calc.test_add_negative", File: "tests/test_calc.py", Line: 15, Message: pyNegMsg},
				{Name: "tests.test_calc.test_divide", File: "tests/test_calc.py", Line: 24, Message: "ValueError: cannot divide by zero"},
				{Name: "tests.test_calc.test_table[-2--3--5]", File: "tests/test_calc.py", Line: 29, Message: pyTableMsg},
				{Name: "tests.test_calc.test_uses_db", File: "tests/test_calc.py", Line: 34,
					Message: `failed on setup with "RuntimeError: no database"`},
			}},
		},
		{
			name:  "JUnit file written by node --test (nested suite, todo that fails counts as skipped)",
			files: map[string]string{"junit.xml": "node-junit.xml"},
			want: Report{Format: FormatJUnit, Passed: 2, Failed: 2, Skipped: 2, Failures: []Failure{
				{Name: "test.adds negatives", File: "/tmp/fx/tapfx/test/calc.test.mjs", Line: 14,
					Message: "Expected values to be strictly equal:-3 !== 1"},
				{Name: "test.neg", File: "/tmp/fx/tapfx/test/calc.test.mjs", Line: 30,
					Message: "Expected values to be strictly equal:1 !== -5"},
			}},
		},
		{
			name:   "JUnit printed on stdout after other output",
			stdout: "pytest-junit.xml",
			want: Report{Format: FormatJUnit, Passed: 2, Failed: 4, Skipped: 1, Failures: []Failure{
				{Name: "tests.test_calc.test_add_negative", File: "tests/test_calc.py", Line: 15, Message: pyNegMsg},
				{Name: "tests.test_calc.test_divide", File: "tests/test_calc.py", Line: 24, Message: "ValueError: cannot divide by zero"},
				{Name: "tests.test_calc.test_table[-2--3--5]", File: "tests/test_calc.py", Line: 29, Message: pyTableMsg},
				{Name: "tests.test_calc.test_uses_db", File: "tests/test_calc.py", Line: 34,
					Message: `failed on setup with "RuntimeError: no database"`},
			}},
		},
		{
			name:   "TAP from node --test: nested subtests, SKIP, TODO, YAML diagnostics",
			stdout: "tap-node.stdout",
			want: Report{Format: FormatTAP, Passed: 2, Failed: 2, Skipped: 2, Failures: []Failure{
				{Name: "adds negatives", File: "/tmp/fx/tapfx/test/calc.test.mjs", Line: 14,
					Message: "Expected values to be strictly equal:\n\n-3 !== 1"},
				{Name: "table > neg", File: "/tmp/fx/tapfx/test/calc.test.mjs", Line: 30,
					Message: "Expected values to be strictly equal:\n\n1 !== -5"},
			}},
		},
		{
			name:   "jest default reporter, two test files",
			stderr: "jest-default.stderr",
			want:   Report{Format: FormatJest, Passed: 2, Failed: 2, Skipped: 1, Failures: jestFailures},
		},
		{
			name:   "jest --verbose with ✓/✕ lines and coloured code frames",
			stderr: "jest-verbose.stderr",
			want:   Report{Format: FormatJest, Passed: 2, Failed: 2, Skipped: 1, Failures: jestFailures},
		},
		{
			name:   "jest with a test file that fails to run",
			stderr: "jest-suite-error.stderr",
			want: Report{Format: FormatJest, Passed: 2, Failed: 3, Skipped: 1, Failures: append(append([]Failure{}, jestFailures...),
				Failure{Name: "src/broken.test.js: test suite failed to run", File: "src/broken.test.js", Line: 1,
					Message: "Cannot find module './missing' from 'src/broken.test.js'"})},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr := readFixture(t, tc.stdout), readFixture(t, tc.stderr)
			if tc.name == "JUnit printed on stdout after other output" {
				stdout = append([]byte("collected 7 items\nwriting report\n"), stdout...)
			}
			var files map[string][]byte
			for path, name := range tc.files {
				if files == nil {
					files = map[string][]byte{}
				}
				files[path] = readFixture(t, name)
			}
			got, ok := Parse(stdout, stderr, files)
			if !ok {
				t.Fatalf("Parse: ok=false, want a %s report", tc.want.Format)
			}
			checkReport(t, got, &tc.want)

			// The same output surrounded by unrelated lines parses the same.
			noisy := func(b []byte) []byte {
				if b == nil {
					return nil
				}
				return []byte("npm warn deprecated glob@7\n\x1b[2K\r" + string(b) + "\nmake: *** [Makefile:2: test] Error 1\n")
			}
			got, ok = Parse(noisy(stdout), noisy(stderr), files)
			if !ok {
				t.Fatalf("Parse with noise: ok=false")
			}
			checkReport(t, got, &tc.want)
		})
	}
}

func checkReport(t *testing.T, got, want *Report) {
	t.Helper()
	if got.Format != want.Format || got.Passed != want.Passed || got.Failed != want.Failed ||
		got.Skipped != want.Skipped || got.FailuresTruncated != want.FailuresTruncated {
		t.Errorf("got %s %d passed, %d failed, %d skipped, truncated=%v; want %s %d/%d/%d truncated=%v",
			got.Format, got.Passed, got.Failed, got.Skipped, got.FailuresTruncated,
			want.Format, want.Passed, want.Failed, want.Skipped, want.FailuresTruncated)
	}
	if len(got.Failures) != len(want.Failures) {
		t.Errorf("got %d failures, want %d:\n%s", len(got.Failures), len(want.Failures), got.Summary())
	}
	for i := 0; i < len(got.Failures) && i < len(want.Failures); i++ {
		if !reflect.DeepEqual(got.Failures[i], want.Failures[i]) {
			t.Errorf("failure %d:\n got %#v\nwant %#v", i, got.Failures[i], want.Failures[i])
		}
	}
}

// TestParseNotATestRun: output that no runner printed is not a report, so run_tests falls
// back to the raw output instead of claiming "0 passed, 0 failed".
func TestParseNotATestRun(t *testing.T) {
	cases := map[string][2][]byte{
		"make failure":    {nil, readFixture(t, "make-fail.stderr")},
		"empty":           {nil, nil},
		"shell error":     {nil, []byte("sh: 1: pytest: not found\n")},
		"JSON not events": {[]byte(`{"level":"info","msg":"started"}` + "\n"), nil},
		"ok in prose":     {[]byte("ok 1 thing done\nall good\n"), nil},
		"html":            {[]byte("<html><body>testsuite</body></html>"), nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if r, ok := Parse(c[0], c[1], map[string][]byte{"notes.xml": []byte("<notes/>")}); ok {
				t.Fatalf("Parse: ok=true, want false; got %+v", r)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	r, ok := Parse(readFixture(t, "go-build-fail.stdout"), nil, nil)
	if !ok {
		t.Fatal("Parse: ok=false")
	}
	want := `2 passed, 3 failed, 1 skipped
FAIL build example.com/fx/broken (broken/broken_test.go:6): cannot use Double(2) (value of type int) as string value in variable declaration
FAIL example.com/fx/calc.TestAddNegative (calc_test.go:14): Add(-1, 2) = -3, want 1
    calc_test.go:12: checking negatives
FAIL example.com/fx/calc.TestTable/neg (calc_test.go:30): got 1, want -5`
	if got := r.Summary(); got != want {
		t.Errorf("Summary:\n%s\nwant:\n%s", got, want)
	}
	if got := (&Report{Format: FormatTAP, Passed: 3}).Summary(); got != "3 passed, 0 failed, 0 skipped" {
		t.Errorf("Summary of a green run = %q", got)
	}
}

// goFailingEvents writes test2json events for n failing tests, each printing lines lines of
// output of width bytes.
func goFailingEvents(n, lines, width int) []byte {
	filler := strings.Repeat("x", width)
	b := make([]byte, 0, n*lines*(width+100))
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("TestN%d", i)
		b = fmt.Appendf(b, `{"Action":"run","Package":"p","Test":%q}`+"\n", name)
		for j := 0; j < lines; j++ {
			b = fmt.Appendf(b, `{"Action":"output","Package":"p","Test":%q,"Output":"    n_test.go:%d: %s\n"}`+"\n",
				name, j+1, filler)
		}
		b = fmt.Appendf(b, `{"Action":"fail","Package":"p","Test":%q}`+"\n", name)
	}
	return append(b, `{"Action":"fail","Package":"p"}`+"\n"...)
}

func TestFailuresCapped(t *testing.T) {
	r, ok := Parse(goFailingEvents(MaxFailures+10, 1, 10), nil, nil)
	if !ok {
		t.Fatal("Parse: ok=false")
	}
	if r.Failed != MaxFailures+10 || len(r.Failures) != MaxFailures || !r.FailuresTruncated {
		t.Fatalf("failed=%d listed=%d truncated=%v; want %d, %d, true", r.Failed, len(r.Failures), r.FailuresTruncated, MaxFailures+10, MaxFailures)
	}
	if r.Failures[0].Name != "p.TestN0" || r.Failures[MaxFailures-1].Name != fmt.Sprintf("p.TestN%d", MaxFailures-1) {
		t.Errorf("failures not in order: first %q, last %q", r.Failures[0].Name, r.Failures[MaxFailures-1].Name)
	}
	if s := r.Summary(); !strings.HasSuffix(s, "\n… 10 more failures not listed") {
		t.Errorf("Summary does not say failures were left out:\n%s", s)
	}
}

// TestLargeOutputBounded: a test that prints megabytes yields a capped message, quickly.
func TestLargeOutputBounded(t *testing.T) {
	in := goFailingEvents(3, 2000, 2000) // 12 MB of events
	start := time.Now()
	r, ok := Parse(in, nil, nil)
	if !ok || r.Failed != 3 {
		t.Fatalf("Parse: ok=%v failed=%d", ok, r.Failed)
	}
	for _, f := range r.Failures {
		if len(f.Message) > MaxMessage {
			t.Errorf("message of %d bytes, cap is %d", len(f.Message), MaxMessage)
		}
		if f.Line != 2000 {
			t.Errorf("location line %d, want the last located line 2000", f.Line)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

// TestTAPDiagnostics covers TAP producers other than Node (tape, node-tap): hand-written,
// since no such producer is installed here.
func TestTAPDiagnostics(t *testing.T) {
	in := `TAP version 14
1..4
ok 1 - first
not ok 2 - compares # with a hash \# in the name
  ---
  message: "should be equal"
  at:
    file: test/a.js
    line: 7
    column: 3
  ...
not ok 3 - tape style
  ---
    operator: equal
    message: 'values differ'
    at: Test.<anonymous> (/src/test/b.js:12:5)
  ...
ok 4 - later # skip not on this platform
Bail out! database unreachable
`
	r, ok := Parse([]byte(in), nil, nil)
	if !ok {
		t.Fatal("Parse: ok=false")
	}
	want := &Report{Format: FormatTAP, Passed: 1, Failed: 3, Skipped: 1, Failures: []Failure{
		{Name: "compares # with a hash # in the name", File: "test/a.js", Line: 7, Message: "should be equal"},
		{Name: "tape style", File: "/src/test/b.js", Line: 12, Message: "values differ"},
		{Name: "Bail out!", Message: "database unreachable"},
	}}
	checkReport(t, r, want)
}

// TestFieldsCleaned: names and messages reach the agent without terminal escapes or control
// bytes and as valid UTF-8.
func TestFieldsCleaned(t *testing.T) {
	in := "{\"Action\":\"run\",\"Package\":\"p\",\"Test\":\"TestX\"}\n" +
		"{\"Action\":\"output\",\"Package\":\"p\",\"Test\":\"TestX\",\"Output\":\"    x_test.go:3: \\u001b[31mred\\u001b[0m \\u0007bell \\ufffd\\n\"}\n" +
		"{\"Action\":\"fail\",\"Package\":\"p\",\"Test\":\"TestX\"}\n"
	r, ok := Parse([]byte(in), nil, nil)
	if !ok || len(r.Failures) != 1 {
		t.Fatalf("Parse: ok=%v, %+v", ok, r)
	}
	if got := r.Failures[0].Message; got != "red bell \ufffd" {
		t.Errorf("message %q, want %q", got, "red bell \ufffd")
	}
}

func checkInvariants(t *testing.T, r *Report) {
	t.Helper()
	if r.Passed < 0 || r.Failed < 0 || r.Skipped < 0 {
		t.Fatalf("negative count: %+v", r)
	}
	if len(r.Failures) > MaxFailures {
		t.Fatalf("%d failures listed, cap is %d", len(r.Failures), MaxFailures)
	}
	if r.Failed < len(r.Failures) {
		t.Fatalf("failed=%d < %d listed", r.Failed, len(r.Failures))
	}
	for _, f := range r.Failures {
		if len(f.Message) > MaxMessage || len(f.Name) > maxName || len(f.File) > maxName {
			t.Fatalf("field over its cap: name %d, file %d, message %d bytes", len(f.Name), len(f.File), len(f.Message))
		}
		for _, s := range []string{f.Name, f.File, f.Message} {
			if !utf8.ValidString(s) || strings.ContainsAny(s, "\x1b\x00\r") {
				t.Fatalf("field not cleaned: %q", s)
			}
		}
	}
}
