package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// pipeBackend runs a Spec as a Go function over its streams, the way every backend connects
// them: Input, Outputs, and a ctx whose cancellation kills the "container".
type pipeBackend struct {
	refuse error // Run fails at once with it
	// serve is the command: it reads in, writes out, and returns its exit code. nil: cat.
	serve func(ctx context.Context, in io.Reader, out io.Writer) int
}

func (pipeBackend) Name() string                           { return "pipe" }
func (pipeBackend) Reap(context.Context) ([]Reaped, error) { return nil, nil }

func (b pipeBackend) Run(ctx context.Context, spec Spec) (Result, error) {
	if b.refuse != nil {
		return Result{}, b.refuse
	}
	serve := b.serve
	if serve == nil {
		serve = func(_ context.Context, in io.Reader, out io.Writer) int {
			_, _ = io.Copy(out, in)
			return 0
		}
	}
	stdout, stderr, collect := spec.Outputs()
	fmt.Fprintln(stderr, "started")
	in := spec.Input()
	if in == nil {
		in = strings.NewReader("")
	}
	exited := make(chan int, 1)
	go func() { exited <- serve(ctx, in, stdout) }()
	var res Result
	res.Ran = true
	select {
	case res.ExitCode = <-exited:
		collect(&res)
		return res, nil
	case <-ctx.Done():
		// Like a daemon's output copy, the run ends only once the server's last write did.
		<-exited
		res.ExitCode = ExitKilled
		collect(&res)
		return res, fmt.Errorf("killed: %w", context.Cause(ctx))
	}
}

func testSpec(t *testing.T) Spec {
	t.Helper()
	s, err := New(WithArgv("server"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitDone(t *testing.T, p *Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not end")
	}
}

func TestStartEchoAndEOF(t *testing.T) {
	stderr := NewCappedBuffer(1 << 10)
	p, err := Start(context.Background(), pipeBackend{}, testSpec(t), stderr)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(p.Stdout)
	for i := range 3 {
		fmt.Fprintf(p.Stdin, "line %d\n", i)
		got, err := out.ReadString('\n')
		if want := fmt.Sprintf("line %d\n", i); got != want || err != nil {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	p.Stdin.Close()
	waitDone(t, p)
	res, err := p.Wait()
	if err != nil || res.ExitCode != 0 || len(res.Stdout) != 0 {
		t.Errorf("Wait = %+v, %v; want exit 0 and no captured stdout", res, err)
	}
	if rest, err := io.ReadAll(out); len(rest) != 0 || err != nil {
		t.Errorf("stdout after the exit: %q, %v; want EOF", rest, err)
	}
	if got := string(stderr.Bytes()); got != "started\n" {
		t.Errorf("stderr %q; want it streamed to Start's writer", got)
	}
	if _, err := p.Stdin.Write([]byte("x")); err == nil {
		t.Error("writing to an ended process's stdin succeeded")
	}
}

func TestStartInvalidSpec(t *testing.T) {
	if p, err := Start(context.Background(), pipeBackend{}, Spec{}, nil); !errors.Is(err, ErrInvalidSpec) || p != nil {
		t.Errorf("Start(empty spec) = %v, %v; want ErrInvalidSpec and no process", p, err)
	}
}

func TestStartRefused(t *testing.T) {
	refused := errors.New("no such runtime")
	p, err := Start(context.Background(), pipeBackend{refuse: refused}, testSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if _, err := p.Wait(); !errors.Is(err, refused) {
		t.Errorf("Wait = %v; want the backend's error", err)
	}
	if b, err := io.ReadAll(p.Stdout); len(b) != 0 || err != nil {
		t.Errorf("stdout %q, %v; want EOF", b, err)
	}
	if _, err := p.Stop(); !errors.Is(err, refused) {
		t.Errorf("Stop = %v; want the backend's error", err)
	}
}

// ignoreEOF is a server that keeps running after its stdin ends, until it is killed.
func ignoreEOF(ctx context.Context, in io.Reader, out io.Writer) int {
	_, _ = io.Copy(out, in)
	<-ctx.Done()
	return 0
}

func TestStopGraceThenKill(t *testing.T) {
	p, err := Start(context.Background(), pipeBackend{serve: ignoreEOF}, testSpec(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	res, err := p.Stop()
	if took := time.Since(begin); took < StopGrace || took > StopGrace+5*time.Second {
		t.Errorf("Stop took %s; want the %s grace, then the kill", took, StopGrace)
	}
	if err != nil || res.ExitCode != ExitKilled {
		t.Errorf("Stop = exit %d, %v; want 137 and no error", res.ExitCode, err)
	}
	if again, err := p.Stop(); err != nil || again.ExitCode != ExitKilled {
		t.Errorf("second Stop = exit %d, %v", again.ExitCode, err)
	}
}

func TestStopGracefulExit(t *testing.T) {
	p, err := Start(context.Background(), pipeBackend{}, testSpec(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	res, err := p.Stop()
	if took := time.Since(begin); took >= StopGrace {
		t.Errorf("Stop took %s; the server exits on EOF", took)
	}
	if err != nil || res.ExitCode != 0 {
		t.Errorf("Stop = exit %d, %v; want the server's exit 0", res.ExitCode, err)
	}
}

// TestKillUnreadStdout: a server flooding a stdout nobody reads (its writes block on the full
// pipe, as a daemon's copy does) is still killed at once.
func TestKillUnreadStdout(t *testing.T) {
	flood := func(ctx context.Context, _ io.Reader, out io.Writer) int {
		buf := make([]byte, 4096)
		for ctx.Err() == nil {
			_, _ = out.Write(buf)
		}
		return 0
	}
	p, err := Start(context.Background(), pipeBackend{serve: flood}, testSpec(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the pipe fill
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := p.Kill(); err != nil || res.ExitCode != ExitKilled {
			t.Errorf("Kill = exit %d, %v; want 137", res.ExitCode, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Kill hung on the unread stdout")
	}
}

// TestKillBeforeStart: a run killed before its container started reports 137, not 0.
func TestKillBeforeStart(t *testing.T) {
	b := pipeBackend{serve: ignoreEOF}
	p, err := Start(context.Background(), notYet{b}, testSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Kill(); err != nil || res.ExitCode != ExitKilled || res.Ran {
		t.Errorf("Kill = %+v, %v; want exit 137, not ran, no error", res, err)
	}
}

// notYet is a backend still creating the container when it is cancelled.
type notYet struct{ pipeBackend }

func (notYet) Run(ctx context.Context, _ Spec) (Result, error) {
	<-ctx.Done()
	return Result{}, fmt.Errorf("not started: %w", context.Cause(ctx))
}

// TestStartIgnoresCancel: a long-lived run is not bound to Start's ctx.
func TestStartIgnoresCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, pipeBackend{}, testSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	fmt.Fprintln(p.Stdin, "still here")
	if got, err := bufio.NewReader(p.Stdout).ReadString('\n'); got != "still here\n" || err != nil {
		t.Errorf("after ctx's cancel: %q, %v", got, err)
	}
	if res, err := p.Stop(); err != nil || res.ExitCode != 0 {
		t.Errorf("Stop = exit %d, %v", res.ExitCode, err)
	}
}

// TestOutputsLiveStreamNeverFails: once a live stream's reader is gone its writes are
// discarded, not failed, so a backend's copy keeps draining the container.
func TestOutputsLiveStreamNeverFails(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Close()
	failing := writerFunc(func([]byte) (int, error) { return 0, errors.New("broken") })
	spec := Spec{Streams: &Streams{Stdout: w, Stderr: failing}}
	stdout, stderr, collect := spec.Outputs()
	for _, wr := range []io.Writer{stdout, stderr} {
		for range 2 {
			if n, err := wr.Write([]byte("abc")); n != 3 || err != nil {
				t.Errorf("Write = %d, %v; want 3, nil", n, err)
			}
		}
	}
	var res Result
	collect(&res)
	if res.Stdout != nil || res.Stderr != nil {
		t.Errorf("live streams were captured: %q %q", res.Stdout, res.Stderr)
	}

	// Without Streams.Stderr, stderr is captured up to its cap.
	spec = Spec{StderrCap: 2, Streams: &Streams{Stdout: w}}
	_, stderr, collect = spec.Outputs()
	stderr.Write([]byte("abc"))
	collect(&res)
	if string(res.Stderr) != "ab" || !res.StderrTruncated {
		t.Errorf("stderr %q truncated %v; want the capped capture", res.Stderr, res.StderrTruncated)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
