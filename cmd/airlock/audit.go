package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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

// auditVerify checks the hash chain: exit 0 when every record verifies (a torn final line of
// the kind a crash mid-write leaves included: it was never part of the chain), 1 when the log is
// broken (an edited, removed, reordered or truncated record), 2 on usage or I/O errors.
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
	// Record ids and the head file's hash come from the file: whoever could write it chose them.
	stdout = clientTextWriter{stdout}
	rep, err := pipeline.VerifyLog(path)
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit verify: %v\n", err)
		return 2
	}
	last := rep.LastID
	if last == "" {
		last = "(none)"
	}
	broken := func(why string) int {
		fmt.Fprintf(stdout, "BROKEN %s: %d intact records, last intact record %s; %s\n", path, rep.Records, last, why)
		return 1
	}
	switch {
	case rep.Broken:
		return broken(fmt.Sprintf("line %d: %s", rep.BrokenLine, rep.Reason))
	case rep.HeadFound && !rep.HeadOK:
		return broken(rep.HeadMsg)
	case rep.TornComplete:
		// A writer emits a record and its newline in one write; a complete record without
		// its newline is a log cut short by hand, and the next writer would set it aside.
		return broken(fmt.Sprintf("the last %d bytes are a complete record without its newline: the log was truncated", rep.TornBytes))
	case rep.CrashTorn():
		fmt.Fprintf(stdout, "OK %s: %d records, chain intact, last record %s; followed by a torn final write of %d bytes (a crash mid-write, never part of the chain) that the next writer moves aside to %s.torn-*\n",
			path, rep.Records, last, rep.TornBytes, path)
		printCalls(stdout, rep.VerifyReport)
		return 0
	}
	fmt.Fprintf(stdout, "OK %s: %d records, chain intact, last record %s\n", path, rep.Records, last)
	printCalls(stdout, rep.VerifyReport)
	return 0
}

// printCalls reports calls interrupted by an Airlock process that died: closed by a later
// start (reaped) or still open. Neither breaks the chain; both are worth a look.
func printCalls(w io.Writer, rep pipeline.VerifyReport) {
	if rep.Reaped > 0 {
		fmt.Fprintf(w, "  %d call(s) were interrupted by an Airlock process that died; a later start removed their containers (phase \"reaped\")\n", rep.Reaped)
	}
	if rep.UnfinishedCount > 0 {
		fmt.Fprintf(w, "  %d call(s) started and have no closing record yet (running now, or their Airlock died and no start has reaped them since): %s\n",
			rep.UnfinishedCount, strings.Join(rep.Unfinished, ", "))
	}
}

// auditTail prints the last N records as JSON lines, optionally only denials, with control
// and format characters escaped (see clientTextSafe).
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
		// Tool names, keys, session ids and messages come from clients. The escapes keep each
		// line valid JSON that decodes to the same record.
		stdout.Write(clientTextSafe(ring[(start+i)%max(*n, 1)]))
		io.WriteString(stdout, "\n")
	}
	return 0
}

// clientTextWriter writes through clientTextSafe; each Write must hold whole characters (one
// Fprintf does).
type clientTextWriter struct{ w io.Writer }

func (c clientTextWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write(clientTextSafe(p)); err != nil {
		return 0, err
	}
	return len(p), nil
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
