package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// TestDocsConfigExample keeps docs/config.md's full example a valid config.
func TestDocsConfigExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Full example")
	if !ok {
		t.Fatal("docs/config.md has no full example section")
	}
	_, block, ok := strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("docs/config.md: no yaml block in the full example")
	}
	block, _, _ = strings.Cut(block, "```")
	cfg, err := ParseConfig("docs/config.md example", []byte(block))
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	if len(cfg.Tools) != 2 || len(cfg.HTTP.Tokens) != 2 || cfg.Profiles["lint"].Image != "host" {
		t.Fatalf("example parsed to an unexpected config: %+v", cfg)
	}
}

// TestDocsBuiltinProfiles keeps the profile table in docs/config.md in step with the code.
func TestDocsBuiltinProfiles(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range builtinProfiles() {
		row := ""
		for _, line := range strings.Split(string(doc), "\n") {
			if strings.HasPrefix(line, "| `"+name+"` |") {
				row = line
			}
		}
		if row == "" {
			t.Errorf("docs/config.md: no row for built-in profile %s", name)
			continue
		}
		for _, want := range []string{"| " + p.Image + " |", " " + p.Memory + " |", " " + durationText(p.Timeout) + " |", " " + p.Tmpfs + " |"} {
			if !strings.Contains(row, want) {
				t.Errorf("docs/config.md row for %s lacks %q: %s", name, want, row)
			}
		}
	}
}

func durationText(d Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "m") || strings.HasSuffix(s, "h") {
		return s
	}
	return d.String()
}
