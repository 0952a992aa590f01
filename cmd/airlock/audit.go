package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/airlock-mcp/airlock/pipeline"
)

// defaultAuditPath is where `airlock serve` and `airlock call` write the audit log.
func defaultAuditPath() string {
	return filepath.Join(stateDir(), "audit", "audit.jsonl")
}

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "usage: airlock audit verify [FILE]")
		fmt.Fprintln(stderr, "       airlock audit tail [-n N] [--denied] [FILE]")
		fmt.Fprintf(stderr, "\nFILE defaults to %s ($AIRLOCK_STATE_DIR/audit/audit.jsonl).\n", defaultAuditPath())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "tail":
		return auditTail(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "airlock audit: unknown subcommand %q (want verify or tail)\n", args[0])
	return 2
}

// auditVerify checks the hash chain: exit 0 when every record verifies, 1 when the log is
// broken (an edited, removed, reordered or torn record), 2 on usage or I/O errors.
func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(files) > 1 {
		fmt.Fprintln(stderr, "usage: airlock audit verify [FILE]")
		return 2
	}
	path := defaultAuditPath()
	if len(files) == 1 {
		path = files[0]
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit verify: %v\n", err)
		return 2
	}
	defer f.Close()
	rep, err := pipeline.Verify(f)
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit verify: reading %s: %v\n", path, err)
		return 2
	}
	last := rep.LastID
	if last == "" {
		last = "(none)"
	}
	switch {
	case rep.Broken:
		fmt.Fprintf(stdout, "BROKEN %s: %d intact records, last intact record %s; line %d: %s\n",
			path, rep.Records, last, rep.BrokenLine, rep.Reason)
		return 1
	case rep.TornBytes > 0:
		fmt.Fprintf(stdout, "BROKEN %s: %d intact records, last intact record %s; %d bytes of an incomplete last record (a write cut short by a crash; the next start moves them aside)\n",
			path, rep.Records, last, rep.TornBytes)
		return 1
	}
	headPath := path + ".head"
	if _, err := os.Stat(headPath); err == nil {
		if ok, msg := pipeline.CheckHead(headPath, rep, path); !ok {
			fmt.Fprintf(stdout, "BROKEN %s: %d intact records, last intact record %s; %s\n", path, rep.Records, last, msg)
			return 1
		}
	}
	fmt.Fprintf(stdout, "OK %s: %d records, chain intact, last record %s\n", path, rep.Records, last)
	return 0
}

// auditTail prints the last N records as JSON lines, optionally only denials.
func auditTail(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock audit tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 20, "number of records to print")
	denied := fs.Bool("denied", false, "only records denied by policy (or by a declined approval)")
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(files) > 1 || *n < 0 {
		fmt.Fprintln(stderr, "usage: airlock audit tail [-n N] [--denied] [FILE]")
		return 2
	}
	path := defaultAuditPath()
	if len(files) == 1 {
		path = files[0]
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit tail: %v\n", err)
		return 2
	}
	defer f.Close()
	ring := make([][]byte, *n) // the last N matching lines, oldest at next once full
	next, seen := 0, 0
	err = pipeline.ReadRecords(f, func(line []byte, rec pipeline.Record) error {
		if (*denied && rec.Decision != "deny") || *n == 0 {
			return nil
		}
		ring[next] = append(ring[next][:0], line...)
		next = (next + 1) % *n
		seen++
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit tail: reading %s: %v\n", path, err)
		return 2
	}
	start, count := 0, seen
	if seen > *n {
		start, count = next, *n
	}
	for i := 0; i < count; i++ {
		stdout.Write(ring[(start+i)%max(*n, 1)])
		io.WriteString(stdout, "\n")
	}
	return 0
}

// parseInterleaved parses flags that may come before or after the positional arguments
// (`airlock audit tail FILE --denied`) and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
