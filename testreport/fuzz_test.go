package testreport

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary output to Parse as stdout, stderr and a report file. Parse must
// not panic, and any report it returns must respect its caps and be clean text.
func FuzzParse(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte(nil))
		f.Add([]byte(nil), data)
	}
	f.Add([]byte("TAP version 13\n  ---\n  at:\n    file: x\n"), []byte("<testsuite><testcase><failure>"))
	f.Fuzz(func(t *testing.T, stdout, stderr []byte) {
		r, ok := Parse(stdout, stderr, map[string][]byte{"a.xml": stdout, "b.xml": stderr})
		if !ok {
			if r != nil {
				t.Fatal("ok=false with a report")
			}
			return
		}
		checkInvariants(t, r)
		_ = r.Summary()
	})
}
