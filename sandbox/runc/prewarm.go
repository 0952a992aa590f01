package runc

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/seccomp"
)

// Prewarm does ahead of time the pure work a process's first Run would otherwise do on its
// critical path: it compiles the seccomp profiles (about a millisecond) and builds the JSON
// encoders of the OCI configuration types (about half of one). It changes nothing but those
// process-wide caches, so a short-lived caller such as `airlock exec` can run it on another
// core while the backend opens; a Run that gets there first simply does the work itself.
// Errors are not reported here: Run meets them again and refuses.
func Prewarm() {
	_, _ = seccomp.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	_, _ = json.Marshal(&specs.Spec{})
}
