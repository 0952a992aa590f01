package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
)

// checkDaemon reports on the daemon behind a docker or containerd backend: that it answers,
// which runc it runs containers with, and whether it applies seccomp. The backend itself
// refuses to start when a property cannot hold; these rows say why, and what to do.
func checkDaemon(ctx context.Context, env doctorEnv) []checkRow {
	name := env.backend
	if env.open == nil {
		return []checkRow{{name + " daemon", statusWarn, "not checked (--no-smoke)"}}
	}
	b, closeBackend, err := env.open(ctx, name, zerolog.Nop())
	if err != nil {
		return []checkRow{{name + " daemon", statusFail, err.Error()}}
	}
	defer func() { _ = closeBackend() }()
	rep, ok := b.(sandbox.Reporter)
	if !ok {
		return []checkRow{{name + " daemon", statusWarn, "the backend opened but cannot describe its daemon"}}
	}
	r, err := rep.Report(ctx)
	if err != nil {
		return []checkRow{{name + " daemon", statusFail, fmt.Sprintf("asking the daemon: %v", err)}}
	}
	return reportRows(name, r)
}

// reportRows turns a daemon's report into doctor rows.
func reportRows(name string, r sandbox.Report) []checkRow {
	detail := fmt.Sprintf("%s, version %s", r.Endpoint, r.ServerVersion)
	if r.APIVersion != "" {
		detail += ", API " + r.APIVersion
	}
	if r.Rootless {
		detail += ", rootless"
	}
	rows := []checkRow{{name + " daemon", statusOK, detail}}

	runtime := r.Runtime
	if runtime == "" {
		runtime = "runc"
	}
	switch v, err := parseSemver(strings.TrimPrefix(r.RuncVersion, "v")); {
	case r.RuncVersion == "":
		rows = append(rows, checkRow{name + " runc", statusWarn, fmt.Sprintf("the daemon's runtime %s did not report a runc version; check it is 1.2.8+, 1.3.3+ or later", runtime)})
	case err != nil:
		rows = append(rows, checkRow{name + " runc", statusWarn, fmt.Sprintf("runtime %s: runc version %q: %v", runtime, r.RuncVersion, err)})
	default:
		st, why := runcVersionStatus(v)
		if st != statusOK {
			why = strings.TrimSuffix(why, " (make setup)") + " on the daemon's host; or register a current runc with the daemon (dockerd --add-runtime airlock-runc=/path/to/runc) and set AIRLOCK_DOCKER_RUNTIME=airlock-runc"
		}
		rows = append(rows, checkRow{name + " runc", st, fmt.Sprintf("runtime %s, runc %s: %s", runtime, v, why)})
	}

	if r.Seccomp {
		rows = append(rows, checkRow{name + " seccomp", statusOK, "the daemon applies seccomp profiles"})
	} else {
		// Without it the daemon would run tools with no syscall filter; the backend refuses.
		rows = append(rows, checkRow{name + " seccomp", statusFail, "the daemon does not support seccomp: Airlock refuses to run tools without its filter; use a daemon built with seccomp"})
	}
	cg := "cgroup v" + r.CgroupVersion
	if r.CgroupDriver != "" {
		cg += ", driver " + r.CgroupDriver
	}
	if r.CgroupVersion == "" {
		rows = append(rows, checkRow{name + " cgroups", statusWarn, "the daemon did not report its cgroup version"})
	} else {
		rows = append(rows, checkRow{name + " cgroups", statusOK, cg})
	}
	if r.Remote {
		rows = append(rows, checkRow{name + " host mounts", statusWarn, "the daemon is remote: workspaces and the host image cannot be mounted, so tools that need them are refused; run Airlock on the daemon's host for those"})
	} else {
		rows = append(rows, checkRow{name + " host mounts", statusOK, "the daemon is local: workspaces and the host image can be mounted"})
	}
	if len(r.Runtimes) > 0 {
		rows = append(rows, checkRow{name + " runtimes", statusOK, strings.Join(r.Runtimes, ", ") + " (a profile may name one: runtime:)"})
	}
	return rows
}
