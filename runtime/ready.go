package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
)

// readiness answers /readyz: could a call run and be recorded now? Two checks, each an
// actual attempt and each cached, so that a load balancer polling every second costs at most
// one sandbox start per readyBackendOK:
//
//   - the backend runs `true` in a fresh sandbox with the hardened defaults (through the run
//     gate, not the pool: a probe must neither take a sandbox kept ready for a call nor make
//     the pool keep sandboxes of its own shape);
//   - the audit log accepts records (AuditStatus: not stopped by a failed write, no records
//     held for a full disk) and the kernel would let Airlock write its file and its
//     directory (access(2), which, unlike a mode check, sees a read-only mount and the
//     immutable flag even for root). Nothing is written.
type readiness struct {
	r   *Runtime
	now func() time.Time

	mu      sync.Mutex
	backend readyCheck
	audit   readyCheck
	probing chan struct{} // closed when the backend check in flight ends; nil when none
	wasOK   *bool         // the last report's verdict, to log changes
}

// readyCheck is the result of one check.
type readyCheck struct {
	at   time.Time
	took time.Duration
	err  error // nil: passed
}

// How long a check's result is reused. A failure is re-checked sooner, so a recovered
// backend is ready again within seconds.
const (
	readyBackendOK   = 30 * time.Second
	readyBackendFail = 5 * time.Second
	readyAudit       = 2 * time.Second
	readyProbeLimit  = 10 * time.Second // a probe that takes longer fails
)

func newReadiness(r *Runtime) *readiness { return &readiness{r: r, now: time.Now} }

// report runs the checks whose results are stale and says whether Airlock is ready, with a
// plain-text body naming each check, its outcome and when it ran.
func (rd *readiness) report(ctx context.Context) (bool, string) {
	now := rd.now()
	if rd.r.calls.stop.Err() != nil {
		return false, "not ready: airlock is shutting down\n"
	}
	a := rd.auditCheck(now)
	b := rd.backendCheck(ctx, now)
	ok := a.err == nil && b.err == nil
	rd.logChange(ok, a, b)
	var s strings.Builder
	switch {
	case ok:
		s.WriteString("ready\n")
	case a.err != nil:
		fmt.Fprintf(&s, "not ready: the audit log cannot take records (%s)\n", reason(a.err))
	default:
		fmt.Fprintf(&s, "not ready: the %s backend cannot run a sandbox (%s)\n", rd.r.cfg.Backend, reason(b.err))
	}
	line := func(what, okText string, c readyCheck) {
		verdict := "ok: " + okText
		if c.err != nil {
			verdict = "FAIL: " + reason(c.err)
		}
		fmt.Fprintf(&s, "%s: %s (checked %s ago, at %s)\n", what, verdict,
			now.Sub(c.at).Round(time.Millisecond), c.at.UTC().Format(time.RFC3339))
	}
	line("audit log", "accepting records, file and directory writable", a)
	line("backend "+rd.r.cfg.Backend, fmt.Sprintf("ran `true` in a fresh sandbox in %d ms", b.took.Milliseconds()), b)
	return ok, s.String()
}

// auditCheck checks the audit log, at most every readyAudit.
func (rd *readiness) auditCheck(now time.Time) readyCheck {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if !rd.audit.at.IsZero() && now.Sub(rd.audit.at) < readyAudit {
		return rd.audit
	}
	c := readyCheck{at: now}
	c.err = rd.r.pipe.AuditStatus()
	if c.err == nil {
		path := rd.r.pipe.AuditPath()
		// The directory too: the head and lock files live beside the log, and a rotated log
		// is created there.
		for _, p := range []string{filepath.Dir(path), path} {
			if err := unix.Access(p, unix.W_OK); err != nil {
				c.err = fmt.Errorf("audit log: %s is not writable: %w", p, err)
				break
			}
		}
	}
	rd.audit = c
	return c
}

// backendCheck returns the backend check, running one if the last is stale. While one runs,
// callers get the previous result (with its time); the first caller waits for it.
func (rd *readiness) backendCheck(ctx context.Context, now time.Time) readyCheck {
	rd.mu.Lock()
	c := rd.backend
	ttl := readyBackendOK
	if c.err != nil {
		ttl = readyBackendFail
	}
	if !c.at.IsZero() && now.Sub(c.at) < ttl {
		rd.mu.Unlock()
		return c
	}
	if rd.probing == nil {
		done := make(chan struct{})
		rd.probing = done
		// Owned by the readiness: it ends within readyProbeLimit, or at once when the
		// runtime shuts down (the probe's context is the runtime's).
		go func() {
			res := rd.probe()
			rd.mu.Lock()
			rd.backend, rd.probing = res, nil
			rd.mu.Unlock()
			close(done)
		}()
	}
	wait := rd.probing
	rd.mu.Unlock()
	if !c.at.IsZero() {
		return c
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return readyCheck{at: now, err: fmt.Errorf("the request ended before the first backend check did: %w", ctx.Err())}
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.backend
}

// probe runs `true` in a fresh sandbox.
func (rd *readiness) probe() readyCheck {
	ctx, cancel := context.WithTimeout(rd.r.calls.stop, readyProbeLimit)
	defer cancel()
	start := rd.now()
	c := readyCheck{at: start}
	spec, err := sandbox.New(sandbox.WithArgv("true"), sandbox.WithTimeout(readyProbeLimit),
		sandbox.WithLabel(sandbox.LabelTool, "airlock-readyz"))
	if err != nil {
		c.err = err
		return c
	}
	res, err := rd.r.probe.Run(ctx, spec)
	c.took = rd.now().Sub(start)
	switch {
	case err != nil:
		c.err = fmt.Errorf("running `true` in %s: %w", spec.Image, err)
	case res.ExitCode != 0:
		c.err = fmt.Errorf("`true` in %s exited %d: %s", spec.Image, res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	return c
}

// logChange logs when readiness changes, with the checks' full errors (the body has only
// their reasons).
func (rd *readiness) logChange(ok bool, a, b readyCheck) {
	rd.mu.Lock()
	changed := rd.wasOK == nil || *rd.wasOK != ok
	rd.wasOK = &ok
	rd.mu.Unlock()
	if !changed {
		return
	}
	if ok {
		rd.r.log.Info().Str("event", "ready.changed").Bool("ready", true).Msg("ready: the backend runs sandboxes and the audit log takes records")
		return
	}
	e := rd.r.log.Warn().Str("event", "ready.changed").Bool("ready", false)
	if a.err != nil {
		e = e.AnErr("audit_error", a.err)
	}
	if b.err != nil {
		e = e.AnErr("backend_error", b.err)
	}
	e.Msg("not ready")
}

// reason is an error as /readyz shows it to callers who presented no credentials: the kind of
// failure (a system error's text, a full disk, a time-out), never the error's own text, which
// can hold host paths and whatever a backend or the kernel's tools printed.
func reason(err error) string {
	var errno syscall.Errno
	switch {
	case errors.Is(err, pipeline.ErrAuditFull):
		return "its file system is full"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s", readyProbeLimit)
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, sandbox.ErrUnavailable):
		return "the backend is unavailable; see the server log, event ready.changed"
	}
	return "see the server log, event ready.changed"
}
