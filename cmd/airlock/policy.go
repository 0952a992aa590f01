package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/runtime"
)

const policyUsage = `usage:
  airlock policy check [--config F] [FILE]
      Validate a policy (JSON or YAML). Prints each error with a JSON pointer into the file.
      With --config, also checks the policy against the tools that config serves: an entry
      for a tool that does not exist (a typo such as run_comand) is an error, one for a
      built-in the config leaves out a note. Without FILE, checks the config's own policy
      (or the embedded default). Exit 0 valid, 1 invalid, 2 usage.
  airlock policy eval --policy FILE --tool T --args JSON [--grant ID] [--labels k=v,...]
                      [--session ID] [--session-json STATE] [--workspace DIR]
      Decide one call and print {"verdict","rule","message","policy_sha256"} (and "labels"
      when label_if gives some). --session-json is the session's history before the call:
      '{"tainted":true,"tainted_by":["http_fetch"],"tools":["read_file"],"labels":["secret"],
      "calls":12,"age":"90m"}'.
      Exit 0 allow, 3 deny, 4 approve, 2 error.
  airlock policy test FILE CASES.yaml
      Run a table of cases against the policy; print each failure and "N passed, M failed".
      Exit 0 all passed, 1 a case failed, 2 error.
  airlock policy reload
      Make every running server (serve --http, --socket or --stdio) sharing this state
      directory read its policy file again. A valid policy takes over for the next call;
      an invalid one leaves the current policy in force and the error is printed.
      Servers also reload on SIGHUP (serve --http, --socket) and when the file changes.
      Exit 0 reloaded (or unchanged) everywhere, 1 a server kept its policy, 2 no server.
`

func cmdPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	switch args[0] {
	case "check":
		return policyCheck(args[1:], stdout, stderr)
	case "eval":
		return policyEval(args[1:], stdout, stderr)
	case "test":
		return policyTest(args[1:], stdout, stderr)
	case "reload":
		return policyReload(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return 0
	}
	fmt.Fprintf(stderr, "airlock policy: unknown subcommand %q\n\n%s", args[0], policyUsage)
	return 2
}

// printLoadError prints a validation error one issue per line.
func printLoadError(w io.Writer, err error) {
	var ve *policies.ValidationError
	if errors.As(err, &ve) {
		for _, is := range ve.Issues {
			fmt.Fprintf(w, "%s: %s: %s\n", ve.Name, is.Pointer, is.Message)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func policyCheck(args []string, stdout, stderr io.Writer) int {
	const usage = "usage: airlock policy check [--config F] [FILE]\n"
	fs := flag.NewFlagSet("airlock policy check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := fs.String("config", "", "")
	// Flags may follow FILE too (policy check policy.json --config airlock.yaml).
	var files []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			fmt.Fprintf(stderr, "airlock policy check: %v\n%s", err, usage)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files, rest = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(files) > 1 || (len(files) == 0 && *configFile == "") {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var cfg *runtime.Config
	if *configFile != "" {
		c, err := runtime.LoadConfig(*configFile)
		if err != nil {
			fmt.Fprintf(stderr, "airlock policy check: %v\n", err)
			return 2
		}
		cfg = c
	}
	var p *policies.Policy
	var err error
	name := ""
	if len(files) == 1 {
		name = files[0]
	}
	switch {
	case name != "":
		p, err = policies.Load(name)
	default:
		cfg.Policy = cfg.PolicyPath()
		p, err = cfg.LoadPolicy()
		name = p.Name()
		if cfg.Policy != "" {
			name = cfg.Policy
		}
	}
	if err != nil {
		// Any file that does not load fails the check, unreadable or invalid alike: a CI step
		// gating on `policy check` must not tell "missing" apart from "wrong" by exit code.
		printLoadError(stderr, err)
		return 1
	}
	if cfg != nil {
		unknown := 0
		for _, is := range cfg.CheckPolicyTools(p) {
			if is.Unknown {
				unknown++
				fmt.Fprintf(stderr, "%s: %s: %s\n", name, is.Pointer, is.Message)
			} else {
				fmt.Fprintf(stdout, "%s: note: %s: %s\n", name, is.Pointer, is.Message)
			}
		}
		if unknown > 0 {
			fmt.Fprintf(stderr, "%s: %d %s for tools %s does not serve\n", name, unknown, plural(unknown, "entry", "entries"), *configFile)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d tools, sha256 %s)\n", name, len(p.Tools()), p.SHA256())
	return 0
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func policyEval(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock policy eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		file      = fs.String("policy", "", "policy file (JSON or YAML)")
		tool      = fs.String("tool", "", "tool name")
		argsJSON  = fs.String("args", "{}", "the call's arguments as a JSON object")
		grant     = fs.String("grant", "", "grant ID of the caller")
		labels    = fs.String("labels", "", "grant labels as k=v,k2=v2")
		session   = fs.String("session", "", "session ID")
		stateJSON = fs.String("session-json", "", "the session's history as JSON: tainted, tainted_by, tools, labels, calls, age")
		workspace = fs.String("workspace", "", "workspace directory for path_within on absolute paths")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *file == "" || *tool == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, "usage: airlock policy eval --policy FILE --tool T --args JSON [--grant ID] [--labels k=v,...]\n")
		return 2
	}
	p, err := policies.Load(*file)
	if err != nil {
		printLoadError(stderr, err)
		return 2
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(*argsJSON)))
	dec.UseNumber()
	var callArgs map[string]any
	if err := dec.Decode(&callArgs); err != nil {
		fmt.Fprintf(stderr, "airlock policy eval: --args must be a JSON object: %v\n", err)
		return 2
	}
	if dec.More() {
		fmt.Fprint(stderr, "airlock policy eval: --args has data after the JSON object\n")
		return 2
	}
	lbl, err := parseLabels(*labels)
	if err != nil {
		fmt.Fprintf(stderr, "airlock policy eval: --labels: %v\n", err)
		return 2
	}
	var state policies.SessionState
	if *stateJSON != "" {
		if state, err = policies.ParseSessionState([]byte(*stateJSON)); err != nil {
			fmt.Fprintf(stderr, "airlock policy eval: --session-json: %v\n", err)
			return 2
		}
	}
	e := policies.NewEngine(p, policies.NewMemoryCounters(), policies.WithWorkspace(*workspace))
	d, res := e.Decide(policies.Request{Tool: *tool, Args: callArgs, Grant: policies.Grant{ID: *grant, Labels: lbl}, Session: *session, State: state})
	res.Rollback()
	out, _ := json.Marshal(d)
	fmt.Fprintln(stdout, string(out))
	switch d.Verdict {
	case policies.Allow:
		return 0
	case policies.Approve:
		return 4
	}
	return 3
}

func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not k=v", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

func policyTest(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprint(stderr, "usage: airlock policy test FILE CASES.yaml\n")
		return 2
	}
	p, err := policies.Load(args[0])
	if err != nil {
		printLoadError(stderr, err)
		return 2
	}
	cf, err := policies.LoadCases(args[1])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	passed, failed := 0, 0
	for _, r := range policies.RunCases(p, cf) {
		if r.Failure == "" {
			passed++
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s: %s\n", r.Name, r.Failure)
	}
	fmt.Fprintf(stdout, "%s: %d passed, %d failed\n", args[1], passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
