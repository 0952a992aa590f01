package runtime

import (
	"os"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/pipeline"
)

// run_tests summarises a real `go test -json` run of a failing package, puts the report in
// structuredContent.tests under its declared schema, and leaves other output as it was.
func TestRenderTests(t *testing.T) {
	raw, err := os.ReadFile("../testreport/testdata/go-test-json.stdout")
	if err != nil {
		t.Fatal(err)
	}
	r := renderTests(pipeline.Output{Stdout: string(raw), ExitCode: 1})
	tests, _ := r.Fields["tests"].(map[string]any)
	if !r.IsError || tests == nil || tests["format"] != "go-test-json" || tests["failed"].(float64) < 1 {
		t.Fatalf("rendered %+v", r)
	}
	if !strings.Contains(r.Text, " failed, ") || !strings.Contains(r.Text, "\nFAIL ") || !strings.HasSuffix(r.Text, "[exit code 1]") {
		t.Errorf("text:\n%s", r.Text)
	}
	if strings.Contains(r.Text, `"Action"`) {
		t.Errorf("the summary carries the raw JSON lines:\n%s", r.Text)
	}

	// The structured result validates against run_tests' declared output schema (drafts
	// 2020-12 and 7).
	tl := &Tool{name: "run_tests", fields: builtinSpecs()["run_tests"].fields}
	st := map[string]any{"exit_code": 1, "truncated": false, "timed_out": false, "oom_killed": false, "duration_ms": 5,
		"audit_id": "a", "redactions": map[string]any{}, "untrusted": true, "stdout": "", "stderr": "", "tests": tests}
	validateStructured(t, compileOutputSchemas(t, []*Tool{tl}), "run_tests", "test report", &mcp.CallToolResult{StructuredContent: st})

	plain := renderTests(pipeline.Output{Stdout: "building...\nall good\n"})
	if plain.Fields != nil || plain.Text != "building...\nall good\n" || plain.IsError {
		t.Errorf("output that is no report: %+v", plain)
	}
}
