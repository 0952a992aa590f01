package runtime

import (
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/pipeline"
)

// OutputPlacement is where a call's output goes in its MCP result. It goes in one place: a
// 37 KB file read once must not cost the agent's context window 76 KB. MCP clients disagree on
// which part of a result reaches the model: Claude Code and VS Code give it only
// structuredContent whenever a result has one, and only the text block of an error result;
// most other clients give it only the text block. So the output goes where the client reads
// it, and the other part says where it is.
type OutputPlacement string

const (
	// OutputAuto places the output by client: structured for clients known to give the model
	// only structuredContent, text for every other.
	OutputAuto OutputPlacement = "auto"
	// OutputText puts the output in the text block; structuredContent keeps the metadata
	// (exit code, sizes, offsets, redaction counts) without stdout, stderr or file contents.
	OutputText OutputPlacement = "text"
	// OutputStructured puts the output in structuredContent; the text block is a one-line
	// note of where it is. An error result keeps its output in the text block whatever the
	// placement: clients that read structuredContent show the model only the text of an error.
	OutputStructured OutputPlacement = "structured"
)

// outputPlacements lists the values a config may name.
func outputPlacements() []OutputPlacement {
	return []OutputPlacement{OutputAuto, OutputText, OutputStructured}
}

// structuredFirstClients are clientInfo.name values (lower case) of clients that give the
// model structuredContent and drop the text block of a successful result.
func structuredFirstClients() []string {
	return []string{"claude-code", "claude code", "visual studio code", "vscode"}
}

// placementFor resolves auto for a session's client.
func placementFor(p OutputPlacement, ss *mcp.ServerSession) OutputPlacement {
	if p != OutputAuto && p != "" {
		return p
	}
	if ss == nil {
		return OutputText
	}
	ip := ss.InitializeParams()
	if ip == nil || ip.ClientInfo == nil {
		return OutputText
	}
	name := strings.ToLower(ip.ClientInfo.Name)
	for _, c := range structuredFirstClients() {
		if name == c || strings.HasPrefix(name, c+"/") || strings.HasPrefix(name, c+" ") {
			return OutputStructured
		}
	}
	return OutputText
}

// bulkResultKeys are the fields of a file tool's decoded result that hold the output itself
// (the file's lines, the matches, the entries) rather than facts about it.
func bulkResultKeys() []string { return []string{"content", "matches", "entries"} }

// place puts a result's output in one part, as p says. Only a result whose tool ran and
// returned output is changed; denials, refusals and withheld output carry no output.
func place(res pipeline.Result, p OutputPlacement) pipeline.Result {
	st := res.Structured
	if st == nil {
		return res
	}
	_, hasStdout := st["stdout"]
	result, hasResult := st["result"].(map[string]any)
	if !hasStdout && !hasResult {
		return res
	}
	if p == OutputStructured && !res.IsError {
		res.Text = structuredNote(res.Text, st)
		return res
	}
	// The text block holds the output: keep only the metadata in structuredContent.
	out := make(map[string]any, len(st))
	for k, v := range st {
		switch k {
		case "stdout", "stderr":
			continue
		case "result":
			if hasResult {
				meta := make(map[string]any, len(result))
				for rk, rv := range result {
					meta[rk] = rv
				}
				for _, b := range bulkResultKeys() {
					delete(meta, b)
				}
				v = meta
			}
		}
		out[k] = v
	}
	res.Structured = out
	return res
}

// structuredNote is the text block of a result whose output is in structuredContent: where
// the output is, and how many secrets were redacted from it.
func structuredNote(text string, st map[string]any) string {
	where := "structuredContent.stdout"
	if _, ok := st["result"]; ok {
		where = "structuredContent.result"
	}
	note := fmt.Sprintf("[airlock: the output (%d bytes as text) is in %s", len(text), where)
	if red, ok := st["redactions"].(map[string]int); ok {
		n := 0
		for _, c := range red {
			n += c
		}
		if n > 0 {
			note += fmt.Sprintf("; %d secret(s) redacted from it", n)
		}
	}
	return note + "]"
}

// OutputPlacement is where the config puts a call's output for a client of session ss (nil
// for a caller that is not an MCP session, such as `airlock call`: auto means text there).
func (r *Runtime) OutputPlacement(ss *mcp.ServerSession) OutputPlacement {
	return placementFor(r.cfg.Results.Output, ss)
}
