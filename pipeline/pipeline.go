// Package pipeline runs one tool call through Airlock's seven stages: propose, schema parse,
// static policy, sandbox instantiation, execution, result sanitisation and trace logging.
package pipeline

import (
	"context"
	"encoding/json"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// CONTRACT STUB: the pipeline replaces the bodies; the exported names are what runtime uses.

// Config wires a Pipeline.
type Config struct {
	Tools       []Tool
	Policy      *policies.Engine
	Backend     sandbox.Backend
	AuditPath   string // append-only, hash-chained JSON lines
	Workspace   string // host path of the workspace, scrubbed from results as /workspace
	MaxArgBytes int    // 0 means 1 MiB
	RecordArgs  bool   // store argument values in the audit record
	Logger      zerolog.Logger
}

// Pipeline is safe for concurrent use.
type Pipeline struct{}

// New validates cfg, compiles every tool's schema once and opens the audit log.
func New(cfg Config) (*Pipeline, error) { return &Pipeline{}, nil }

// Close flushes and closes the audit log.
func (p *Pipeline) Close() error { return nil }

// Tools lists the tools the caller may see (policy-visible), in a stable order.
func (p *Pipeline) Tools(g policies.Grant) []Tool { return nil }

// Approver asks a human to approve a call that matched approve_if.
type Approver interface {
	Approve(ctx context.Context, req ApprovalRequest) (bool, error)
}

// ApprovalRequest is what the human is shown.
type ApprovalRequest struct {
	Tool     string
	Args     map[string]any
	Decision policies.Decision
}

// Call is stage 1: a proposed tool call.
type Call struct {
	Tool     string
	Args     json.RawMessage
	Grant    policies.Grant
	Session  string
	Approver Approver                 // nil: approve_if verdicts are denied (fail closed)
	Progress func(elapsed, total int) // nil: no progress notifications; called while executing
}

// Result is what goes back to the agent: a text block plus structured content
// (exit_code, stdout, stderr, truncated, timed_out, oom_killed, duration_ms, audit_id, ...).
type Result struct {
	Text       string
	Structured map[string]any
	IsError    bool
	Verdict    policies.Verdict // empty when the call stopped before stage 3
	Denied     bool             // denied by policy (or approval declined)
	AuditID    string
}

// Run executes call through all seven stages. It always writes an audit record.
func (p *Pipeline) Run(ctx context.Context, call Call) Result { return Result{IsError: true} }
