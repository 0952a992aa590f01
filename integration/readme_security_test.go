package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// TestReadmeSecurityClaimsAreTested holds the README's security section to the same rule as
// docs/security.md: every claim names a test that exists, and every escape property the
// document lists (each one a test that tries to break it) appears in the README too, so the
// README can neither claim an untested property nor quietly drop a tested one.
func TestReadmeSecurityClaimsAreTested(t *testing.T) {
	root := testenv.RepoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	claims := secDocSection(string(readme), "## Security model")
	if len(claims) < 20 {
		t.Fatalf("README.md lists %d claims under '## Security model'; expected the full list", len(claims))
	}
	inReadme := checkTestRefs(t, root, "README.md", claims)
	for _, c := range secDocSection(string(doc), "## Properties") {
		for _, r := range secDocTestRef.FindAllStringSubmatch(c, -1) {
			if strings.HasPrefix(r[2], "TestEscape/") && !inReadme[secDocRefDir(r)+"."+r[2]] {
				t.Errorf("docs/security.md lists the escape property %s but README.md's security section does not", r[2])
			}
		}
	}
}
