package main

import (
	"context"
	"fmt"
	"io"

	"github.com/airlock-mcp/airlock/runtime"
)

// policyReload asks every server sharing the state directory to reload its policy.
func policyReload(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "airlock policy reload: takes no arguments (each server reloads the policy file it was started with)\n")
		return 2
	}
	reps, err := runtime.AskServers(ctx, runtime.AdminDir(stateDir()), runtime.AdminRequest{Op: "reload"})
	if err != nil {
		fmt.Fprintf(stderr, "airlock policy reload: %v\n", err)
		return 2
	}
	if len(reps) == 0 {
		fmt.Fprintf(stderr, "airlock policy reload: no running server in %s\n", runtime.AdminDir(stateDir()))
		return 2
	}
	code := 0
	for _, r := range reps {
		switch {
		case r.Error != "":
			fmt.Fprintf(stderr, "server pid %d: %s\n", r.PID, r.Error)
			code = 1
		case r.Reload == nil:
			fmt.Fprintf(stderr, "server pid %d: no answer about the policy\n", r.PID)
			code = 1
		case r.Reload.Changed:
			fmt.Fprintf(stdout, "server pid %d: reloaded %s, now %s\n", r.PID, r.Reload.Policy, r.Reload.SHA256)
		default:
			fmt.Fprintf(stdout, "server pid %d: %s unchanged (%s)\n", r.PID, r.Reload.Policy, r.Reload.SHA256)
		}
	}
	return code
}
