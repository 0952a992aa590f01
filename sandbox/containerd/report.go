package containerd

import (
	"context"
	"strings"

	"github.com/airlock-mcp/airlock/sandbox"
)

var _ sandbox.Reporter = (*Backend)(nil)

// Report describes the daemon for `airlock doctor`. Airlock's containers run under the runc
// the backend names to the shim, so its version is the one judged; seccomp holds because Open
// refuses a runc built without it.
func (b *Backend) Report(ctx context.Context) (sandbox.Report, error) {
	in, err := b.Info(ctx)
	if err != nil {
		return sandbox.Report{}, err
	}
	// "runc 1.5.2 (spec 1.3.0, libseccomp 2.5.4)" -> "1.5.2"
	runc, _, _ := strings.Cut(strings.TrimPrefix(in.RuncVersion, "runc "), " ")
	version := in.DaemonVersion
	if in.DaemonRevision != "" {
		version += " (" + in.DaemonRevision + ")"
	}
	mode, _, _ := strings.Cut(strings.TrimPrefix(in.CgroupMode, "v"), " ")
	return sandbox.Report{
		Endpoint: in.Address + " (namespace " + in.Namespace + ")", ServerVersion: version,
		Runtime: in.Runtime + " with " + in.RuncBinary, RuncVersion: runc, Runtimes: []string{in.Runtime},
		Seccomp: strings.Contains(in.RuncVersion, "libseccomp"), CgroupDriver: "cgroupfs", CgroupVersion: mode,
	}, nil
}
