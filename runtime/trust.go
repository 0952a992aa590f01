package runtime

import (
	"fmt"

	"github.com/airlock-mcp/airlock/pipeline"
)

// Trust says whether what a tool returns may carry instructions from someone other than the
// operator and the user. A call to an untrusted tool that executes taints its MCP session
// (history.go): the policy then sees session.tainted, and the default policy asks a human
// before every write or command in that session, since the agent may be following a web page
// or a third-party server rather than its user.
//
// Trusted is the default for configured tools and upstreams; http_fetch, which returns web
// content, is untrusted unless a config says otherwise. Workspace files count as trusted: they
// are the operator's project. Mark a tool untrusted when its workspace holds third-party content
// (a checked-out pull request, downloaded data).
const (
	TrustTrusted   = "trusted"
	TrustUntrusted = "untrusted"
)

// checkTrust accepts a trust: value ("" is the default).
func checkTrust(v string) error {
	switch v {
	case "", TrustTrusted, TrustUntrusted:
		return nil
	}
	return fmt.Errorf("trust %q: want trusted or untrusted (untrusted: what the tool returns taints the session)", v)
}

// trustSetting applies a config's trust: value to a default.
func trustSetting(v string, untrustedByDefault bool) bool {
	if v == "" {
		return untrustedByDefault
	}
	return v == TrustUntrusted
}

// Untrusted reports whether a call of the tool that executes taints its session.
func (t *Tool) Untrusted() bool { return t.untrusted }

// untrustedCall reports whether call, once executed, taints its session: the tool's trust, or
// its upstream's. A remote tool the runtime did not bind counts as untrusted (fail closed).
func (r *Runtime) untrustedCall(call pipeline.Call) bool {
	if call.Remote != nil {
		b, ok := call.Remote.(*boundTool)
		return !ok || b.up.untrusted
	}
	t, ok := r.byName[call.Tool]
	return ok && t.untrusted
}
