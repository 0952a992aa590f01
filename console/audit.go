package console

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/airlock-mcp/airlock/pipeline"
)

// tailBytes bounds how much of the log's end the trail reads: the last records, not the
// whole history (audit export is for that).
const tailBytes = 4 << 20

// filter is the trail's filter: exact tool, grant and decision, each optional.
type filter struct{ tool, grant, decision string }

func filterOf(r *http.Request) filter {
	q := r.URL.Query()
	return filter{tool: q.Get("tool"), grant: q.Get("grant"), decision: q.Get("decision")}
}

// match decodes one log line and reports whether it passes; closing records only (an intent
// record is the start of a call whose closing record follows).
func (f filter) match(line []byte) (map[string]any, bool) {
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		return nil, false
	}
	if p, _ := rec["phase"].(string); p == pipeline.PhaseStarted {
		return nil, false
	}
	for k, want := range map[string]string{"tool": f.tool, "grant": f.grant, "decision": f.decision} {
		if got, _ := rec[k].(string); want != "" && got != want {
			return nil, false
		}
	}
	return rec, true
}

// auditList returns the last n matching records, newest last.
func (h *Handler) auditList(w http.ResponseWriter, r *http.Request) {
	n := limitParam(r, 200, 2000)
	f := filterOf(r)
	fh, err := os.Open(h.b.AuditPath())
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	start := max(st.Size()-tailBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(fh, start, st.Size()-start))
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	lines := bytes.Split(b, []byte("\n"))
	if start > 0 && len(lines) > 0 {
		lines = lines[1:] // the first is cut
	}
	out := []map[string]any{}
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if rec, ok := f.match(lines[i]); ok {
			out = append(out, rec)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	writeJSON(w, out)
}

// auditStream sends each record appended from now on that passes the filter. The log is
// followed by offset; a log replaced (rotated, moved aside) is followed from its start.
func (h *Handler) auditStream(w http.ResponseWriter, r *http.Request) {
	fl := sse(w)
	if fl == nil {
		return
	}
	f := filterOf(r)
	path := h.b.AuditPath()
	var ino uint64
	var off int64
	if st, err := os.Stat(path); err == nil {
		ino, off = inode(st), st.Size()
	}
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	idle := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		if !h.stillAllowed(r) {
			return
		}
		st, err := os.Stat(path)
		if err != nil {
			continue
		}
		if inode(st) != ino || st.Size() < off {
			ino, off = inode(st), 0
		}
		if st.Size() == off {
			if idle++; idle%50 == 0 { // a comment every 15 s keeps proxies from closing it
				if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
					return
				}
				fl.Flush()
			}
			continue
		}
		fh, err := os.Open(path)
		if err != nil {
			continue
		}
		br := bufio.NewReader(io.NewSectionReader(fh, off, st.Size()-off))
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				break // an incomplete last line waits for the next tick
			}
			off += int64(len(line))
			if rec, ok := f.match(bytes.TrimSpace(line)); ok {
				if sendEvent(w, fl, "record", rec) != nil {
					fh.Close()
					return
				}
			}
		}
		fh.Close()
	}
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// auditVerify checks the whole chain across the rotated files, as `airlock audit verify` does.
func (h *Handler) auditVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := pipeline.LogSet{Active: h.b.AuditPath()}.Verify()
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	out := map[string]any{"intact": rep.Intact(), "records": rep.Records, "files": len(rep.Files), "last_id": rep.LastID,
		"broken_line": rep.BrokenLine, "reason": rep.Reason, "torn_bytes": rep.TornBytes, "head": rep.HeadMsg,
		"earlier_removed": rep.EarlierRemoved(), "checked": time.Now().UTC()}
	if rep.BrokenFile != "" {
		out["broken_file"] = filepath.Base(rep.BrokenFile)
	}
	writeJSON(w, out)
}
