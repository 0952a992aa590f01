package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

var (
	fencedBlock = regexp.MustCompile("(?s)```.*?```")
	codeSpan    = regexp.MustCompile("`[^`\n]*`")
	inlineLink  = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	refLink     = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]:\s*(\S+)`)
	heading     = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)
	urlScheme   = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// TestDocLinks checks every relative link in README.md and docs/*.md: the file or directory it
// names exists inside the repository (README's policies/examples/ links once pointed one
// directory above it), and an #anchor into a Markdown file names one of its headings.
func TestDocLinks(t *testing.T) {
	root := testenv.RepoRoot(t)
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	checked := 0
	for _, file := range files {
		rel, _ := filepath.Rel(root, file)
		for _, link := range markdownLinks(t, file) {
			if urlScheme.MatchString(link) {
				continue // http:, https:, mailto:: not this test's business (and no network here)
			}
			checked++
			target, anchor, _ := strings.Cut(link, "#")
			dest := file
			if target != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(target))
			}
			if r, err := filepath.Rel(root, dest); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
				t.Errorf("%s: link %q points outside the repository (%s)", rel, link, dest)
				continue
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s: link %q: %v", rel, link, err)
				continue
			}
			if anchor != "" && strings.HasSuffix(dest, ".md") {
				if !slices.Contains(headingAnchors(t, dest), anchor) {
					t.Errorf("%s: link %q: no heading with anchor #%s in %s", rel, link, anchor, filepath.Base(dest))
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d relative links found: the link scanner is broken", checked)
	}
}

// markdownLinks returns the targets of the inline and reference links of a Markdown file,
// outside code blocks and code spans.
func markdownLinks(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := codeSpan.ReplaceAllString(fencedBlock.ReplaceAllString(string(b), ""), "")
	var out []string
	for _, re := range []*regexp.Regexp{inlineLink, refLink} {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			out = append(out, strings.Trim(m[1], "<>"))
		}
	}
	return out
}

// headingAnchors are the anchors GitHub gives a file's headings: lower case, punctuation
// other than - and _ dropped, spaces as -, repeats numbered -1, -2...
func headingAnchors(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var out []string
	for _, m := range heading.FindAllStringSubmatch(fencedBlock.ReplaceAllString(string(b), ""), -1) {
		var s strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				s.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				s.WriteRune(r)
			}
		}
		a := s.String()
		if n := seen[a]; n > 0 {
			out = append(out, a+"-"+strconv.Itoa(n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}
