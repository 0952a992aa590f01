package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/sandbox"
)

// connectAs is connect with the client's clientInfo.name, which OutputAuto reads.
func connectAs(t *testing.T, rt *Runtime, client string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ct, st := mcp.NewInMemoryTransports()
	done := make(chan error, 1)
	go func() { done <- rt.ServeTransport(ctx, st) }()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: client, Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		cancel()
		<-done
	})
	return cs
}

// TestOutputPlacedOnce: a call's output is in the result once, where the client reads it —
// the text block for most clients, structuredContent for Claude Code and VS Code (which give
// the model only that), or where the config says — and the other part says where it is. A
// 37 KB file costs about 37 KB on the wire, not twice that.
func TestOutputPlacedOnce(t *testing.T) {
	var file strings.Builder
	for i := 0; file.Len() < 37_000; i++ {
		fmt.Fprintf(&file, "line-%05d of the file, with some words after it\n", i)
	}
	content := file.String()
	readOut, err := json.Marshal(map[string]any{"path": "big.txt", "content": content, "offset": 0,
		"lines": strings.Count(content, "\n"), "truncated": false, "size": len(content)})
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{respond: func(_ context.Context, s sandbox.Spec) (sandbox.Result, error) {
		if s.Image == "busybox" && s.Seccomp == sandbox.SeccompFiles {
			return sandbox.Result{Stdout: append(readOut, '\n')}, nil
		}
		if strings.Contains(strings.Join(s.Argv, " "), "fail") {
			return sandbox.Result{Stdout: []byte("stdout-of-failure\n"), Stderr: []byte("stderr-of-failure\n"), ExitCode: 2}, nil
		}
		return sandbox.Result{Stdout: []byte(content), Stderr: []byte("stderr-marker\n")}, nil
	}}
	const marker = "line-00400 of the file"

	tests := []struct {
		name, config, client string
		wantIn               OutputPlacement
	}{
		{"auto, a text client", "", "cursor", OutputText},
		{"auto, Claude Code", "", "claude-code", OutputStructured},
		{"auto, VS Code", "", "Visual Studio Code", OutputStructured},
		{"structured by config", "results:\n  output: structured\n", "cursor", OutputStructured},
		{"text by config, Claude Code", "results:\n  output: text\n", "claude-code", OutputText},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := newTestRuntime(t, tc.config, `{"version":"1","default":"allow"}`, fb)
			schemas := compileOutputSchemas(t, rt.tools)
			cs := connectAs(t, rt, tc.client)
			for _, call := range []struct {
				tool string
				args map[string]any
			}{
				{"read_file", map[string]any{"path": "big.txt"}},
				{"run_command", map[string]any{"command": "cat big.txt"}},
			} {
				res := callTool(t, cs, call.tool, call.args)
				validateStructured(t, schemas, call.tool, tc.name, res)
				raw, err := json.Marshal(res)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s, %s: %d bytes of output, %d bytes of result", tc.name, call.tool, len(content), len(raw))
				if n := strings.Count(string(raw), marker); n != 1 {
					t.Errorf("%s: the output is in the result %d times, want once", call.tool, n)
				}
				if max := len(content) + 3000; len(raw) > max {
					t.Errorf("%s: the result is %d bytes for %d bytes of output, want at most %d", call.tool, len(raw), len(content), max)
				}
				st, _ := res.StructuredContent.(map[string]any)
				inText := strings.Contains(text(res), marker)
				if (tc.wantIn == OutputText) != inText {
					t.Errorf("%s: output in the text block = %v, want placement %s; text %.200q", call.tool, inText, tc.wantIn, text(res))
				}
				if tc.wantIn == OutputStructured && !strings.Contains(text(res), "is in structuredContent") {
					t.Errorf("%s: the text block does not say where the output is: %.200q", call.tool, text(res))
				}
				if tc.wantIn == OutputText {
					// The metadata stays: a client reading structuredContent still learns the size
					// and the exit code.
					if call.tool == "read_file" {
						r, _ := st["result"].(map[string]any)
						if r["size"] != float64(len(content)) {
							t.Errorf("read_file: structuredContent.result lost its metadata: %v", r)
						}
					}
					if _, ok := st["exit_code"]; !ok {
						t.Errorf("%s: structuredContent lost exit_code: %v", call.tool, st)
					}
				}
			}

			// A failed command keeps its output in the text block under every placement: the
			// clients that read structuredContent show the model only an error's text.
			res := callTool(t, cs, "run_command", map[string]any{"command": "fail now"})
			validateStructured(t, schemas, "run_command", tc.name+" (error)", res)
			if !res.IsError || !strings.Contains(text(res), "stdout-of-failure") || !strings.Contains(text(res), "stderr-of-failure") {
				t.Errorf("failed command: isError %v, text %q; want the output in the text block", res.IsError, text(res))
			}
			raw, _ := json.Marshal(res)
			if n := strings.Count(string(raw), "stdout-of-failure"); n != 1 {
				t.Errorf("failed command: output in the result %d times, want once: %s", n, raw)
			}
		})
	}
}

func TestResultsOutputConfig(t *testing.T) {
	_, err := ParseConfig("airlock.yaml", []byte("results:\n  output: both\n"))
	if err == nil || !strings.Contains(err.Error(), `"both" is not a placement; want auto, text or structured`) ||
		!strings.Contains(err.Error(), "results.output") {
		t.Errorf("results.output both: err = %v, want a placement error at results.output", err)
	}
}
