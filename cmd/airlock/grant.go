package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/state"
)

const grantUsage = `usage: airlock grant create NAME [--label K=V]... [--expires D] [--uid N] [--no-token]
       airlock grant list [--json]
       airlock grant revoke NAME

Grants give a person or an agent its own identity: policies test grant.id and grant.labels,
limits count per grant, audit records name it, and a grant can be revoked on its own.

  create   prints the grant's bearer token once, on stdout; only its sha256 is stored
  list     every grant with its status (active, revoked, expired)
  revoke   refuses the grant's token from the next request on; its calls in flight are stopped

  --label K=V   a label policies can test as grant.labels.K (repeatable)
  --expires D   the grant ends after D (e.g. 12h, 30d); default: never
  --uid N       clients of the daemon socket (serve --socket) running as uid N act as this grant
  --no-token    no bearer token (a --uid grant for the daemon socket only)
  --config F    the config whose state: holds the grants (default $AIRLOCK_STATE_DIR/state)
  --json        list as JSON
`

func cmdGrant(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, grantUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "create":
		return grantCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return grantList(ctx, args[1:], stdout, stderr)
	case "revoke":
		return grantRevoke(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "airlock grant: unknown subcommand %q\n\n%s", args[0], grantUsage)
	return 2
}

// labelFlags collects repeated --label K=V.
type labelFlags map[string]string

func (l labelFlags) String() string { return "" }

func (l labelFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want KEY=VALUE", v)
	}
	if _, dup := l[k]; dup {
		return fmt.Errorf("label %s given twice", k)
	}
	l[k] = val
	return nil
}

// parseExpiry reads a duration with Go's units plus d for days.
func parseExpiry(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: want a positive duration such as 12h or 30d", s)
	}
	return d, nil
}

// controlFlags are the flags of the commands that change the state store.
type controlFlags struct{ config string }

func (f *controlFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML config file")
}

// open opens the state store the config names, and returns the config too.
func (f *controlFlags) open(ctx context.Context) (*runtime.Config, state.Store, error) {
	cfg, err := readConfig(f.config)
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.ResolveState(stateDir()); err != nil {
		return nil, nil, err
	}
	s, err := cfg.OpenState(ctx)
	return cfg, s, err
}

func grantCreate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock grant create", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf controlFlags
	cf.register(fs)
	labels := labelFlags{}
	fs.Var(labels, "label", "label K=V")
	expires := fs.String("expires", "", "lifetime")
	uid := fs.Int64("uid", -1, "daemon client uid")
	noToken := fs.Bool("no-token", false, "no bearer token")
	pos, err := parseInterleaved(fs, args)
	if err != nil || len(pos) != 1 {
		if err == nil {
			err = errors.New("give exactly one grant NAME")
		}
		fmt.Fprintf(stderr, "airlock grant create: %v\n\n%s", err, grantUsage)
		return 2
	}
	name := pos[0]
	if err := state.CheckGrantName(name); err != nil {
		fmt.Fprintf(stderr, "airlock grant create: %v\n", err)
		return 2
	}
	now := time.Now().UTC().Truncate(time.Second)
	g := state.Grant{Name: name, Created: now}
	if len(labels) > 0 {
		g.Labels = labels
	}
	if *expires != "" {
		d, err := parseExpiry(*expires)
		if err != nil {
			fmt.Fprintf(stderr, "airlock grant create: %v\n", err)
			return 2
		}
		g.Expires = now.Add(d)
	}
	if *uid >= 0 {
		if *uid > 1<<32-2 {
			fmt.Fprintf(stderr, "airlock grant create: --uid %d is not a uid\n", *uid)
			return 2
		}
		u := uint32(*uid)
		g.UID = &u
	}
	if *noToken && g.UID == nil {
		fmt.Fprintln(stderr, "airlock grant create: --no-token leaves no way to use the grant; give --uid N too")
		return 2
	}
	cfg, store, err := cf.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "airlock grant create: %v\n", err)
		return 2
	}
	defer store.Close()
	// A grant of a config name would share its counters, rule matches and audit identity
	// with callers it is not, and revoking it would stop their calls.
	if taken := configGrants(cfg); slices.Contains(taken, name) {
		fmt.Fprintf(stderr, "airlock grant create: %s is a grant of the config (grant.id or http.tokens); choose another name\n", name)
		return 2
	}
	var token string
	if !*noToken {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			fmt.Fprintf(stderr, "airlock grant create: %v\n", err)
			return 1
		}
		token = "alk_" + base64.RawURLEncoding.EncodeToString(b[:])
		sum := sha256.Sum256([]byte(token))
		g.TokenSHA256 = hex.EncodeToString(sum[:])
	}
	if err := store.AddGrant(ctx, g); err != nil {
		fmt.Fprintf(stderr, "airlock grant create: %v\n", err)
		if errors.Is(err, state.ErrGrantExists) {
			return 1
		}
		return 1
	}
	if token != "" {
		fmt.Fprintln(stdout, token)
		fmt.Fprintf(stderr, "airlock grant: %s created; its token (above) is shown only now: Airlock keeps its sha256 alone\n", name)
	} else {
		fmt.Fprintf(stderr, "airlock grant: %s created for uid %d\n", name, *g.UID)
	}
	return 0
}

// configGrants are the grant names the config gives callers.
func configGrants(cfg *runtime.Config) []string {
	out := []string{cfg.Grant.ID}
	for _, t := range cfg.HTTP.Tokens {
		out = append(out, t.Grant)
	}
	return out
}

func grantList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock grant list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf controlFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "airlock grant list: bad arguments\n\n%s", grantUsage)
		return 2
	}
	_, store, err := cf.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "airlock grant list: %v\n", err)
		return 2
	}
	defer store.Close()
	c, err := store.Control(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "airlock grant list: %v\n", err)
		return 1
	}
	slices.SortFunc(c.Grants, func(a, b state.Grant) int { return strings.Compare(a.Name, b.Name) })
	now := time.Now()
	if *asJSON {
		type row struct {
			state.Grant
			Status string `json:"status"`
		}
		rows := make([]row, 0, len(c.Grants))
		for _, g := range c.Grants {
			g.TokenSHA256 = "" // no use to a reader, and one step closer to the token
			rows = append(rows, row{g, g.Status(now)})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tLABELS\tUID\tCREATED\tEXPIRES")
	for _, g := range c.Grants {
		var labels []string
		for k, v := range g.Labels {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		uid, exp := "-", "never"
		if g.UID != nil {
			uid = strconv.FormatUint(uint64(*g.UID), 10)
		}
		if !g.Expires.IsZero() {
			exp = g.Expires.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Status(now), strings.Join(labels, ","), uid, g.Created.Format(time.RFC3339), exp)
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

func grantRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock grant revoke", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf controlFlags
	cf.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil || len(pos) != 1 {
		fmt.Fprintf(stderr, "airlock grant revoke: give exactly one grant NAME\n\n%s", grantUsage)
		return 2
	}
	_, store, err := cf.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "airlock grant revoke: %v\n", err)
		return 2
	}
	defer store.Close()
	g, err := store.RevokeGrant(ctx, pos[0], time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "airlock grant revoke: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "grant %s revoked at %s\n", g.Name, g.Revoked.Format(time.RFC3339))
	stopped := notifyServers(ctx, stderr)
	if stopped >= 0 {
		fmt.Fprintf(stdout, "%d calls in flight stopped\n", stopped)
	}
	return 0
}
