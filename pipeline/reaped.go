package pipeline

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// RecordReaped closes, in its own audit log, every call whose container a start-up reap
// removed: an Airlock process died (SIGKILL, the OOM killer, a crash) while the call ran, so
// the call has an intent record (PhaseStarted) and no closing one. The reaped record
// (PhaseReaped) carries the same audit_id, the container id and whether any process of the
// container was still alive. Containers without the call labels (not started by a pipeline)
// need no record. Every log named is opened, appended to under its lock and closed; an error
// names the calls left unrecorded.
func RecordReaped(reaped []sandbox.Reaped, backend string, now time.Time) error {
	byLog := map[string][]sandbox.Reaped{}
	for _, r := range reaped {
		id, path := r.Labels[sandbox.LabelAuditID], r.Labels[sandbox.LabelAuditLog]
		if id == "" || path == "" {
			continue
		}
		byLog[path] = append(byLog[path], r)
	}
	var errs []error
	for path, rs := range byLog {
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			errs = append(errs, fmt.Errorf("reaped containers name the audit log %q, which is not a clean absolute path; not recorded", path))
			continue
		}
		if err := appendReaped(path, rs, backend, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func appendReaped(path string, rs []sandbox.Reaped, backend string, now time.Time) error {
	log, _, err := OpenAudit(path)
	if err != nil {
		return fmt.Errorf("recording %d reaped call(s): %w", len(rs), err)
	}
	var errs []error
	for _, r := range rs {
		state := "had already stopped (its in-container deadline or its command ended it)"
		if r.Running {
			state = "was still running and was killed"
		}
		rec := &Record{
			AuditID:     r.Labels[sandbox.LabelAuditID],
			Time:        now.UTC().Format(time.RFC3339Nano),
			Tool:        r.Labels[sandbox.LabelTool],
			ArgKeys:     []string{},
			Decision:    "allow",
			Message:     "the Airlock process running this call died before it finished; a later start removed its container, which " + state,
			Backend:     backend,
			ContainerID: r.ContainerID,
			Redactions:  map[string]int{},
			StageMS:     map[string]float64{},
			Phase:       PhaseReaped,
		}
		if err := log.Append(rec); err != nil {
			errs = append(errs, fmt.Errorf("recording reaped call %s: %w", rec.AuditID, err))
		}
	}
	if err := log.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
