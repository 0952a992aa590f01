package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/upstream"
)

// A stdio upstream's server runs in a long-lived container of its profile (sandbox.Start): the
// same hardening as a one-shot run, on the configured backend, counted against the host run
// budget for as long as it lives. A server that dies on its own is started again at the next
// call that needs it, after a backoff that grows with each crash in a row.

// Restart backoff of a crashing stdio server.
const (
	restartBase  = 500 * time.Millisecond
	restartMax   = 30 * time.Second
	restartReset = time.Minute // a server that lived this long starts the count again
)

// LabelUpstream names the upstream a long-lived container serves.
const LabelUpstream = "airlock.upstream"

// stdioLauncher starts one stdio upstream's server.
type stdioLauncher struct {
	name    string
	backend sandbox.Backend
	opts    []sandbox.Option // the profile's, the upstream's mounts, workdir, env and argv
	secrets []string
	log     zerolog.Logger

	mu        sync.Mutex
	crashes   int // in a row
	nextStart time.Time
}

// newStdioLauncher builds the sandbox options of upstream name's server: its profile for the
// config's workspace, then its own mounts, working directory, environment and command.
func newStdioLauncher(cfg *Config, name string, u UpstreamConfig, env map[string]string, secrets []string, backend sandbox.Backend, log zerolog.Logger) (*stdioLauncher, error) {
	opts, err := cfg.ProfileOptions(u.stdioProfile())
	if err != nil {
		return nil, cfg.errAt(err.Error(), "upstreams", name, "profile")
	}
	for _, m := range u.Mounts {
		access := sandbox.Access(m.Access)
		if access == "" {
			access = sandbox.ReadOnly
		}
		opts = append(opts, sandbox.WithMount(sandbox.Mount{Source: m.Source, Target: path.Clean(m.Target), Access: access}))
	}
	if u.Workdir != "" {
		opts = append(opts, sandbox.WithWorkdir(u.Workdir))
	}
	kv := make([]string, 0, len(env))
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	if len(kv) > 0 {
		opts = append(opts, sandbox.WithEnv(kv...))
	}
	opts = append(opts, sandbox.WithArgv(u.Command...), sandbox.WithLabel(LabelUpstream, name))
	if _, err := sandbox.New(opts...); err != nil {
		return nil, cfg.errAt(err.Error(), "upstreams", name, "command")
	}
	return &stdioLauncher{name: name, backend: backend, opts: opts, secrets: secrets, log: log}, nil
}

// launch starts a server. A server that crashed recently waits out its backoff first, or, if
// ctx ends before that, fails saying when the next start is.
func (l *stdioLauncher) launch(ctx context.Context) (*upstream.Pipes, error) {
	if err := l.waitBackoff(ctx); err != nil {
		return nil, err
	}
	spec, err := sandbox.New(l.opts...)
	if err != nil {
		return nil, err
	}
	stderr := newStderrLog(l.log, l.name, l.secrets)
	p, err := sandbox.Start(ctx, l.backend, spec, stderr)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	// stopped: Airlock ended the server, by closing its session (which closes its stdout
	// reader, then its stdin) or by Stop. A server whose stdout had ended before that ended on
	// its own: its session notices the end of the stream and closes, which calls Stop, usually
	// before the backend has reaped the container. Counting that as a stop would lose the
	// crash (no backoff, no stderr in the failed call's error).
	var stopped, eof atomic.Bool
	stopping := func() {
		if !eof.Load() {
			stopped.Store(true)
		}
	}
	stdout := &eofReader{r: p.Stdout, eof: &eof, closing: stopping}
	exited := make(chan struct{})
	var how string
	go func() {
		res, err := p.Wait()
		stderr.Close()
		how = describeExit(res, err, spec)
		ev := l.log.Info()
		// Ended by Airlock: stopped and exited cleanly on end-of-file, or killed by the stop.
		// Anything else (an exit of its own, a crash, a kill from elsewhere) counts towards
		// the restart backoff.
		if ended := p.Killed() || (stopped.Load() && err == nil && res.ExitCode == 0); !ended {
			l.crashed(time.Since(started))
			ev = l.log.Warn()
			if tail := lastLines(stderr.Tail(), exitReportTail); tail != "" {
				how += "; its stderr ends: " + tail
			}
		}
		ev.Str("event", "upstream.exited").Str("upstream", l.name).Str("container", res.ContainerID).
			Bool("stopped", stopped.Load()).Dur("lived", time.Since(started)).Str("stderr_tail", stderr.Tail()).Msg("server " + how)
		close(exited)
	}()
	l.log.Debug().Str("event", "upstream.started").Str("upstream", l.name).Msg("server starting")
	return &upstream.Pipes{
		Stdout: stdout,
		Stdin:  p.Stdin,
		Done:   exited,
		Exited: func() string { return how },
		Stop: func() {
			stopping()
			_, _ = p.Stop()
		},
	}, nil
}

// eofReader records that a server's stdout ended (EOF or a read error) before the reader
// sees it, and calls closing before it is closed.
type eofReader struct {
	r       io.ReadCloser
	eof     *atomic.Bool
	closing func()
}

func (e *eofReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil {
		e.eof.Store(true)
	}
	return n, err
}

func (e *eofReader) Close() error {
	e.closing()
	return e.r.Close()
}

// crashed counts a server that ended without being stopped and sets the next start's time.
func (l *stdioLauncher) crashed(lived time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lived >= restartReset {
		l.crashes = 0
	}
	l.crashes++
	wait := restartMax
	if l.crashes <= 16 {
		wait = min(restartBase<<(l.crashes-1), restartMax)
	}
	l.nextStart = time.Now().Add(wait)
}

func (l *stdioLauncher) waitBackoff(ctx context.Context) error {
	l.mu.Lock()
	next, n := l.nextStart, l.crashes
	l.mu.Unlock()
	wait := time.Until(next)
	if wait <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && dl.Before(next) {
		return fmt.Errorf("its server crashed %d time(s) in a row; the next start is in %s (Airlock's log has its stderr: event upstream.stderr)", n, wait.Round(100*time.Millisecond))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// exitReportTail is how much of a crashed server's stderr its exit report quotes.
const exitReportTail = 400

// lastLines is the end of s, at most n bytes, from a line start when one is within reach.
func lastLines(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return strings.ToValidUTF8(s, "")
}

// describeExit says how a server ended, for the log and for the error of a call it was serving.
func describeExit(res sandbox.Result, err error, spec sandbox.Spec) string {
	switch {
	case err != nil && !res.Ran:
		return "could not be started: " + err.Error()
	case res.OOMKilled:
		return fmt.Sprintf("was killed by the out-of-memory killer (its profile's memory limit is %d MiB)", spec.Limits.MemoryBytes>>20)
	case res.TimedOut:
		return fmt.Sprintf("reached the longest a server may live (its profile's timeout, %s)", spec.Timeout)
	case err != nil:
		return "ended with a sandbox error: " + err.Error()
	case res.ExitCode == 0:
		return "exited (code 0)"
	}
	return fmt.Sprintf("exited with code %d", res.ExitCode)
}

// stderrLog sends a server's stderr to Airlock's diagnostic log, bounded: lines are cut at
// stderrLineMax bytes, at most stderrBurst lines are logged at once and stderrRate per second
// after that (the rest are counted, and the count logged), secrets Airlock holds for the
// server are replaced, and the last stderrTailMax bytes are kept for the exit report.
type stderrLog struct {
	log     zerolog.Logger
	name    string
	secrets []string

	mu      sync.Mutex
	partial []byte
	tail    []byte
	tokens  float64
	last    time.Time
	dropped int
}

const (
	stderrLineMax = 2 << 10
	stderrTailMax = 1 << 10
	stderrBurst   = 100
	stderrRate    = 10.0
)

func newStderrLog(log zerolog.Logger, name string, secrets []string) *stderrLog {
	return &stderrLog{log: log, name: name, secrets: secrets, tokens: stderrBurst, last: time.Now()}
}

func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := stderrLineMax - len(s.partial)
			s.partial = append(s.partial, p[:min(len(p), max(room, 0))]...)
			break
		}
		room := stderrLineMax - len(s.partial)
		s.partial = append(s.partial, p[:min(i, max(room, 0))]...)
		s.line()
		p = p[i+1:]
	}
	return n, nil
}

// line logs the pending line, if the rate allows.
func (s *stderrLog) line() {
	text := s.clean(string(s.partial))
	s.partial = s.partial[:0]
	s.tail = append(s.tail, text...)
	s.tail = append(s.tail, '\n')
	if over := len(s.tail) - stderrTailMax; over > 0 {
		s.tail = s.tail[over:]
	}
	now := time.Now()
	s.tokens = min(stderrBurst, s.tokens+now.Sub(s.last).Seconds()*stderrRate)
	s.last = now
	if s.tokens < 1 {
		s.dropped++
		return
	}
	s.tokens--
	ev := s.log.Info().Str("event", "upstream.stderr").Str("upstream", s.name)
	if s.dropped > 0 {
		ev = ev.Int("dropped_lines", s.dropped)
		s.dropped = 0
	}
	ev.Msg(text)
}

func (s *stderrLog) clean(line string) string {
	for _, sec := range s.secrets {
		if sec != "" {
			line = strings.ReplaceAll(line, sec, "[REDACTED]")
		}
	}
	return pipeline.StripControls(strings.ToValidUTF8(line, "\uFFFD"))
}

// Close logs a last unterminated line and the count of lines the rate dropped.
func (s *stderrLog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 {
		s.line()
	}
	if s.dropped > 0 {
		s.log.Info().Str("event", "upstream.stderr").Str("upstream", s.name).Int("dropped_lines", s.dropped).Msg("stderr lines dropped by the rate limit")
		s.dropped = 0
	}
	return nil
}

// Tail is the end of what the server wrote to stderr (secrets replaced).
func (s *stderrLog) Tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.tail)
}

var errNoBackend = errors.New("no sandbox backend to run stdio upstreams on")
