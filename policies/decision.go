// Package policies is Airlock's policy language: parse, validate, compile and evaluate the
// deterministic verdict (allow, deny, approve) for one tool call, with rate limits.
package policies

// Verdict is the outcome of evaluating a policy for one call.
type Verdict string

const (
	Allow   Verdict = "allow"
	Deny    Verdict = "deny"
	Approve Verdict = "approve"
)

// Grant is the caller's identity: who is calling, with operator-assigned labels.
type Grant struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Request is one tool call as the policy sees it. Args is the call's arguments as decoded by
// encoding/json into `any` (numbers may be json.Number or float64).
type Request struct {
	Tool    string
	Args    map[string]any
	Grant   Grant
	Session string
	// State is the session's history before this call, for the session.* paths and the
	// policy's session budgets. The zero value is a new, clean session.
	State SessionState
}

// Decision is a verdict with the rule that produced it.
type Decision struct {
	Verdict      Verdict `json:"verdict"`
	Rule         string  `json:"rule"` // pointer into the policy, e.g. /tools/x/require/args.path-path_within
	Message      string  `json:"message"`
	PolicySHA256 string  `json:"policy_sha256"`
	// Labels are what the tool's label_if rules give the session if the call executes
	// (allow and approve verdicts only).
	Labels []string `json:"labels,omitempty"`
}
