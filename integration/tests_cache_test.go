package integration

// run_tests against a real Go project through `airlock call` on runc: the result is the test
// report (a summary and structuredContent.tests), the second run finds the toolchain cache the
// first one filled (measured against the first, in the same test), `airlock cache list` shows
// the workspace's cache and `airlock cache clear` removes it from the host.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/testcache"
)

func TestRunTestsCache(t *testing.T) {
	e := newMCPEnv(t, `{"version":"1","default":"allow"}`, map[string]string{
		"go.mod":  "module example.test/calc\n\ngo 1.22\n",
		"calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b + 1 }\n",
		"calc_test.go": "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif got := Add(2, 2); got != 4 {\n" +
			"\t\tt.Errorf(\"Add(2, 2) = %d, want 4\", got)\n\t}\n}\n\nfunc TestSub(t *testing.T) {}\n",
	})
	ws, err := filepath.EvalSymlinks(e.workspace)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = testcache.Clear(testenv.StateDir(), ws) })
	e.writeConfig(t)
	call := func() (time.Duration, map[string]any, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		out, err := e.command(ctx, "call", "--config", e.config, "run_tests", "{}").Output()
		d := time.Since(start)
		var res struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			Structured map[string]any `json:"structuredContent"`
		}
		if jerr := json.Unmarshal(out, &res); jerr != nil || len(res.Content) == 0 {
			t.Fatalf("run_tests: %v %v\n%s", err, jerr, out)
		}
		return d, res.Structured, res.Content[0].Text
	}
	cold, st, text := call()
	tests, _ := st["tests"].(map[string]any)
	if tests == nil || tests["passed"] != 1.0 || tests["failed"] != 1.0 ||
		!strings.Contains(text, "FAIL example.test/calc.TestAdd (calc_test.go:7): Add(2, 2) = 5, want 4") {
		t.Fatalf("run_tests did not report the failure: %q %v", text, st)
	}
	warm, _, text2 := call()
	t.Logf("run_tests of a trivial Go project: cold %s, with the cache %s (%.1fx)", cold.Round(time.Millisecond), warm.Round(time.Millisecond), float64(cold)/float64(warm))
	if text2 != text {
		t.Errorf("the second run reports differently: %q", text2)
	}
	if warm*3 > cold {
		t.Errorf("the second run (%s) did not find the first one's cache (cold %s)", warm, cold)
	}
	dir := testcache.New(testenv.StateDir(), ws, 0).Dir()
	if ents, err := os.ReadDir(filepath.Join(dir, "data", "go-build")); err != nil || len(ents) == 0 {
		t.Errorf("the build cache on the host is empty: %v", err)
	}
	out, _ := e.command(context.Background(), "cache", "list").CombinedOutput()
	if !strings.Contains(string(out), ws) {
		t.Errorf("airlock cache list does not show %s:\n%s", ws, out)
	}
	if out, err := e.command(context.Background(), "cache", "clear", ws).CombinedOutput(); err != nil {
		t.Fatalf("airlock cache clear: %v\n%s", err, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the cache is still on the host after clear: %v", err)
	}
}
