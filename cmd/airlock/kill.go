package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/state"
)

const killUsage = `usage: airlock kill (--tool T | --grant G | --session S | --all) [--reason R]
       airlock kill --list
       airlock resume (--tool T | --grant G | --session S | --all)

A kill switch stops a tool, a grant, a session or everything at once: the calls of the target
in flight are killed (their containers with them) and later calls are denied with rule
/kill/<scope>/<name> in the audit log, until airlock resume. Switches live in the state store,
so they hold across restarts and for every server sharing it.

  --tool T      the tool named T (an upstream tool by the name clients see)
  --grant G     every call of grant G
  --session S   every call of MCP session S (as audit records name it)
  --all         every call
  --reason R    why, shown to callers and in the audit log
  --list        the switches that are on
  --config F    the config whose state: holds the switches (default $AIRLOCK_STATE_DIR/state)
`

// targetFlags reads the one target of kill or resume.
type targetFlags struct {
	tool, grant, session string
	all                  bool
}

func (f *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.tool, "tool", "", "tool")
	fs.StringVar(&f.grant, "grant", "", "grant")
	fs.StringVar(&f.session, "session", "", "session")
	fs.BoolVar(&f.all, "all", false, "everything")
}

func (f *targetFlags) target() (state.Target, error) {
	var ts []state.Target
	if f.tool != "" {
		ts = append(ts, state.Target{Scope: state.ScopeTool, Name: f.tool})
	}
	if f.grant != "" {
		ts = append(ts, state.Target{Scope: state.ScopeGrant, Name: f.grant})
	}
	if f.session != "" {
		ts = append(ts, state.Target{Scope: state.ScopeSession, Name: f.session})
	}
	if f.all {
		ts = append(ts, state.Target{Scope: state.ScopeAll})
	}
	if len(ts) != 1 {
		return state.Target{}, errors.New("give exactly one of --tool, --grant, --session or --all")
	}
	return ts[0], ts[0].Check()
}

// switchCommand parses the flags of kill or resume (name is "kill" or "resume") and opens the
// state store; extra registers the command's own flags. ok false means the exit code is set.
func switchCommand(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (cf controlFlags, tf targetFlags, code int, ok bool) {
	fs := flag.NewFlagSet("airlock "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf.register(fs)
	tf.register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, killUsage)
			return cf, tf, 0, false
		}
		fmt.Fprintf(stderr, "airlock %s: %v\n\n%s", name, err, killUsage)
		return cf, tf, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "airlock %s: unexpected argument %q\n\n%s", name, fs.Arg(0), killUsage)
		return cf, tf, 2, false
	}
	return cf, tf, 0, true
}

// openStore opens the state store for kill or resume, printing why not.
func openStore(ctx context.Context, name string, cf controlFlags, stderr io.Writer) (state.Store, bool) {
	_, store, err := cf.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "airlock %s: %v\n", name, err)
		return nil, false
	}
	return store, true
}

func cmdKill(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var reason string
	var list bool
	cf, tf, code, ok := switchCommand("kill", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&reason, "reason", "", "why")
		fs.BoolVar(&list, "list", false, "list the switches")
	})
	if !ok {
		return code
	}
	if list {
		return killList(ctx, cf, stdout, stderr)
	}
	t, err := tf.target()
	if err != nil {
		fmt.Fprintf(stderr, "airlock kill: %v\n\n%s", err, killUsage)
		return 2
	}
	if len(reason) > 1024 || strings.ContainsAny(reason, "\x00") {
		fmt.Fprintln(stderr, "airlock kill: --reason: at most 1024 characters, no NUL")
		return 2
	}
	store, ok := openStore(ctx, "kill", cf, stderr)
	if !ok {
		return 2
	}
	defer store.Close()
	if err := store.SetKill(ctx, state.Kill{Target: t, Reason: reason, Time: time.Now().UTC()}); err != nil {
		fmt.Fprintf(stderr, "airlock kill: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "kill switch on: %s (rule %s)\n", t, t.Rule())
	if n := notifyServers(ctx, stderr); n >= 0 {
		fmt.Fprintf(stdout, "%d calls in flight stopped\n", n)
	}
	return 0
}

func killList(ctx context.Context, cf controlFlags, stdout, stderr io.Writer) int {
	store, ok := openStore(ctx, "kill", cf, stderr)
	if !ok {
		return 2
	}
	defer store.Close()
	c, err := store.Control(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "airlock kill: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SWITCH\tRULE\tSINCE\tREASON")
	for _, k := range c.Kills {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Target, k.Rule(), k.Time.Format(time.RFC3339), k.Reason)
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

func cmdResume(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cf, tf, code, ok := switchCommand("resume", args, stderr, nil)
	if !ok {
		return code
	}
	t, err := tf.target()
	if err != nil {
		fmt.Fprintf(stderr, "airlock resume: %v\n\n%s", err, killUsage)
		return 2
	}
	store, ok := openStore(ctx, "resume", cf, stderr)
	if !ok {
		return 2
	}
	defer store.Close()
	was, err := store.ClearKill(ctx, t)
	if err != nil {
		fmt.Fprintf(stderr, "airlock resume: %v\n", err)
		return 1
	}
	if !was {
		fmt.Fprintf(stdout, "no kill switch was on for %s (airlock kill --list shows them)\n", t)
		return 0
	}
	fmt.Fprintf(stdout, "kill switch off: %s\n", t)
	return 0
}

// notifyServers tells every server sharing this state directory to apply the store's kill
// switches and revocations now, rather than at its next poll, and returns how many calls in
// flight they stopped; -1 when no server answered.
func notifyServers(ctx context.Context, stderr io.Writer) int {
	reps, err := runtime.AskServers(ctx, runtime.AdminDir(stateDir()), runtime.AdminRequest{Op: "apply"})
	if err != nil {
		fmt.Fprintf(stderr, "airlock: servers not told at once (each looks within %s): %v\n", "0.25 s", err)
		return -1
	}
	if len(reps) == 0 {
		return -1
	}
	n := 0
	for _, r := range reps {
		if r.Error != "" {
			fmt.Fprintf(stderr, "airlock: server pid %d: %s\n", r.PID, r.Error)
			continue
		}
		n += r.Stopped
	}
	return n
}
