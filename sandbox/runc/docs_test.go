package runc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// TestDocsMatchCode keeps docs/sandbox.md honest: every masked and read-only path the code sets
// is listed, and every test the document cites for a property exists (TestEscape cases are
// checked by the security model's own test).
func TestDocsMatchCode(t *testing.T) {
	root := testenv.RepoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "sandbox.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(oci.MaskedPaths(), oci.ReadonlyPaths()...) {
		if !strings.Contains(string(doc), "`"+p+"`") {
			t.Errorf("docs/sandbox.md does not list %s", p)
		}
	}
	funcs := map[string]bool{}
	cases := map[string]bool{} // string literals as `go test` names subtests (spaces -> _)
	for _, dir := range []string{filepath.Join(root, "sandbox"), filepath.Join(root, "sandbox", "oci"), filepath.Join(root, "sandbox", "runc")} {
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil {
						cases[strings.ReplaceAll(v, " ", "_")] = true
					}
				}
				return true
			})
			for _, d := range af.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
					funcs[fd.Name.Name] = true
				}
			}
		}
	}
	cited := regexp.MustCompile("`((?:[a-z]+\\.)?Test[A-Za-z]+)(/[^`]+)?`").FindAllStringSubmatch(string(doc), -1)
	if len(cited) < 20 {
		t.Fatalf("found only %d cited tests in docs/sandbox.md; the pattern no longer matches the document", len(cited))
	}
	for _, m := range cited {
		name := strings.TrimPrefix(m[1], "sandbox.")
		if name == "TestEscape" {
			continue
		}
		if !funcs[name] {
			t.Errorf("docs/sandbox.md cites %s, which does not exist", m[0])
			continue
		}
		if sub := strings.TrimPrefix(m[2], "/"); sub != "" && !cases[sub] {
			t.Errorf("docs/sandbox.md cites %s, but no case named %s exists", m[0], sub)
		}
	}
}
