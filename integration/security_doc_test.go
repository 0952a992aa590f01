package integration

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// secDocTestRef matches a test named in docs/security.md: `TestEscape/NoNetwork` (a test in
// integration/) or `sandbox/runc.TestOCIConfig` (a test in another package directory).
var secDocTestRef = regexp.MustCompile("`(?:([a-z0-9_/]+)\\.)?(Test[A-Za-z0-9_]*(?:/[A-Za-z0-9_.-]+)*)`")

// TestSecurityDocClaimsAreTested fails when docs/security.md claims a property without naming
// a test, names a test (or subtest) that does not exist, or when an escape case exists that the
// document does not list. The README's security section is built from that document, so
// nothing can be claimed there that no test attacks.
func TestSecurityDocClaimsAreTested(t *testing.T) {
	root := testenv.RepoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatalf("docs/security.md: %v", err)
	}
	claims := secDocSection(string(doc), "## Properties")
	gaps := secDocSection(string(doc), "## Known gaps")
	if len(claims) < 10 {
		t.Fatalf("docs/security.md lists %d properties under '## Properties'; expected the full list", len(claims))
	}
	for _, c := range claims {
		if strings.Contains(c, "/KnownGap") {
			t.Errorf("a known gap is listed as a property:\n  %s", c)
		}
	}

	named := checkTestRefs(t, root, "docs/security.md", append(slices.Clone(claims), gaps...))

	// The other direction: every escape case is documented, known gaps under their heading.
	for name := range secDocTests(t, filepath.Join(root, "integration")) {
		if strings.HasPrefix(name, "TestEscape/") && !named["integration."+name] {
			t.Errorf("escape case %s is not listed in docs/security.md", name)
		}
		if strings.HasPrefix(name, "TestEscape/KnownGap") &&
			!slices.ContainsFunc(gaps, func(g string) bool { return strings.Contains(g, "`"+name+"`") }) {
			t.Errorf("known gap %s is not listed under '## Known gaps' in docs/security.md", name)
		}
	}
}

// checkTestRefs checks that every claim names at least one test and that each named test (or
// t.Run subtest with that literal name) exists; it returns the references as "dir.TestName".
func checkTestRefs(t *testing.T, root, file string, claims []string) map[string]bool {
	t.Helper()
	known := map[string]map[string]bool{} // package dir -> test names (with subtests)
	named := map[string]bool{}
	for _, c := range claims {
		refs := secDocTestRef.FindAllStringSubmatch(c, -1)
		if len(refs) == 0 {
			t.Errorf("%s makes a claim without naming a test:\n  %s", file, c)
		}
		for _, r := range refs {
			dir := secDocRefDir(r)
			if known[dir] == nil {
				known[dir] = secDocTests(t, filepath.Join(root, filepath.FromSlash(dir)))
			}
			named[dir+"."+r[2]] = true
			if !known[dir][r[2]] {
				t.Errorf("%s names %s in %s/, which has no such test or subtest (t.Run with that literal name):\n  %s", file, r[2], dir, c)
			}
		}
	}
	return named
}

// secDocRefDir is the package directory of a secDocTestRef match; bare names are integration's.
func secDocRefDir(m []string) string {
	if m[1] == "" {
		return "integration"
	}
	return m[1]
}

// secDocSection returns the list items of the section under heading, one string per item
// (continuation lines joined).
func secDocSection(doc, heading string) []string {
	var claims []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			in = strings.TrimSpace(line) == heading
		case !in:
		case strings.HasPrefix(line, "- "):
			claims = append(claims, strings.TrimPrefix(line, "- "))
		case strings.HasPrefix(line, "  ") && len(claims) > 0 && strings.TrimSpace(line) != "":
			claims[len(claims)-1] += " " + strings.TrimSpace(line)
		}
	}
	return claims
}

// secDocTests lists the Test functions of the _test.go files in dir, and for each the
// subtests it starts with t.Run("Literal", ...), as "TestX/Literal" (those of testX, the
// per-backend body of TestX declared before it in the same file, count as TestX's).
func secDocTests(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s (%v)", dir, err)
	}
	tests := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", f, err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			name := fn.Name.Name
			if fn.Recv != nil && name == "runCases" {
				// The escape suite's cases, which TestEscape runs once per backend
				// (TestEscape/<backend>/<case>): README names them TestEscape/<case>.
				name = "TestEscape"
			} else if rest, ok := strings.CutPrefix(name, "test"); ok && fn.Recv == nil && rest != "" && tests["Test"+rest] {
				// testX holds the cases TestX runs once per backend (TestX/<backend>/<case>):
				// the docs name them TestX/<case>.
				name = "Test" + rest
			} else if fn.Recv != nil || !strings.HasPrefix(name, "Test") {
				continue
			}
			tests[name] = true
			fnName := name
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) < 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Run" {
					return true
				}
				if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if name, err := strconv.Unquote(lit.Value); err == nil {
						tests[fnName+"/"+strings.ReplaceAll(name, " ", "_")] = true
					}
				}
				return true
			})
		}
	}
	return tests
}

func TestSecDocParsers(t *testing.T) {
	doc := "# x\n- not a claim\n## Properties\n- one `TestA/B`\n  continued `sandbox/runc.TestC`\n- two\n## Other\n- three\n"
	claims := secDocSection(doc, "## Properties")
	if want := []string{"one `TestA/B` continued `sandbox/runc.TestC`", "two"}; !slices.Equal(claims, want) {
		t.Errorf("claims = %q, want %q", claims, want)
	}
	refs := secDocTestRef.FindAllStringSubmatch(claims[0], -1)
	if len(refs) != 2 || refs[0][1] != "" || refs[0][2] != "TestA/B" || refs[1][1] != "sandbox/runc" || refs[1][2] != "TestC" {
		t.Errorf("refs = %q", refs)
	}
}
