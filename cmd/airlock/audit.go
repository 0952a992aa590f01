package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/runtime"
)

// defaultAuditPath is where `airlock serve` and `airlock call` write the audit log.
func defaultAuditPath() string {
	return filepath.Join(stateDir(), "audit", "audit.jsonl")
}

const auditUsage = `usage: airlock audit verify [--config F] [FILE]
       airlock audit verify --files FILE...
       airlock audit tail [-n N] [--denied] [--config F] [FILE]
       airlock audit export [--since T] [--until T] [--format ndjson|otlp] [--config F] [FILE | --files FILE...]

FILE is the active audit log: the config's audit.path with --config F, else
$AIRLOCK_STATE_DIR/audit/audit.jsonl. Its rotated files (audit-<time>-<seq>.jsonl beside it)
are read with it, oldest first; --files names the files of a chain in order instead.`

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, auditUsage)
		fmt.Fprintf(stderr, "\nThe default FILE here is %s.\n", defaultAuditPath())
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
	case "export":
		return auditExport(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "airlock audit: unknown subcommand %q (want verify, tail or export)\n", args[0])
	return 2
}

// auditSource is the set of files an audit command reads, from its flags and arguments.
type auditSource struct {
	config *string
	files  *bool
}

func addSourceFlags(fs *flag.FlagSet, files bool) auditSource {
	s := auditSource{config: fs.String("config", "", "read the audit log named by this config's audit.path")}
	if files {
		s.files = fs.Bool("files", false, "the arguments are the files of one chain, in order")
	}
	return s
}

// set returns the log set the arguments name, or an error for the user.
func (s auditSource) set(args []string) (pipeline.LogSet, error) {
	if s.files != nil && *s.files {
		if len(args) == 0 || *s.config != "" {
			return pipeline.LogSet{}, errors.New("--files needs the files of a chain, in order, and no --config")
		}
		return pipeline.LogSet{Files: args}, nil
	}
	if len(args) > 1 {
		return pipeline.LogSet{}, errors.New("one FILE at most (the active log; its rotated files are found beside it), or --files FILE...")
	}
	if len(args) == 1 {
		if *s.config != "" {
			return pipeline.LogSet{}, errors.New("give FILE or --config, not both")
		}
		return pipeline.LogSet{Active: args[0]}, nil
	}
	if *s.config != "" {
		path, err := configAuditPath(*s.config)
		return pipeline.LogSet{Active: path}, err
	}
	return pipeline.LogSet{Active: defaultAuditPath()}, nil
}

// configAuditPath is the audit log a config file writes to.
func configAuditPath(file string) (string, error) {
	cfg, err := runtime.LoadConfig(file)
	if err != nil {
		return "", err
	}
	switch p := cfg.Audit.Path; {
	case p == "":
		return defaultAuditPath(), nil
	case filepath.IsAbs(p):
		return p, nil
	default:
		return filepath.Join(filepath.Dir(cfg.File), p), nil
	}
}

// name is how reports name the set: its active log, or the last of --files.
func setName(s pipeline.LogSet) string {
	if len(s.Files) > 0 {
		return s.Files[len(s.Files)-1]
	}
	return s.Active
}

// auditVerify checks the hash chain across the log's files: exit 0 when every record verifies
// (a torn final line of the kind a crash mid-write leaves included: it was never part of the
// chain), 1 when the chain is broken (an edited, removed, reordered or truncated record, or a
// file missing, out of order or inserted), 2 on usage or I/O errors.
func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := addSourceFlags(fs, true)
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	set, err := src.set(files)
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit verify: %v\n%s\n", err, auditUsage)
		return 2
	}
	path := setName(set)
	// Record ids and the head file's hash come from the file: whoever could write it chose them.
	stdout = clientTextWriter{stdout}
	rep, err := set.Verify()
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit verify: %v\n", err)
		return 2
	}
	many := len(rep.Files) > 1
	if many {
		printFiles(stdout, rep)
	}
	last := rep.LastID
	if last == "" {
		last = "(none)"
	}
	count := fmt.Sprintf("%d records", rep.Records)
	if many {
		count = fmt.Sprintf("%d records in %d files", rep.Records, len(rep.Files))
	}
	start := ""
	if rep.EarlierRemoved() {
		start = fmt.Sprintf("; chain starts at %s (earlier files removed)", rep.Start)
	}
	fail := func(why string) int {
		fmt.Fprintf(stdout, "BROKEN %s: %d intact records, last intact record %s; %s\n", path, rep.Records, last, why)
		return 1
	}
	switch {
	case rep.Broken:
		where := fmt.Sprintf("line %d", rep.BrokenLine)
		if many || rep.BrokenFile != path {
			where = fmt.Sprintf("%s line %d", rep.BrokenFile, rep.BrokenLine)
		}
		return fail(fmt.Sprintf("%s: %s", where, rep.Reason))
	case rep.HeadFound && !rep.HeadOK:
		return fail(rep.HeadMsg)
	case rep.TornComplete:
		// A writer emits a record and its newline in one write; a complete record without
		// its newline is a log cut short by hand, and the next writer would set it aside.
		return fail(fmt.Sprintf("the last %d bytes are a complete record without its newline: the log was truncated", rep.TornBytes))
	case rep.CrashTorn():
		fmt.Fprintf(stdout, "OK %s: %s, chain intact, last record %s%s; followed by a torn final write of %d bytes (a crash mid-write, never part of the chain) that the next writer moves aside to %s.torn-*\n",
			path, count, last, start, rep.TornBytes, path)
		printCalls(stdout, rep)
		return 0
	}
	fmt.Fprintf(stdout, "OK %s: %s, chain intact, last record %s%s\n", path, count, last, start)
	printCalls(stdout, rep)
	return 0
}

// printFiles reports each file of a set: its records, where its chain starts, where it broke.
func printFiles(w io.Writer, rep pipeline.SetReport) {
	for i, f := range rep.Files {
		switch {
		case f.Missing:
			fmt.Fprintf(w, "  %s: no file (rotated, and nothing written since)\n", f.Path)
		case rep.Broken && i == len(rep.Files)-1: // the list ends at the broken file
			hint := ""
			if rep.BrokenLine == 1 && i > 0 && strings.Contains(rep.Reason, "does not follow") {
				hint = " (a file before it is missing, out of order, or was cut short, or this file does not belong here)"
			}
			fmt.Fprintf(w, "  %s: BROKEN at line %d after %d intact records%s\n", f.Path, rep.BrokenLine, f.Records, hint)
		case i == 0 && rep.EarlierRemoved():
			fmt.Fprintf(w, "  %s: %d records, chain starts at %s (earlier files removed)\n", f.Path, f.Records, rep.Start)
		default:
			fmt.Fprintf(w, "  %s: %d records\n", f.Path, f.Records)
		}
	}
}

// printCalls reports calls interrupted by an Airlock process that died: closed by a later
// start (reaped) or still open. Neither breaks the chain; both are worth a look.
func printCalls(w io.Writer, rep pipeline.SetReport) {
	if rep.Reaped > 0 {
		fmt.Fprintf(w, "  %d call(s) were interrupted by an Airlock process that died; a later start removed their containers (phase \"reaped\")\n", rep.Reaped)
	}
	if rep.UnfinishedCount > 0 {
		fmt.Fprintf(w, "  %d call(s) started and have no closing record yet (running now, or their Airlock died and no start has reaped them since): %s\n",
			rep.UnfinishedCount, strings.Join(rep.Unfinished, ", "))
	}
}

// auditTail prints the last N records as JSON lines, optionally only denials, with control
// and format characters escaped (see clientTextSafe). A rotated log's earlier files are read
// too, newest first, until N records are found.
func auditTail(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock audit tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 20, "number of records to print")
	denied := fs.Bool("denied", false, "only records denied by policy (or by a declined approval)")
	src := addSourceFlags(fs, false)
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	set, err := src.set(files)
	if err != nil || *n < 0 {
		fmt.Fprintln(stderr, "usage: airlock audit tail [-n N] [--denied] [--config F] [FILE]")
		return 2
	}
	rotated, err := pipeline.RotatedFiles(set.Active)
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit tail: %v\n", err)
		return 2
	}
	paths := append(rotated, set.Active)
	var out [][]byte // the last N matching lines, newest file first
	for i := len(paths) - 1; i >= 0 && len(out) < *n; i-- {
		lines, err := lastLines(paths[i], *n-len(out), *denied)
		if errors.Is(err, os.ErrNotExist) && i == len(paths)-1 && len(rotated) > 0 {
			continue // rotated, and nothing written since
		}
		if err != nil {
			fmt.Fprintf(stderr, "airlock audit tail: %v\n", err)
			return 2
		}
		out = append(lines, out...)
	}
	for _, line := range out {
		// Tool names, keys, session ids and messages come from clients. The escapes keep each
		// line valid JSON that decodes to the same record.
		stdout.Write(clientTextSafe(line))
		io.WriteString(stdout, "\n")
	}
	return 0
}

// lastLines returns the last n record lines of the file at path, only denials with denied.
func lastLines(path string, n int, denied bool) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ring := make([][]byte, n) // the last n matching lines, oldest at next once full
	next, seen := 0, 0
	err = pipeline.ReadRecords(f, func(line []byte, rec pipeline.Record) error {
		if (denied && rec.Decision != "deny") || n == 0 {
			return nil
		}
		ring[next] = append(ring[next][:0], line...)
		next = (next + 1) % n
		seen++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	start, count := 0, seen
	if seen > n {
		start, count = next, n
	}
	out := make([][]byte, count)
	for i := range count {
		out[i] = ring[(start+i)%max(n, 1)]
	}
	return out, nil
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
