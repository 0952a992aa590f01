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
	ExitCode  int
	Stdout    string
	Stderr    string
	Truncated bool
	TimedOut  bool
	OOMKilled bool
}

// Rendered is a Tool's view of its result.
type Rendered struct {
	Text    string         // the text content block
	Fields  map[string]any // extra structuredContent fields (merged with the standard ones)
	IsError bool
}
