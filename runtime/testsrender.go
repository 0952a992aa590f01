package runtime

import (
	"encoding/json"
	"fmt"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/testreport"
)

// testsField is the schema of run_tests' structuredContent.tests (testreport.Report).
const testsField = `{"type":"object","description":"The test report Airlock read from the output.","properties":{
	"format":{"enum":["go-test-json","junit","tap","pytest","jest"]},
	"passed":{"type":"integer"},"failed":{"type":"integer"},"skipped":{"type":"integer"},
	"failures":{"type":"array","items":{"type":"object","properties":{
		"name":{"type":"string"},"file":{"type":"string"},"line":{"type":"integer"},"message":{"type":"string"}},
		"required":["name"],"additionalProperties":false}},
	"failures_truncated":{"type":"boolean","description":"More tests failed than are listed."}},
	"required":["format","passed","failed","skipped","failures","failures_truncated"],"additionalProperties":false}`

// renderTests shows a test run: when its output is a test report Airlock reads, the summary
// (counts, then each failure with its location and message) and how the command ended, with
// the report in structuredContent.tests; otherwise the output as any command's. The raw
// output stays in structuredContent.stdout and stderr when the client reads those.
func renderTests(out pipeline.Output) pipeline.Rendered {
	r := renderCommand(out)
	rep, ok := testreport.Parse([]byte(out.Stdout), []byte(out.Stderr), nil)
	if !ok {
		return r
	}
	var fields map[string]any
	b, err := json.Marshal(rep)
	if err != nil || json.Unmarshal(b, &fields) != nil {
		return r
	}
	text := rep.Summary()
	switch {
	case out.TimedOut:
		text += "\n[timed out: the tests were killed at the tool's time limit; the counts cover what finished]"
	case out.OOMKilled:
		text += "\n[killed: the tests ran out of memory]"
	case out.ExitCode != 0:
		text += fmt.Sprintf("\n[exit code %d]", out.ExitCode)
	}
	if out.Truncated {
		text += "\n[output truncated: the counts cover what was kept]"
	}
	return pipeline.Rendered{Text: text, Fields: map[string]any{"tests": fields}, IsError: r.IsError || rep.Failed > 0}
}
