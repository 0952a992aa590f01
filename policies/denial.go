package policies

// Denial is a deny decision as an error, for callers that branch with errors.As. Its text is
// the form an agent is shown: "[POLICY DENIED] <message> (rule <pointer>)".
type Denial struct {
	Decision Decision
}

func (d *Denial) Error() string {
	return "[POLICY DENIED] " + d.Decision.Message + " (rule " + d.Decision.Rule + ")"
}

// Err returns a *Denial for a deny decision and nil otherwise.
func (d Decision) Err() error {
	if d.Verdict == Deny {
		return &Denial{Decision: d}
	}
	return nil
}
