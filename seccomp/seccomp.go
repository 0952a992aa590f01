// Package seccomp holds Airlock's seccomp profiles and converts them to OCI and Docker form.
package seccomp

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// CONTRACT STUB: replaced by the real profiles.

// OCI returns the compiled, cached profile for the runc backend. It returns (nil, nil) only for
// sandbox.SeccompUnconfined. The returned value is shared: callers must not modify it.
func OCI(profile string, network sandbox.Network) (*specs.LinuxSeccomp, error) {
	return nil, errors.New("seccomp: profiles not built yet")
}
