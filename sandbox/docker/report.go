package docker

import (
	"context"

	"github.com/airlock-mcp/airlock/sandbox"
)

var _ sandbox.Reporter = (*Backend)(nil)

// Report describes the daemon for `airlock doctor`. The daemon reports the version of its
// default runtime's runc only, so for another runtime (Config.Runtime) the runc version is left
// empty rather than guessed.
func (b *Backend) Report(ctx context.Context) (sandbox.Report, error) {
	in, err := b.Info(ctx)
	if err != nil {
		return sandbox.Report{}, err
	}
	r := sandbox.Report{
		Endpoint: in.Host, ServerVersion: in.ServerVersion, APIVersion: in.APIVersion,
		Runtime: in.DefaultRuntime, RuncVersion: in.RuncVersion, Runtimes: in.Runtimes,
		Seccomp: in.Seccomp, CgroupDriver: in.CgroupDriver, CgroupVersion: in.CgroupVersion, Rootless: in.Rootless,
		Remote: !in.Local,
	}
	if in.Runtime != "" && in.Runtime != in.DefaultRuntime {
		r.Runtime, r.RuncVersion = in.Runtime, ""
	}
	return r, nil
}
