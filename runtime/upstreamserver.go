package runtime

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/upstream"
)

// handleRemote runs a call to an upstream tool (allowed or withheld) through the pipeline, as
// handle does for Airlock's own tools: the same grant, session, approvals and audit.
func (h *mcpHandler) handleRemote(ctx context.Context, req *mcp.CallToolRequest, t *remoteTool) (*mcp.CallToolResult, error) {
	if h.authorize != nil {
		if err := h.authorize(req); err != nil {
			return nil, err
		}
	}
	name := req.Params.Name
	args := req.Params.Arguments
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	session := h.sessionID(req.Session)
	in, areq := splitInput(req)
	approver, pending, err := h.approval(areq, name, args, session)
	if err != nil {
		return nil, err
	}
	if pending != nil {
		return pending, nil
	}
	call := pipeline.Call{Tool: name, Args: args, Grant: h.grant, Session: session, Approver: approver,
		Remote: h.rt.gw.bind(t, session, req.Session, in)}
	if tok := req.Params.GetProgressToken(); tok != nil && req.Session != nil {
		ss := req.Session
		call.RemoteProgress = func(progress, total float64, message string) {
			// Best effort: a client that stopped listening must not fail the call.
			_ = ss.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: progress, Total: total, Message: message})
		}
	}
	return CallToolResult(h.rt.run(ctx, call, h.rt.histories.of(session, req.Session)), h.rt.OutputPlacement(req.Session)), nil
}

// gatewayResult maps the result of a call to an upstream tool: the upstream's content blocks
// and structuredContent as stage 6 left them, its isError, and Airlock's own fields (audit_id,
// untrusted, redactions, truncated; for a refusal the reason) under _meta as airlock/<field>.
// Airlock adds nothing to structuredContent: it belongs to the upstream, and clients validate
// it against the upstream's outputSchema. A call refused before the upstream answered has a
// text block saying why and no structuredContent.
func gatewayResult(res pipeline.Result) *mcp.CallToolResult {
	out := &mcp.CallToolResult{IsError: res.IsError, Meta: mcp.Meta{}}
	if res.Upstream != nil && res.Upstream.InputRequests != nil {
		// The upstream's questions, under keys and a state of their own, so that the
		// client's retry is told apart from an answer to Airlock's own approval request.
		out.InputRequests = mcp.InputRequestMap{}
		for k, r := range res.Upstream.InputRequests {
			out.InputRequests[upstreamInputKey+k] = r
		}
		out.RequestState = upstreamStatePrefix + res.Upstream.RequestState
		for k, v := range res.Structured {
			out.Meta["airlock/"+k] = v
		}
		return out
	}
	if res.Upstream != nil {
		out.Content = res.Upstream.Content
		out.StructuredContent = res.Upstream.Structured
	} else {
		out.Content = []mcp.Content{&mcp.TextContent{Text: res.Text}}
	}
	if out.Content == nil {
		out.Content = []mcp.Content{}
	}
	for k, v := range res.Structured {
		out.Meta["airlock/"+k] = v
	}
	return out
}

// An upstream's multi round-trip questions travel to the client and back marked as the
// upstream's: their keys prefixed, their request state too (Airlock's own approval uses the
// approval key and a state without the prefix).
const (
	upstreamInputKey    = "upstream:"
	upstreamStatePrefix = "airlock-upstream:"
)

// splitInput separates a retry's answers to an upstream's questions (returned as the
// upstream's Input, prefixes removed) from the request Airlock's approval sees, which keeps
// only what is Airlock's own. A call that is no retry of an upstream's has no Input.
func splitInput(req *mcp.CallToolRequest) (*upstream.Input, *mcp.CallToolRequest) {
	p := req.Params
	var in *upstream.Input
	own := mcp.InputResponseMap{}
	for k, v := range p.InputResponses {
		if uk, ok := strings.CutPrefix(k, upstreamInputKey); ok {
			if in == nil {
				in = &upstream.Input{Responses: mcp.InputResponseMap{}}
			}
			in.Responses[uk] = v
		} else {
			own[k] = v
		}
	}
	state, upstreamState := strings.CutPrefix(p.RequestState, upstreamStatePrefix)
	if !upstreamState && in == nil {
		return nil, req
	}
	if in == nil {
		in = &upstream.Input{}
	}
	ownState := p.RequestState
	if upstreamState {
		in.State, ownState = state, ""
	}
	cp := *p
	cp.InputResponses, cp.RequestState = own, ownState
	if len(own) == 0 {
		cp.InputResponses = nil
	}
	r := *req
	r.Params = &cp
	return in, &r
}
