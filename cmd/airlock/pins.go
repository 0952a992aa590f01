package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/upstream/pins"
)

const pinsUsage = `usage:
  airlock pins list [--json] [UPSTREAM]
      The pinned tools of one upstream, or of every upstream that has pins: each tool's state
      (pinned, changed, new, removed) and hashes.
  airlock pins diff UPSTREAM TOOL
      What approving would pin: a diff of the pinned definition against the one last seen,
      headed by both hashes.
  airlock pins approve [--audit F] UPSTREAM TOOL [--hash H]
  airlock pins approve [--audit F] UPSTREAM --all
      Pin the definition last seen (with --hash, only if it still is the one with that hash:
      pass the hash diff printed, so that what is pinned is what was reviewed).
  airlock pins reset [--audit F] UPSTREAM
      Forget every pin of the upstream; its tools are pinned again at its next connect.

Every subcommand takes --config F: the config whose state: holds the pins (a directory, or
Redis shared by replicas). Without it, pins live in $AIRLOCK_STATE_DIR/pins (default
/var/lib/airlock/pins). A running 'airlock serve' notices approvals and resets at its next
tools/list or tools/call.
Approvals and resets are recorded in the audit log: --audit F, default
$AIRLOCK_STATE_DIR/audit/audit.jsonl (give the audit.path of a config that sets one).

Exit codes: 0 done, 1 nothing to do (no such upstream or tool, nothing pending), 2 usage or error.
`

func cmdPins(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pinsUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, pinsUsage)
		return 0
	case "list", "diff", "approve", "reset":
	default:
		fmt.Fprintf(stderr, "airlock pins: unknown subcommand %q\n\n%s", args[0], pinsUsage)
		return 2
	}
	fs := flag.NewFlagSet("airlock pins "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON")
	hash := fs.String("hash", "", "approve only this definition")
	all := fs.Bool("all", false, "approve every pending tool")
	audit := fs.String("audit", defaultAuditPath(), "audit log to record approvals and resets in")
	var cf controlFlags
	cf.register(fs)
	rest, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, pinsUsage)
			return 0
		}
		fmt.Fprintf(stderr, "airlock pins %s: %v\n\n%s", args[0], err, pinsUsage)
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "airlock pins %s: %s\n\n%s", args[0], msg, pinsUsage)
		return 2
	}
	_, st, err := cf.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "airlock pins: %v\n", err)
		return 2
	}
	defer st.Close()
	store := pins.NewStore(st)
	// Tool names and definitions come from upstreams: shown through the terminal filter.
	stdout = clientTextWriter{stdout}
	switch args[0] {
	case "list":
		if len(rest) > 1 {
			return usage("want at most one UPSTREAM")
		}
		return pinsList(ctx, store, rest, *asJSON, stdout, stderr)
	case "diff":
		if len(rest) != 2 {
			return usage("want UPSTREAM TOOL")
		}
		d, err := store.Diff(ctx, rest[0], rest[1])
		if err != nil {
			return pinsErr(stderr, "diff", err)
		}
		fmt.Fprint(stdout, d)
		return 0
	case "approve":
		var vs []pins.Verdict
		switch {
		case len(rest) == 1 && *all && *hash == "":
			vs, err = store.ApproveAll(ctx, rest[0])
			if err == nil && len(vs) == 0 {
				err = pins.ErrNothingPending
			}
		case len(rest) == 2 && !*all:
			var v pins.Verdict
			v, err = store.Approve(ctx, rest[0], rest[1], *hash)
			vs = []pins.Verdict{v}
		default:
			return usage("want UPSTREAM TOOL [--hash H], or UPSTREAM --all")
		}
		if err != nil {
			return pinsErr(stderr, "approve", err)
		}
		for _, v := range vs {
			fmt.Fprintf(stdout, "approved %s %s %s\n", v.Upstream, v.Tool, v.NewHash)
		}
		return auditPins(*audit, vs, stderr)
	case "reset":
		if len(rest) != 1 {
			return usage("want UPSTREAM")
		}
		if _, err := store.List(ctx, rest[0]); errors.Is(err, pins.ErrUnknownUpstream) {
			return pinsErr(stderr, "reset", err)
		}
		vs, err := store.Reset(ctx, rest[0])
		if err != nil {
			return pinsErr(stderr, "reset", err)
		}
		fmt.Fprintf(stdout, "reset %s: %d pin(s) dropped; its tools are pinned again at its next connect\n", rest[0], len(vs))
		return auditPins(*audit, vs, stderr)
	}
	return 2
}

func pinsList(ctx context.Context, store *pins.Store, rest []string, asJSON bool, stdout, stderr io.Writer) int {
	ups := rest
	if len(ups) == 0 {
		var err error
		if ups, err = store.Upstreams(ctx); err != nil {
			fmt.Fprintf(stderr, "airlock pins list: %v\n", err)
			return 2
		}
	}
	var all []pins.Status
	for _, u := range ups {
		st, err := store.List(ctx, u)
		if err != nil {
			return pinsErr(stderr, "list", err)
		}
		all = append(all, st...)
	}
	if asJSON {
		if all == nil {
			all = []pins.Status{}
		}
		b, _ := json.MarshalIndent(all, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	if len(all) == 0 {
		fmt.Fprintln(stdout, "no pins (no upstream has connected yet)")
		return 0
	}
	fmt.Fprintf(stdout, "%-16s %-32s %-8s %-20s %s\n", "UPSTREAM", "TOOL", "STATE", "PINNED", "SEEN")
	for _, s := range all {
		fmt.Fprintf(stdout, "%-16s %-32s %-8s %-20s %s\n", s.Upstream, s.Tool, s.State, shortHash(s.PinnedHash), shortHash(s.SeenHash))
	}
	return 0
}

func shortHash(h string) string {
	if h == "" {
		return "-"
	}
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}

// pinsErr prints err; "nothing to do" errors exit 1, others 2.
func pinsErr(stderr io.Writer, sub string, err error) int {
	fmt.Fprintf(stderr, "airlock pins %s: %v\n", sub, err)
	if errors.Is(err, pins.ErrNothingPending) || errors.Is(err, pins.ErrUnknownTool) || errors.Is(err, pins.ErrUnknownUpstream) {
		return 1
	}
	return 2
}

// auditPins records an operator's pin decisions in the audit log. The pins changed already;
// a failure to record them is reported and makes the exit code 2.
func auditPins(path string, vs []pins.Verdict, stderr io.Writer) int {
	if len(vs) == 0 {
		return 0
	}
	log, _, err := pipeline.OpenAudit(path)
	if err != nil {
		fmt.Fprintf(stderr, "airlock pins: the change is made but could not be recorded in the audit log: %v\n", err)
		return 2
	}
	defer log.Close()
	for _, v := range vs {
		ev := pipeline.GatewayEvent{Upstream: v.Upstream, UpstreamTool: v.Tool, Decision: "pin_" + string(v.Decision),
			Rule: "/pins/" + v.Upstream + "/" + v.Tool, Message: fmt.Sprintf("%s by an operator (airlock pins): %s", v.Decision, v.NewHash)}
		if err := log.Append(pipeline.NewGatewayRecord(ev, time.Now())); err != nil {
			fmt.Fprintf(stderr, "airlock pins: the change is made but could not be recorded in the audit log: %v\n", err)
			return 2
		}
	}
	return 0
}
