package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/pipeline"
)

// otlpBatchSize is how many records one OTLP/JSON line (one ExportLogsServiceRequest) holds.
const otlpBatchSize = 512

// auditExport writes the records of the log's files, in chain order, to stdout: as they are
// in the log (ndjson) or as OTLP/JSON logs (otlp). It verifies the chain as it reads and
// writes only records that verified: when the chain breaks it stops there, says where on
// stderr and exits 1, so what was written is a verified prefix of the chain, not the whole.
// A set whose every record verified but whose head file says records were cut from the end
// exits 1 too, after writing them all. Exit 0: intact; 2: usage or I/O errors.
func auditExport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "only records at or after T (RFC 3339, or a duration such as 24h or 7d meaning that long ago)")
	until := fs.String("until", "", "only records before T (same forms as --since)")
	format := fs.String("format", "ndjson", "ndjson (the records as they are) or otlp (OTLP/JSON logs)")
	src := addSourceFlags(fs, true)
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "airlock audit export: %v\n%s\n", err, auditUsage)
		return 2
	}
	set, err := src.set(files)
	if err != nil {
		return usage(err)
	}
	now := time.Now()
	from, err := parseAuditTime(*since, now)
	if err != nil {
		return usage(fmt.Errorf("--since: %w", err))
	}
	to, err := parseAuditTime(*until, now)
	if err != nil {
		return usage(fmt.Errorf("--until: %w", err))
	}
	var enc recordEncoder
	switch *format {
	case "ndjson":
		enc = &ndjsonEncoder{}
	case "otlp":
		enc = &otlpEncoder{}
	default:
		return usage(fmt.Errorf("--format %q: want ndjson or otlp", *format))
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	var out io.Writer = w
	if writerIsTerminal(stdout) {
		// Records hold text clients chose; on a terminal it is escaped as tail escapes it
		// (redirected, the bytes are the log's, which a receiver can verify again). Each
		// write is a whole line, so no character is split.
		out = clientTextWriter{w}
	}
	rep, err := set.Read(func(line []byte, rec *pipeline.Record) error {
		if !from.IsZero() || !to.IsZero() {
			t, err := time.Parse(time.RFC3339Nano, rec.Time)
			if err != nil || !from.IsZero() && t.Before(from) || !to.IsZero() && !t.Before(to) {
				return nil
			}
		}
		return enc.add(out, line, rec)
	})
	if err == nil {
		err = enc.flush(out)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "airlock audit export: %v\n", err)
		return 2
	}
	path := setName(set)
	switch {
	case rep.Broken:
		fmt.Fprintf(stderr, "airlock audit export: BROKEN %s: %s line %d: %s; exported the %d records before it\n",
			path, rep.BrokenFile, rep.BrokenLine, clientTextSafe([]byte(rep.Reason)), rep.Records)
		return 1
	case rep.HeadFound && !rep.HeadOK:
		fmt.Fprintf(stderr, "airlock audit export: BROKEN %s: %s\n", path, clientTextSafe([]byte(rep.HeadMsg)))
		return 1
	case rep.TornComplete:
		fmt.Fprintf(stderr, "airlock audit export: BROKEN %s: the last %d bytes are a complete record without its newline: the log was truncated\n", path, rep.TornBytes)
		return 1
	}
	if rep.EarlierRemoved() {
		fmt.Fprintf(stderr, "airlock audit export: %s: chain starts at %s (earlier files removed)\n", path, rep.Start)
	}
	return 0
}

// parseAuditTime parses an RFC 3339 time, or a duration meaning that long before now (Go's
// units, and d for days). "" is the zero time: no bound.
func parseAuditTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && err != nil {
		n, nerr := strconv.Atoi(days)
		d, err = time.Duration(n)*24*time.Hour, nerr
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-11-21T00:00:00Z) or a duration ago (24h, 90m, 7d)", s)
	}
	return now.Add(-d), nil
}

// recordEncoder writes exported records.
type recordEncoder interface {
	add(w io.Writer, line []byte, rec *pipeline.Record) error
	flush(w io.Writer) error
}

// ndjsonEncoder writes each record's line as it is in the log.
type ndjsonEncoder struct{}

func (ndjsonEncoder) add(w io.Writer, line []byte, _ *pipeline.Record) error {
	if _, err := w.Write(line); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func (ndjsonEncoder) flush(io.Writer) error { return nil }

// otlpEncoder writes one ExportLogsServiceRequest per line, otlpBatchSize records each.
type otlpEncoder struct{ batch pipeline.OTLPBatch }

func (e *otlpEncoder) add(w io.Writer, line []byte, rec *pipeline.Record) error {
	e.batch.Add(line, rec)
	if e.batch.Len() < otlpBatchSize {
		return nil
	}
	return e.flush(w)
}

func (e *otlpEncoder) flush(w io.Writer) error {
	if e.batch.Len() == 0 {
		return nil
	}
	b, err := e.batch.Encode()
	if err != nil {
		return errors.Join(errors.New("encoding OTLP"), err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return err
	}
	return nil
}
