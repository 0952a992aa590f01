package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsCoverLanguage keeps docs/policy.md honest: every operator, section and example the
// code knows is documented.
func TestDocsCoverLanguage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "policy.md"))
	if err != nil {
		t.Fatalf("docs/policy.md: %v", err)
	}
	doc := string(b)
	for _, op := range operatorNames() {
		if !strings.Contains(doc, "`"+op+"`") {
			t.Errorf("operator %s is not documented", op)
		}
	}
	for _, s := range []string{"`default`", "`hide`", "`require`", "`deny_if`", "`limits`", "`approve_if`",
		"`increment_from`", "`grant.labels.<k>`", "`session.id`", "`/tools/<tool>/limits/<counter>`",
		"`label_if`", "`session`", "`/session/max_calls`", "`/session/max_duration`", "`--session-json",
		"`session_state`", "`expect_labels`", "`{session.tainted_by}`", "`airlock:history-full`"} {
		if !strings.Contains(doc, s) {
			t.Errorf("%s is not documented", s)
		}
	}
	for p := range sessionPaths {
		if !strings.Contains(doc, "`"+p+"`") {
			t.Errorf("path %s is not documented", p)
		}
	}
	for h := range msgHoles {
		if !strings.Contains(doc, "{"+h+"}") {
			t.Errorf("message hole {%s} is not documented", h)
		}
	}
	examples, _ := filepath.Glob(filepath.Join("examples", "*.json"))
	for _, ex := range examples {
		if !strings.Contains(doc, "policies/examples/"+filepath.Base(ex)) {
			t.Errorf("example %s is not in docs/policy.md", filepath.Base(ex))
		}
	}
}
