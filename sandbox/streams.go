package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Streams are the live standard streams of a long-lived run (Spec.Streams). Stdin and Stdout
// are pipe ends a backend hands to the container (runc passes them straight to the command;
// the daemons copy them); Start makes them.
type Streams struct {
	Stdin  *os.File  // the command's stdin until its write end closes
	Stdout *os.File  // every byte of the command's stdout
	Stderr io.Writer // every byte of its stderr; nil: captured up to Spec.StderrCap
}

// Input is what a backend connects to the command's stdin: the live stream, Spec.Stdin, or
// nil for /dev/null.
func (s Spec) Input() io.Reader {
	switch {
	case s.Streams != nil:
		return s.Streams.Stdin
	case s.Stdin != nil:
		return bytes.NewReader(s.Stdin)
	}
	return nil
}

// Outputs are the writers a backend connects to the command's stdout and stderr, and collect,
// which fills a Result's captured output once the command is gone. A live stream is not
// captured: its Result has no Stdout (and no Stderr when Streams.Stderr is set).
//
// A live stream's writer never fails: once its reader is gone (Stop and Kill close Stdout)
// or it fails, the rest is discarded. A backend that copies the container's output (docker's
// attach stream, containerd's FIFOs) so keeps draining it; a copy that stopped at the first
// failed write would leave the daemon or the shim blocked on the container's output, and
// the kill and the exit would wait for its grace periods.
func (s Spec) Outputs() (stdout, stderr io.Writer, collect func(*Result)) {
	var out, errs *CappedBuffer
	if s.Streams != nil {
		if s.Streams.Stdout != nil {
			stdout = &drainWriter{w: s.Streams.Stdout}
		}
		if s.Streams.Stderr != nil {
			stderr = &drainWriter{w: s.Streams.Stderr}
		}
	}
	if stdout == nil {
		out = NewCappedBuffer(s.StdoutCap)
		stdout = out
	}
	if stderr == nil {
		errs = NewCappedBuffer(s.StderrCap)
		stderr = errs
	}
	return stdout, stderr, func(r *Result) {
		if out != nil {
			r.Stdout, r.StdoutTruncated = out.Bytes(), out.Truncated()
		}
		if errs != nil {
			r.Stderr, r.StderrTruncated = errs.Bytes(), errs.Truncated()
		}
	}
}

// drainWriter passes writes on to w until one fails, and then discards them.
type drainWriter struct {
	w      io.Writer
	failed atomic.Bool
}

func (d *drainWriter) Write(p []byte) (int, error) {
	if !d.failed.Load() {
		if _, err := d.w.Write(p); err != nil {
			d.failed.Store(true)
		}
	}
	return len(p), nil
}

// StopGrace is how long Process.Stop waits, after closing the server's stdin, for it to exit on
// its own before the container is killed (the MCP stdio shutdown: close stdin, then kill).
const StopGrace = 2 * time.Second

// ErrStopped is the cause a Process's run is cancelled with when Stop kills it.
var ErrStopped = errors.New("sandbox process stopped")

// Process is a long-lived run of one command (a stdio MCP server) in a container with the
// same hardening as any run of its Spec: Start runs it through Backend.Run, so every backend
// gives it its one-shot sandbox, its limits and its cleanup. Nothing about the container is
// reused: it is removed when the command exits or Stop kills it.
type Process struct {
	// Stdin is the command's stdin; closing it gives the command end-of-file.
	Stdin io.WriteCloser
	// Stdout is the command's stdout; it ends (io.EOF) once the container is gone. Read it
	// as the command writes: the daemons' backends copy the container's output into it, and
	// while its pipe is full that copy, and so the run, waits. Stop and Kill close it.
	Stdout io.ReadCloser

	cancel context.CancelCauseFunc
	done   chan struct{}
	res    Result
	err    error
	once   sync.Once
	killed atomic.Bool // Stop or Kill killed the container
}

// Start runs spec on b in the background with its stdin and stdout as pipes. The run is not
// bound to ctx's cancellation (only to its values): it lasts until the command exits or Stop.
// Spec.Timeout still bounds its whole life, enforced by the sandbox init, so a long-lived
// server's profile gives it a long one. A spec the backend refuses, or a container it cannot
// start, ends the Process at once: Done closes and Wait reports why.
func Start(ctx context.Context, b Backend, spec Spec, stderr io.Writer) (*Process, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: stdin pipe: %v", ErrUnavailable, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("%w: stdout pipe: %v", ErrUnavailable, err)
	}
	spec.Stdin = nil
	spec.Streams = &Streams{Stdin: inR, Stdout: outW, Stderr: stderr}
	rctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	p := &Process{Stdin: inW, Stdout: outR, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.res, p.err = b.Run(rctx, spec)
		// The container is gone: its stdout ends once this process's copy of the write end
		// is closed too, and writes to its stdin fail instead of filling the pipe.
		outW.Close()
		inR.Close()
	}()
	return p, nil
}

// Killed reports whether Stop or Kill killed the container (rather than its command exiting).
func (p *Process) Killed() bool { return p.killed.Load() }

// Done is closed when the container is gone.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the container to be gone and returns the run's outcome: the command's exit
// code (137 when Stop or Kill killed it, even before it started), OOM and timeout flags, and
// the backend's error, if any. A run that Stop or Kill ended is not an error.
func (p *Process) Wait() (Result, error) {
	<-p.done
	if errors.Is(p.err, ErrStopped) {
		res := p.res
		if !res.Ran {
			// Killed while the container was still being made: the backend reports no
			// exit, but the caller ended it all the same.
			res.ExitCode = ExitKilled
		}
		return res, nil
	}
	return p.res, p.err
}

// Stop ends the process: it closes its stdin, gives it StopGrace to exit, then kills the
// container, and returns once the container is removed. Safe to call more than once and
// concurrently; every call returns Wait's outcome.
func (p *Process) Stop() (Result, error) {
	p.once.Do(func() {
		p.Stdin.Close()
		t := time.NewTimer(StopGrace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.kill()
		}
	})
	res, err := p.Wait()
	p.Stdout.Close()
	return res, err
}

// Kill ends the process at once, without the grace Stop gives, and returns once the
// container is removed.
func (p *Process) Kill() (Result, error) {
	p.once.Do(func() {
		p.Stdin.Close()
		p.kill()
	})
	res, err := p.Wait()
	p.Stdout.Close()
	return res, err
}

// kill cancels the run, which kills the container, and closes Stdout: output of a killed
// process is not wanted, and the daemons' backends copy the container's output into the
// Stdout pipe, a copy that blocks while the pipe is full and nobody reads it, so that the
// run (and so Stop) would never end. With the read end closed the copy fails instead.
func (p *Process) kill() {
	p.killed.Store(true)
	p.cancel(ErrStopped)
	p.Stdout.Close()
}
