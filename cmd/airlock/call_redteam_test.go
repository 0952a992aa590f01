package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
)

// TestTerminalApproverShowsPathNotControls: the terminal prompt must show where a write goes and
// must not pass C1 controls, escapes or bidi overrides from the agent's arguments to the
// operator's terminal.
func TestTerminalApproverShowsPathNotControls(t *testing.T) {
	var out bytes.Buffer
	a := terminalApprover{in: strings.NewReader("n\n"), out: &out}
	ok, err := a.Approve(context.Background(), pipeline.ApprovalRequest{
		Tool:     "write_file",
		Args:     map[string]any{"path": "docs/\u202egnp.sh", "content": strings.Repeat("padding\n", 100000) + "\u009b2J\x1b]0;x\x07"},
		Decision: policies.Decision{Message: "write_file changes a file in your workspace.", Rule: "/tools/write_file/approve_if/0"},
	})
	if err != nil || ok {
		t.Fatalf("Approve = %v, %v; want a denial from \"n\"", ok, err)
	}
	s := out.String()
	for _, bad := range []string{"\u202e", "\u009b", "\x1b", "\x07"} {
		if strings.Contains(s, bad) {
			t.Errorf("prompt contains %q", bad)
		}
	}
	if !strings.Contains(s, `path: "docs/\u202egnp.sh"`) {
		t.Errorf("prompt does not show the path with the override escaped:\n%.300s", s)
	}
	if len(s) > 16<<10 {
		t.Errorf("prompt is %d bytes", len(s))
	}
}
