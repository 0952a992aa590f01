package testreport

import (
	"bytes"
	"encoding/xml"
	"io"
	"regexp"
	"strconv"
	"strings"
)

const (
	// junitMaxBody caps the text kept from one <failure>/<error> element.
	junitMaxBody = 8 * 1024
	// junitMaxTokens bounds the XML tokens read from one document.
	junitMaxTokens = 4 << 20
)

// pytestLocLine is pytest's traceback location line: "tests/test_calc.py:15: AssertionError".
var pytestLocLine = regexp.MustCompile(`(?m)^(\S+?\.\w+):(\d+): (\S.*)$`)

// parseJUnitText finds a JUnit XML document printed on stdout (some runners print their report
// there); anything before the first <testsuite(s)> element is ignored.
func parseJUnitText(in []byte) (*Report, bool) {
	i := bytes.Index(in, []byte("<testsuite"))
	if i < 0 {
		return nil, false
	}
	b := newBuilder(FormatJUnit)
	if !junitDecode(b, in[i:]) {
		return nil, false
	}
	return b.report(), true
}

// parseJUnitFiles merges every JUnit XML document among files, in path order.
func parseJUnitFiles(files map[string][]byte) (*Report, bool) {
	b := newBuilder(FormatJUnit)
	found := false
	for _, name := range sortedKeys(files) {
		data := files[name]
		i := bytes.Index(data, []byte("<testsuite"))
		if i < 0 {
			continue
		}
		if junitDecode(b, data[i:]) {
			found = true
		}
	}
	if !found {
		return nil, false
	}
	return b.report(), true
}

// junitCase is the testcase being read.
type junitCase struct {
	name, classname string
	file            string
	line            int
	failed, skipped bool
	message         string
	body            strings.Builder
}

// junitDecode streams one document into b and reports whether it held a test case or a suite.
// Malformed XML ends the document; what was read before the error still counts. The streaming
// decoder holds one element at a time, so a large report costs no more than its largest failure
// text, which is capped.
func junitDecode(b *builder, data []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = false
	// Reports declaring another encoding are read as they are: names and messages are what
	// matter, and a lossy character beats refusing the report.
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	var c *junitCase
	inBody := false
	seen := false
	for n := 0; n < junitMaxTokens; n++ {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "testsuite", "testsuites":
				seen = true
			case "testcase":
				seen = true
				c = &junitCase{}
				for _, a := range t.Attr {
					switch a.Name.Local {
					case "name":
						c.name = clip(a.Value, maxName)
					case "classname":
						c.classname = clip(a.Value, maxName)
					case "file":
						c.file = clip(a.Value, maxName)
					case "line":
						c.line, _ = strconv.Atoi(a.Value)
					}
				}
			case "failure", "error":
				if c == nil {
					continue
				}
				c.failed = true
				inBody = true
				if c.message == "" {
					c.message = clip(junitAttr(t, "message"), MaxMessage)
				}
			case "skipped":
				if c != nil {
					c.skipped = true
				}
			}
		case xml.CharData:
			if inBody && c != nil && c.body.Len() < junitMaxBody {
				c.body.Write(t[:min(len(t), junitMaxBody-c.body.Len())])
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "failure", "error":
				inBody = false
			case "testcase":
				if c != nil {
					junitFinish(b, c)
				}
				c = nil
				inBody = false
			}
		}
	}
	return seen
}

func junitAttr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// junitFinish counts a test case. A case marked both skipped and failed is a to-do test that
// failed as expected (Node's reporter writes it so), and counts as skipped.
func junitFinish(b *builder, c *junitCase) {
	switch {
	case c.skipped:
		b.r.Skipped++
		return
	case !c.failed:
		b.r.Passed++
		return
	}
	b.r.Failed++
	f := Failure{Name: c.name, File: c.file, Line: c.line}
	if c.classname != "" && !strings.HasPrefix(c.name, c.classname) {
		f.Name = c.classname + "." + c.name
	}
	body := c.body.String()
	if f.File == "" {
		if loc, ok := junitLocation(body + "\n" + c.message); ok {
			f.File, f.Line = loc.file, loc.line
		}
	}
	f.Message = strings.TrimSpace(c.message)
	if f.Message == "" {
		f.Message = joinCapped(dedent(strings.Split(strings.TrimSpace(body), "\n")))
	}
	b.addFailure(f)
}

// junitLocation finds where a failure happened in its text: pytest's "path:line: Error" line
// (the last one, where the exception surfaced), else the first stack frame outside
// dependencies.
func junitLocation(text string) (location, bool) {
	if ms := pytestLocLine.FindAllStringSubmatch(text, -1); len(ms) > 0 {
		m := ms[len(ms)-1]
		if n, err := strconv.Atoi(m[2]); err == nil && n > 0 {
			return location{file: m[1], line: n}, true
		}
	}
	return pickFrame(frames(text, 64), "")
}
