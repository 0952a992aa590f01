package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/runc"
)

// docsConfigExample is the YAML of docs/config.md's full example, verbatim.
func docsConfigExample(t *testing.T) string {
	t.Helper()
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
	return block
}

// TestDocsConfigExample keeps docs/config.md's full example a valid config.
func TestDocsConfigExample(t *testing.T) {
	cfg, err := ParseConfig("docs/config.md example", []byte(docsConfigExample(t)))
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	if len(cfg.Tools) != 2 || len(cfg.HTTP.Tokens) != 2 || cfg.Profiles["lint"].Image != "host" {
		t.Fatalf("example parsed to an unexpected config: %+v", cfg)
	}
	// Every other yaml block of the page is a config too, and must load as written.
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("docs/config.md has %d yaml blocks, want the full example and the replaces example", len(blocks))
	}
	for i, b := range blocks {
		b, _, _ = strings.Cut(b, "```")
		if _, err := ParseConfig(fmt.Sprintf("docs/config.md yaml block %d", i+1), []byte(b)); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// TestDocsConfigExampleWorks loads docs/config.md's full example as a file, resolves it and
// builds its tools, then runs its lint profile in a real sandbox: the documented mount must
// reach its target and the documented environment must be the command's. Only the host
// paths of mount sources are replaced (by a directory holding a marker file), because the
// documented one need not exist on this machine.
func TestDocsConfigExampleWorks(t *testing.T) {
	example := docsConfigExample(t)
	dir := t.TempDir()
	cfg0, err := ParseConfig("example", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]string{} // mount target -> marker file name
	for _, p := range cfg0.Profiles {
		for i, m := range p.Mounts {
			src := filepath.Join(dir, fmt.Sprintf("mount%d", i))
			marker := fmt.Sprintf("airlock-docs-marker-%d", i)
			mustWrite(t, filepath.Join(src, marker), "x")
			example = strings.Replace(example, "source: "+m.Source+",", "source: "+src+",", 1)
			targets[m.Target] = marker
		}
	}
	if len(targets) == 0 {
		t.Fatal("the example has no mount; this test expects the documented lint mount")
	}
	project := filepath.Join(dir, "project")
	file := filepath.Join(project, "airlock.yaml")
	mustWrite(t, file, example)
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(Overrides{StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatalf("resolving the documented example: %v", err)
	}
	if cfg.Workspace != realPath(project) {
		t.Fatalf("workspace . resolved to %s, want the config's directory %s", cfg.Workspace, project)
	}
	tools, err := BuildTools(cfg)
	if err != nil {
		t.Fatalf("building the documented example's tools: %v", err)
	}
	var vet *Tool
	for _, tl := range tools {
		if tl.Name() == "go_vet" {
			vet = tl
		}
	}
	if vet == nil {
		t.Fatal("the example serves no go_vet tool")
	}
	opts, err := vet.Plan(context.Background(), map[string]any{"package": "./..."})
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	for target, marker := range targets {
		fmt.Fprintf(&script, "test -f %s/%s || { echo missing mount %s; exit 1; }\n", target, marker, target)
	}
	script.WriteString(`echo "GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE GOFLAGS=$GOFLAGS"` + "\n")
	// The documented profile's command, with argv swapped for the check above: go vet itself
	// would spend half a minute building the standard library into an empty cache.
	spec, err := sandbox.New(append(opts, sandbox.WithArgv("/bin/sh", "-c", script.String()))...)
	if err != nil {
		t.Fatal(err)
	}
	backend := realBackend(t)
	res, err := backend.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("the documented lint profile does not run: %v", err)
	}
	out := string(res.Stdout) + string(res.Stderr)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, out)
	}
	for _, e := range cfg.Profiles["lint"].Env {
		if !strings.Contains(out, e) {
			t.Errorf("the documented env %s is not the command's: %s", e, out)
		}
	}
}

// realBackend opens the runc backend over the built images, or skips (fails under
// AIRLOCK_REQUIRE_SANDBOX=1) when this machine cannot run it.
func realBackend(t *testing.T) sandbox.Backend {
	t.Helper()
	t.Setenv("AIRLOCK_RUNC", testenv.Runc(t))
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store: %v", err)
	}
	for _, name := range []string{"busybox", "host"} {
		if _, err := store.Resolve(context.Background(), name); err != nil {
			testenv.Unavailable(t, "%v", err)
		}
	}
	backend, err := runc.Open(context.Background(), runc.Config{StateDir: t.TempDir(), Images: store, Logger: zerolog.Nop()})
	if err != nil {
		testenv.Unavailable(t, "runc backend: %v", err)
	}
	t.Cleanup(func() { backend.Close() })
	return backend
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
