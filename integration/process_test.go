package integration

// Long-lived runs (sandbox.Start): a stdio MCP server's container on every backend of the
// registry. Each case checks the live streams, the ways a run ends (stdin EOF, Stop, a crash,
// the timeout, a refused spec) and, on the host, that the container and its processes are gone.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// processWait bounds every wait of these tests for a stream or an exit: a long-lived run
// that does not end must fail the case, never hang the suite.
const processWait = 30 * time.Second

// processSuite is one backend shared by the TestProcess cases.
type processSuite struct {
	name    string
	backend sandbox.Backend
	host    escapeHost
	marker  string // prefix of every container's escapeMarkerEnv value

	mu        sync.Mutex
	latencies []time.Duration // Start to the first echoed line, per Echo run
}

// TestProcess runs long-lived processes on every backend of the registry. A backend that
// cannot run here fails under AIRLOCK_REQUIRE_SANDBOX, as in the escape suite.
func TestProcess(t *testing.T) {
	runcBin := testenv.Runc(t)
	ctx := context.Background()
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store %s: %v", testenv.StateDir(), err)
	}
	if _, err := store.Resolve(ctx, "busybox"); err != nil {
		testenv.Unavailable(t, "image busybox (run `make images`): %v", err)
	}
	forEachBackend(t, "proc", func(t *testing.T, name string, b sandbox.Backend, o sandbox.OpenOptions) {
		s := &processSuite{name: name, backend: b, host: escapeHostFor(t, name, runcBin, o),
			marker: "process-" + escRandomToken(t)}
		t.Cleanup(func() {
			for _, l := range s.host.leftovers(t) {
				t.Errorf("left behind by the %s backend: %s", name, l)
			}
			if left := escProcessesWith(s.marker); len(left) > 0 {
				t.Errorf("processes of the suite still running: %v", left)
			}
			s.logLatencies(t)
		})
		par := func(f func(*testing.T, *processSuite)) func(*testing.T) {
			return func(t *testing.T) { t.Parallel(); f(t, s) }
		}
		t.Run("Echo", par(testProcessEcho))
		t.Run("StdinEOFEndsIt", par(testProcessStdinEOF))
		t.Run("StopClosesStdinFirst", par(testProcessStopGraceful))
		t.Run("StopKillsAfterGrace", par(testProcessStopKills))
		t.Run("KillIsImmediate", par(testProcessKill))
		t.Run("Crash", par(testProcessCrash))
		t.Run("TimeoutBoundsIt", par(testProcessTimeout))
		t.Run("StderrIsLive", par(testProcessStderr))
		t.Run("RefusedSpecEnds", par(testProcessRefused))
	})
}

// start starts a process of the suite's backend with the case's marker; stderr, when nil,
// is collected into the returned buffer. The process is killed when the case ends, whatever
// happened.
func (s *processSuite) start(t *testing.T, opts ...sandbox.Option) (*sandbox.Process, *lockedBuffer) {
	t.Helper()
	all := append([]sandbox.Option{sandbox.WithImage("busybox"), sandbox.WithEnv(escapeMarkerEnv + "=" + s.caseMarker(t))}, opts...)
	spec, err := sandbox.New(all...)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	stderr := &lockedBuffer{}
	p, err := sandbox.Start(context.Background(), s.backend, spec, stderr)
	if err != nil {
		t.Fatalf("Start(%q): %v", spec.Argv, err)
	}
	t.Cleanup(func() { _, _ = p.Kill() })
	return p, stderr
}

func (s *processSuite) caseMarker(t *testing.T) string {
	return s.marker + "-" + strings.ReplaceAll(t.Name(), "/", ".")
}

func (s *processSuite) logLatencies(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.latencies) == 0 {
		return
	}
	l := append([]time.Duration(nil), s.latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	t.Logf("%s: Start to first echo: min %s median %s max %s (%d runs)", s.name,
		l[0].Round(time.Millisecond), l[len(l)/2].Round(time.Millisecond), l[len(l)-1].Round(time.Millisecond), len(l))
}

// lines reads r line by line in a goroutine that ends at r's end (or error); the case's
// process cleanup closes r.
type lines struct {
	ch  chan string
	err error // set before ch is closed
}

func readLines(r io.Reader) *lines {
	l := &lines{ch: make(chan string, 1024)}
	go func() {
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				l.ch <- strings.TrimSuffix(line, "\n")
			}
			if err != nil {
				if err != io.EOF {
					l.err = err
				}
				close(l.ch)
				return
			}
		}
	}()
	return l
}

// next returns the next line, failing t if the stream ends or stays silent.
func (l *lines) next(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-l.ch:
		if !ok {
			t.Fatalf("stdout ended (%v); wanted another line", l.err)
		}
		return line
	case <-time.After(processWait):
		t.Fatalf("no line on stdout within %s", processWait)
	}
	return ""
}

// end waits for the stream's end, failing t on a further line or an error other than EOF.
func (l *lines) end(t *testing.T) {
	t.Helper()
	select {
	case line, ok := <-l.ch:
		if ok {
			t.Fatalf("stdout gave %q; wanted its end", line)
		}
		if l.err != nil {
			t.Errorf("stdout ended with %v; want EOF", l.err)
		}
	case <-time.After(processWait):
		t.Fatalf("stdout did not end within %s", processWait)
	}
}

// waitDone waits for p's container to be gone and returns Wait's outcome.
func waitDone(t *testing.T, p *sandbox.Process) (sandbox.Result, error) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(processWait):
		t.Fatalf("the process did not end within %s", processWait)
	}
	return p.Wait()
}

func writeLine(t *testing.T, w io.Writer, line string) {
	t.Helper()
	if _, err := io.WriteString(w, line+"\n"); err != nil {
		t.Fatalf("writing %q to stdin: %v", line, err)
	}
}

// testProcessEcho: lines written to stdin come back from cat one by one, as they are sent.
func testProcessEcho(t *testing.T, s *processSuite) {
	started := time.Now()
	p, _ := s.start(t, sandbox.WithArgv("cat"))
	out := readLines(p.Stdout)
	for i := range 5 {
		want := fmt.Sprintf("round trip %d: {\"jsonrpc\":\"2.0\",\"id\":%d}", i, i)
		writeLine(t, p.Stdin, want)
		if got := out.next(t); got != want {
			t.Fatalf("echo %d = %q, want %q", i, got, want)
		}
		if i == 0 {
			d := time.Since(started)
			s.mu.Lock()
			s.latencies = append(s.latencies, d)
			s.mu.Unlock()
			t.Logf("Start to first echo: %s", d.Round(time.Millisecond))
		}
	}
	if err := p.Stdin.Close(); err != nil {
		t.Fatalf("closing stdin: %v", err)
	}
	out.end(t)
	res, err := waitDone(t, p)
	if err != nil || res.ExitCode != 0 {
		t.Errorf("Wait = exit %d, %v; want 0", res.ExitCode, err)
	}
	s.host.assertGone(t, res.ContainerID)
}

// testProcessStdinEOF: closing stdin ends cat, exit 0; its container is gone and stdout ends.
func testProcessStdinEOF(t *testing.T, s *processSuite) {
	p, _ := s.start(t, sandbox.WithArgv("cat"))
	out := readLines(p.Stdout)
	writeLine(t, p.Stdin, "last")
	if got := out.next(t); got != "last" {
		t.Fatalf("echo = %q", got)
	}
	p.Stdin.Close()
	res, err := waitDone(t, p)
	if err != nil || res.ExitCode != 0 || res.TimedOut || !res.Ran {
		t.Errorf("Wait = exit %d timed_out %v ran %v, %v; want exit 0", res.ExitCode, res.TimedOut, res.Ran, err)
	}
	out.end(t)
	s.host.assertGone(t, res.ContainerID)
	if _, err := io.WriteString(p.Stdin, "more\n"); err == nil {
		t.Error("writing to the stdin of an ended process succeeded")
	}
	if left := escProcessesWith(s.caseMarker(t)); len(left) > 0 {
		t.Errorf("processes of the container remain: %v", left)
	}
}

// testProcessStopGraceful: Stop on a server that exits on stdin EOF returns as soon as it
// exited, with its own exit code, well before the grace runs out.
func testProcessStopGraceful(t *testing.T, s *processSuite) {
	p, _ := s.start(t, sandbox.WithArgv("cat"))
	out := readLines(p.Stdout)
	writeLine(t, p.Stdin, "up")
	out.next(t)
	begin := time.Now()
	res, err := p.Stop()
	took := time.Since(begin)
	if err != nil || res.ExitCode != 0 {
		t.Errorf("Stop = exit %d, %v; want cat's exit 0", res.ExitCode, err)
	}
	if took >= sandbox.StopGrace {
		t.Errorf("Stop took %s; cat exits on EOF, so it should not wait the %s grace", took, sandbox.StopGrace)
	}
	s.host.assertGone(t, res.ContainerID)
}

// testProcessStopKills: a server that ignores stdin EOF and SIGTERM is killed by Stop after
// the grace; Stop returns promptly, and nothing of it remains on the host.
func testProcessStopKills(t *testing.T, s *processSuite) {
	p, _ := s.start(t, sandbox.WithArgv("sh", "-c", `trap "" TERM HUP INT; echo ready; while :; do sleep 1; done`))
	out := readLines(p.Stdout)
	if got := out.next(t); got != "ready" {
		t.Fatalf("first line %q", got)
	}
	begin := time.Now()
	res, err := p.Stop()
	took := time.Since(begin)
	t.Logf("Stop took %s", took.Round(time.Millisecond))
	if err != nil || res.ExitCode != sandbox.ExitKilled || res.TimedOut {
		t.Errorf("Stop = exit %d timed_out %v, %v; want 137 and no error", res.ExitCode, res.TimedOut, err)
	}
	if took < sandbox.StopGrace || took > sandbox.StopGrace+8*time.Second {
		t.Errorf("Stop took %s; want the %s grace and then a prompt kill", took, sandbox.StopGrace)
	}
	if again, err := p.Stop(); err != nil || again.ContainerID != res.ContainerID {
		t.Errorf("a second Stop = %+v, %v; want the same outcome", again, err)
	}
	s.host.assertGone(t, res.ContainerID)
	if left := escProcessesWith(s.caseMarker(t)); len(left) > 0 {
		t.Errorf("processes of the container outlived Stop: %v", left)
	}
}

// testProcessKill: Kill ends a running server without the grace, even with stdout unread.
func testProcessKill(t *testing.T, s *processSuite) {
	// yes fills the stdout pipe, which nobody reads: Kill must not wait on the blocked copy.
	// The pause lets "running" through first: Docker multiplexes both streams on one
	// connection, and under load a flood of stdout read first blocks stderr behind it.
	p, stderr := s.start(t, sandbox.WithArgv("sh", "-c", "echo running >&2; sleep 0.5; exec yes airlock"))
	stderr.waitFor(t, "running\n", p)
	time.Sleep(500 * time.Millisecond)
	begin := time.Now()
	res, err := p.Kill()
	took := time.Since(begin)
	if err != nil || res.ExitCode != sandbox.ExitKilled {
		t.Errorf("Kill = %+v, %v; want exit 137 and no error", res, err)
	}
	if took > sandbox.StopGrace+8*time.Second {
		t.Errorf("Kill took %s", took)
	}
	s.host.assertGone(t, res.ContainerID)
	if left := escProcessesWith(s.caseMarker(t)); len(left) > 0 {
		t.Errorf("processes of the container outlived Kill: %v", left)
	}
}

// testProcessCrash: a server that exits 3 after one request ends the Process: Done closes,
// Wait gives exit 3, stdout ends after the reply.
func testProcessCrash(t *testing.T, s *processSuite) {
	p, _ := s.start(t, sandbox.WithArgv("sh", "-c", `read line; echo "got $line"; exit 3`))
	out := readLines(p.Stdout)
	writeLine(t, p.Stdin, "one")
	if got := out.next(t); got != "got one" {
		t.Fatalf("reply %q", got)
	}
	res, err := waitDone(t, p)
	if err != nil || res.ExitCode != 3 {
		t.Errorf("Wait = exit %d, %v; want 3", res.ExitCode, err)
	}
	out.end(t)
	s.host.assertGone(t, res.ContainerID)
}

// testProcessTimeout: Spec.Timeout bounds a long-lived run too: a server that never exits,
// with its stdin still open, is killed at the deadline with every process of its container.
func testProcessTimeout(t *testing.T, s *processSuite) {
	const timeout = 2 * time.Second
	begin := time.Now()
	p, _ := s.start(t, sandbox.WithTimeout(timeout),
		sandbox.WithArgv("sh", "-c", `sleep 1000 & (trap "" TERM; while :; do sleep 1; done) & echo ready; while :; do sleep 1; done`))
	out := readLines(p.Stdout)
	if got := out.next(t); got != "ready" {
		t.Fatalf("first line %q", got)
	}
	res, err := waitDone(t, p)
	took := time.Since(begin)
	if err != nil || !res.TimedOut || res.ExitCode != sandbox.ExitTimeout {
		t.Errorf("Wait = exit %d timed_out %v, %v; want 124 timed out", res.ExitCode, res.TimedOut, err)
	}
	if took < timeout || took > timeout+15*time.Second {
		t.Errorf("the run took %s; its timeout was %s", took, timeout)
	}
	out.end(t)
	s.host.assertGone(t, res.ContainerID)
	if left := escProcessesWith(s.caseMarker(t)); len(left) > 0 {
		t.Errorf("processes of the container outlived the timeout: %v", left)
	}
}

// testProcessStderr: stderr reaches the writer given to Start while the server runs, and is
// not also captured into the Result.
func testProcessStderr(t *testing.T, s *processSuite) {
	p, stderr := s.start(t, sandbox.WithArgv("sh", "-c", `echo log-one >&2; read x; echo log-two >&2; echo "$x"; cat`))
	out := readLines(p.Stdout)
	stderr.waitFor(t, "log-one\n", p)
	writeLine(t, p.Stdin, "reply")
	if got := out.next(t); got != "reply" {
		t.Fatalf("stdout %q", got)
	}
	stderr.waitFor(t, "log-one\nlog-two\n", p)
	p.Stdin.Close()
	res, err := waitDone(t, p)
	if err != nil || res.ExitCode != 0 {
		t.Errorf("Wait = exit %d, %v; want 0", res.ExitCode, err)
	}
	if len(res.Stderr) != 0 || len(res.Stdout) != 0 {
		t.Errorf("the result captured stdout %q stderr %q; the streams are live", res.Stdout, res.Stderr)
	}
	s.host.assertGone(t, res.ContainerID)
}

// testProcessRefused: a spec the backend refuses (a runtime it does not have, an image that
// does not exist) ends the Process at once with the backend's error; it never hangs.
func testProcessRefused(t *testing.T, s *processSuite) {
	for _, c := range []struct {
		name string
		opt  sandbox.Option
	}{
		{"BadRuntime", sandbox.WithRuntime("airlock-no-such-runtime")},
		{"MissingImage", sandbox.WithImage("airlock-no-such-image")},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, _ := s.start(t, c.opt, sandbox.WithArgv("cat"))
			out := readLines(p.Stdout)
			res, err := waitDone(t, p)
			if err == nil {
				t.Errorf("Wait = exit %d and no error; want the backend's refusal", res.ExitCode)
			}
			t.Logf("refused: %v", err)
			if res.Ran {
				t.Errorf("the result says the command ran")
			}
			out.end(t)
			if _, err := io.WriteString(p.Stdin, "x\n"); err == nil {
				t.Error("writing to the stdin of a refused process succeeded")
			}
			if res.ContainerID != "" {
				s.host.assertGone(t, res.ContainerID)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for the backend's writer and the test's reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds exactly want, failing t if p ends first (the bytes
// were not live) or nothing arrives in time.
func (b *lockedBuffer) waitFor(t *testing.T, want string, p *sandbox.Process) {
	t.Helper()
	deadline := time.Now().Add(processWait)
	for b.String() != want {
		select {
		case <-p.Done():
			res, err := p.Wait()
			t.Fatalf("the process ended (exit %d, %v) before stderr held %q (it holds %q)", res.ExitCode, err, want, b.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stderr holds %q after %s; want %q", b.String(), processWait, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
