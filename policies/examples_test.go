package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples runs every policies/examples/X.json against X.cases.yaml, the same files that
// `airlock policy test` runs from the Makefile.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("want at least 6 example policies, found %d", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			p, err := Load(f)
			if err != nil {
				t.Fatalf("example does not load: %v", err)
			}
			casesPath := strings.TrimSuffix(f, ".json") + ".cases.yaml"
			if _, err := os.Stat(casesPath); err != nil {
				t.Fatalf("every example needs a cases file: %v", err)
			}
			cf, err := LoadCases(casesPath)
			if err != nil {
				t.Fatal(err)
			}
			bypasses := 0
			for _, c := range cf.Cases {
				if strings.HasPrefix(c.Name, "bypass:") {
					bypasses++
					if c.Expect == Allow {
						t.Errorf("case %q: a bypass attempt must not expect allow", c.Name)
					}
				}
			}
			if bypasses == 0 {
				t.Errorf("%s has no bypass cases (names starting with \"bypass:\")", casesPath)
			}
			for _, r := range RunCases(p, cf) {
				if r.Failure != "" {
					t.Errorf("%s: %s", r.Name, r.Failure)
				}
			}
		})
	}
}
