package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPApprovalWithoutElicitation: a client that cannot ask its user (no elicitation
// handler) cannot get an approve_if call run. The call must fail closed, the file must not be
// written, and where the call reaches the pipeline the denial is a result and is audited.
func TestMCPApprovalWithoutElicitation(t *testing.T) {
	for _, transport := range []string{"stdio", "http"} {
		t.Run(transport, func(t *testing.T) {
			e := newMCPEnv(t, mcpPolicy, map[string]string{"pkg/doc.txt": "docs\n"})
			var cs *mcp.ClientSession
			stop := func() {}
			if transport == "stdio" {
				cs = e.connectStdio(t, nil)
				stop = func() { cs.Close() }
			} else {
				s := e.startHTTP(t)
				cs = connectHTTP(t, s, "", nil)
				stop = func() { cs.Close(); s.stop() }
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file",
				Arguments: map[string]any{"path": "pkg/unasked.go", "content": "package pkg\n"}})
			stop()
			if _, statErr := os.Stat(filepath.Join(e.workspace, "pkg", "unasked.go")); !errors.Is(statErr, os.ErrNotExist) {
				t.Fatalf("write_file ran without anyone approving it (%v)", statErr)
			}
			if err != nil {
				// A client that cannot elicit must get a recorded denial, never a local
				// failure that leaves the attempt out of the audit log.
				t.Fatalf("want a [POLICY DENIED] result, got an error: %v", err)
			}
			raw, _ := jsonString(res)
			wantDenied(t, res, raw, "", "/tools/write_file/approve_if")
			recs := readAudit(t, e.audit)
			if len(recs) != 1 || recs[0].Decision != "deny" || recs[0].ExitCode != nil {
				t.Errorf("audit %+v, want one deny record for the unapproved write, not run", recs)
			}
		})
	}
}
