package pipeline

import (
	"context"
	"encoding/json"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Tool is one tool the pipeline can run. The runtime package builds Tools from the config and
// the built-in toolset; the pipeline owns everything else (schema, policy, sandbox, sanitising,
// audit), so a Tool never sees unvalidated input and never runs anything itself.
type Tool interface {
	// Name is the MCP tool name.
	Name() string
	// InputSchema is the tool's JSON Schema (draft 2020-12). The pipeline compiles it once.
	InputSchema() json.RawMessage
	// Plan is stage 4: turn validated arguments into the sandbox options of this call
	// (image, argv, workspace access, limits, seccomp profile). It must not run anything.
	Plan(ctx context.Context, args map[string]any) ([]sandbox.Option, error)
	// Render turns the sanitised outcome of the run into what the agent sees.
	Render(out Output) Rendered
}

// Output is the sandbox result after stage 6 (sanitised text, never raw bytes).
type Output struct {
	ExitCode int
	Stdout   string // empty when Result is set
	Stderr   string
	// Result is the tool's stdout decoded, for a tool whose stdout is one JSON object
	// (JSONOutput), with every string in it sanitised; nil when the tool printed something
	// else (it crashed, or was killed mid-way), which is then in Stdout.
	Result    map[string]any
	Truncated bool
	TimedOut  bool
	OOMKilled bool
}

// JSONOutput is implemented by a Tool whose stdout is one JSON object, as the file tools'
// airlock-toolbox prints. Stage 6 decodes that object before it sanitises anything and then
// sanitises each decoded string: JSON escaping (\" around a quoted password, \n between a key
// and its value, \u0041 for "A") hides secrets from rules that read plain text, so the
// redactor must see the decoded values; and the agent is given those values
// (structuredContent.result), not the raw document.
type JSONOutput interface {
	StdoutIsJSON() bool
}

// Rendered is a Tool's view of its result.
type Rendered struct {
	Text    string         // the text content block
	Fields  map[string]any // extra structuredContent fields (merged with the standard ones)
	IsError bool
}
