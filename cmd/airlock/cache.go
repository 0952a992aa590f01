package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/airlock-mcp/airlock/testcache"
)

const cacheUsage = `usage:
  airlock cache list [--json]
      The test caches run_tests keeps (Go build and module caches, npm, pip), one per
      workspace: its directory, the workspace and its size.
  airlock cache clear [WORKSPACE]
  airlock cache clear --all
      Remove the cache of WORKSPACE (default: the current directory), or every cache. The
      next run_tests of that workspace starts cold.

Caches live in $AIRLOCK_STATE_DIR/cache (default /var/lib/airlock/cache). tests.cache: false
in a config turns them off; tests.cache_size (default 2Gi) is the size past which a
workspace's cache is cleared before its next run.

Exit codes: 0 done, 1 no such cache, 2 usage or error.
`

func cmdCache(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, cacheUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	switch {
	case sub == "-h" || sub == "--help" || sub == "help":
		fmt.Fprint(stdout, cacheUsage)
		return 0
	case sub == "list" && (len(rest) == 0 || len(rest) == 1 && rest[0] == "--json"):
		es, err := testcache.List(stateDir())
		if err != nil {
			fmt.Fprintf(stderr, "airlock cache list: %v\n", err)
			return 2
		}
		if len(rest) == 1 {
			if es == nil {
				es = []testcache.Entry{}
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(es)
			return 0
		}
		if len(es) == 0 {
			fmt.Fprintf(stdout, "no test caches in %s\n", testcache.Root(stateDir()))
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SIZE\tWORKSPACE\tDIRECTORY")
		for _, e := range es {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", humanBytes(e.Bytes), e.Workspace, e.Dir)
		}
		_ = tw.Flush()
		return 0
	case sub == "clear" && len(rest) == 1 && rest[0] == "--all":
		n, err := testcache.ClearAll(stateDir())
		if err != nil {
			fmt.Fprintf(stderr, "airlock cache clear: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "cleared %d test cache(s)\n", n)
		return 0
	case sub == "clear" && len(rest) <= 1:
		ws := "."
		if len(rest) == 1 {
			ws = rest[0]
		}
		real, err := filepath.Abs(ws)
		if err == nil {
			real, err = filepath.EvalSymlinks(real)
		}
		if err != nil {
			fmt.Fprintf(stderr, "airlock cache clear: workspace %s: %v\n", ws, err)
			return 2
		}
		found, err := testcache.Clear(stateDir(), real)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "airlock cache clear: %v\n", err)
			return 2
		case !found:
			fmt.Fprintf(stderr, "airlock cache clear: no test cache for %s (airlock cache list shows the caches)\n", real)
			return 1
		}
		fmt.Fprintf(stdout, "cleared the test cache of %s\n", real)
		return 0
	}
	fmt.Fprintf(stderr, "airlock cache: bad arguments %q\n\n%s", args, cacheUsage)
	return 2
}

// humanBytes prints n in the binary units the config uses.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ci", float64(n)/float64(div), "KMGTP"[exp])
}
