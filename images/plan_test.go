package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCompareWalkOrder(t *testing.T) {
	cases := []struct {
		name string
		in   []string
		want []string
	}{
		{"root first", []string{"/a", "/"}, []string{"/", "/a"}},
		{"children before a sibling with a smaller byte", []string{"/a-c", "/a/b", "/a"}, []string{"/a", "/a/b", "/a-c"}},
		{"lexical within a directory", []string{"/usr/bin/[[", "/usr/bin/[", "/usr/bin/awk"}, []string{"/usr/bin/[", "/usr/bin/[[", "/usr/bin/awk"}},
		{"dot names", []string{"/bin", "/.airlock/bin", "/.airlock"}, []string{"/.airlock", "/.airlock/bin", "/bin"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := slices.Clone(c.in)
			slices.SortFunc(got, compareWalkOrder)
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// The ID computed from a plan is the ID of the tree it materializes, including names whose
// plan order differs from a plain string sort ("a-c" vs "a/b").
func TestPlanDigestMatchesTree(t *testing.T) {
	p := newPlan()
	steps := []error{
		p.dir("/a", 0o750),
		p.file("/a/b", []byte("x"), 0o644),
		p.file("/a-c", nil, 0o600),
		p.symlink("/deep/er/link", "../../a/b"),
		p.dir("/tmp", 0o777|os.ModeSticky),
		p.copyFile("/tb", toolboxV1, 0o755),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want, err := digestPlan(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := p.materialize(root); err != nil {
		t.Fatal(err)
	}
	got, err := digestTree(root, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("tree hashes to %s, plan to %s", got, want)
	}
}

func TestPlanRejects(t *testing.T) {
	cases := []struct {
		name    string
		run     func(p *plan) error
		message string
	}{
		{"empty path", func(p *plan) error { return p.dir("/", 0o755) }, "invalid path"},
		{"NUL in path", func(p *plan) error { return p.file("/a\x00b", nil, 0o644) }, "invalid path"},
		{"file twice", func(p *plan) error {
			p.file("/a", nil, 0o644)
			return p.file("/a", nil, 0o644)
		}, "planned twice"},
		{"under a file", func(p *plan) error {
			p.file("/a", nil, 0o644)
			return p.file("/a/b", nil, 0o644)
		}, "not a directory"},
		{"copy of a directory", func(p *plan) error { return p.copyFile("/x", t.TempDir(), 0o644) }, "not a regular file"},
		{"empty link", func(p *plan) error { return p.symlink("/x", "") }, "invalid symlink target"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.run(newPlan())
			if err == nil || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("got %v, want an error containing %q", err, c.message)
			}
		})
	}
}
