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
	known := map[string]map[string]bool{}
	inReadme := map[string]bool{}
	for _, c := range claims {
		refs := secDocTestRef.FindAllStringSubmatch(c, -1)
		if len(refs) == 0 {
			t.Errorf("README.md makes a security claim without naming a test:\n  %s", c)
		}
		for _, r := range refs {
			dir := r[1]
			if dir == "" {
				dir = "integration"
			}
			if known[dir] == nil {
				known[dir] = secDocTests(t, filepath.Join(root, filepath.FromSlash(dir)))
			}
			if !known[dir][r[2]] {
				t.Errorf("README.md names %s in %s/, which has no such test or subtest:\n  %s", r[2], dir, c)
			}
			inReadme[dir+"."+r[2]] = true
		}
	}
	for _, c := range secDocSection(string(doc), "## Properties") {
		for _, r := range secDocTestRef.FindAllStringSubmatch(c, -1) {
			dir := r[1]
			if dir == "" {
				dir = "integration"
			}
			if strings.HasPrefix(r[2], "TestEscape/") && !inReadme[dir+"."+r[2]] {
				t.Errorf("docs/security.md lists the escape property %s but README.md's security section does not", r[2])
			}
		}
	}
}
