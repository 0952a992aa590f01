package integration

// Faults real clients and hosts cause, caused for real against `airlock serve` on real runc:
// a stdio client killed with SIGKILL, a client that closes Airlock's stderr, SIGHUP, a client
// that cancels a request, Airlock itself SIGKILLed mid-call and restarted, and the audit log's
// disk filling up. After each the host is checked, not only the reply: no process of the call
// outlives the fault, the audit log verifies and holds the call. (HTTP faults:
// faults_http_test.go.)

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// faultPolicy allows run_command once per hour per grant (so a test can tell a spent unit
// from a refunded one) and nothing else.
const faultPolicy = `{
  "version": "1",
  "default": "deny",
  "tools": {
    "run_command": {
      "limits": [{"counter": "run_command", "max": 1, "window": "hour", "scope": "grant",
                  "on_deny": "Hourly command budget used."}]
    }
  }
}`

// faultPolicyOpen allows run_command without a limit.
const faultPolicyOpen = `{"version": "1", "default": "deny", "tools": {"run_command": {}}}`

// faultEnv is an mcpEnv whose run_command times out after timeout.
func faultEnv(t *testing.T, policy string, timeout time.Duration) *mcpEnv {
	t.Helper()
	e := newMCPEnv(t, policy, map[string]string{"hello.txt": "hello\n"})
	e.commandProfile = strings.Replace(mcpCommandProfile, "timeout: 2s", "timeout: "+timeout.String(), 1)
	return e
}

// faultMarker is a unique `sleep` argument: the container's process is found on the host by it.
func faultMarker(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("31%d.%d", time.Now().UnixNano()%1000, uint32(b[0])<<16|uint32(b[1])<<8|uint32(b[2]))
}

// faultProcs lists the host pids whose command line contains marker.
func faultProcs(marker string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) && !strings.Contains(string(b), "airlock") {
			out = append(out, pid)
		}
	}
	return out
}

// faultAlive reports whether pid exists and is not a zombie.
func faultAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// faultWait polls cond every 20 ms until it holds or d passes; it returns how long that took
// and whether cond held.
func faultWait(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitContainer waits until the call's sleep with marker runs in its container.
func waitContainer(t *testing.T, marker string) {
	t.Helper()
	if _, ok := faultWait(60*time.Second, func() bool { return len(faultProcs(marker)) > 0 }); !ok {
		t.Fatalf("the container's `sleep %s` never appeared on the host", marker)
	}
}

// assertGone checks that no process of the call outlives d after the fault.
func assertGone(t *testing.T, marker string, d time.Duration, what string) time.Duration {
	t.Helper()
	took, ok := faultWait(d, func() bool { return len(faultProcs(marker)) == 0 })
	if !ok {
		t.Errorf("%s: the container's processes %v still run %s later", what, faultProcs(marker), d)
	} else {
		t.Logf("%s: the container's processes were gone after %s", what, took.Round(time.Millisecond))
	}
	return took
}

// assertExits waits for the Airlock process pid to exit after what happened, and fails when
// that takes over 2 s. It returns how long it took.
func assertExits(t *testing.T, pid int, what string) time.Duration {
	t.Helper()
	exited, ok := faultWait(10*time.Second, func() bool { return !faultAlive(pid) })
	if !ok {
		t.Fatalf("airlock serve still runs 10 s after %s", what)
	}
	t.Logf("airlock serve exited %s after %s", exited.Round(time.Millisecond), what)
	if exited > 2*time.Second {
		t.Errorf("airlock serve took %s to exit after %s; want under 2 s", exited, what)
	}
	return exited
}

// assertVerifies runs `airlock audit verify` on the env's log and returns its output.
func (e *mcpEnv) assertVerifies(t *testing.T) string {
	t.Helper()
	code, out := e.verifyAudit(t, e.audit)
	if code != 0 {
		t.Errorf("airlock audit verify = %d:\n%s", code, out)
	}
	return out
}

// closingRecord returns the closing record of the call whose container ran marker's sleep,
// found by its container id in the intent... the only run_command call of the log.
func closingRecord(t *testing.T, e *mcpEnv) mcpAuditRecord {
	t.Helper()
	recs := readAudit(t, e.audit)
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Tool == "run_command" && recs[i].ContainerID != "" {
			return recs[i]
		}
	}
	t.Fatalf("the audit log holds no closing record of a run_command call that started a container: %+v", readAuditAll(t, e.audit))
	return mcpAuditRecord{}
}

// TestFaultClientProcess is not a test: it is the stdio client TestFaultStdioClientKilled
// runs as a separate process and kills. It starts `airlock serve --stdio` the way desktop
// clients do (its stderr captured through a pipe this process owns), prints the server's pid,
// and calls run_command until killed.
func TestFaultClientProcess(t *testing.T) {
	spec := os.Getenv("AIRLOCK_FAULT_CLIENT")
	if spec == "" {
		t.Skip("helper process for TestFaultStdioClientKilled")
	}
	var c struct {
		Bin     string   `json:"bin"`
		Args    []string `json:"args"`
		Env     []string `json:"env"`
		Dir     string   `json:"dir"`
		Command string   `json:"command"`
	}
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.Bin, c.Args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	cmd.Stderr = io.Discard // a pipe owned by this process: it breaks when the process dies
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-fault-client", Version: "0"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("AIRLOCK_PID %d\n", cmd.Process.Pid)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": c.Command}})
	fmt.Printf("CALL RETURNED %v %v\n", res, err)
}

// TestFaultStdioClientKilled: the stdio client is SIGKILLed while a call runs. Airlock reads
// EOF on stdin and finds stdout and stderr broken; it must not die of SIGPIPE, and within 2 s
// it cancels the call, kills the container, writes the call's record and exits.
func TestFaultStdioClientKilled(t *testing.T) {
	e := faultEnv(t, faultPolicy, 5*time.Minute)
	marker := faultMarker(t)
	spec, _ := json.Marshal(map[string]any{
		"bin": e.bin, "args": append([]string{"serve", "--stdio"}, e.serveArgs(t)...),
		"env": e.env(), "dir": e.workspace, "command": "sleep " + marker,
	})
	client := exec.Command(os.Args[0], "-test.run", "^TestFaultClientProcess$", "-test.v")
	client.Env = append(os.Environ(), "AIRLOCK_FAULT_CLIENT="+string(spec))
	out, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	client.Stderr = e.logWriter(t, "fault client")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Process.Kill(); _ = client.Wait() })
	pidc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "AIRLOCK_PID "); ok {
				n, _ := strconv.Atoi(p)
				pidc <- n
			}
		}
	}()
	var airlock int
	select {
	case airlock = <-pidc:
	case <-time.After(60 * time.Second):
		t.Fatal("the client never started airlock serve --stdio")
	}
	waitContainer(t, marker)

	killed := time.Now()
	if err := client.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = client.Wait()
	exited := assertExits(t, airlock, "its client was SIGKILLed")
	assertGone(t, marker, 2*time.Second-time.Since(killed)+exited, "client killed")
	e.assertVerifies(t)
	rec := closingRecord(t, e)
	if !rec.Cancelled || rec.ExitCode == nil || !strings.Contains(rec.Message, "cancelled") {
		t.Errorf("the call's record: %+v, want cancelled with the container id and an exit code", rec)
	}
}

// TestFaultStderrClosed: a client that closes the pipe it gave Airlock for diagnostics must not
// kill Airlock (SIGPIPE on the next log line): calls go on working and are recorded.
func TestFaultStderrClosed(t *testing.T) {
	e := faultEnv(t, faultPolicyOpen, 30*time.Second)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := e.command(context.Background(), append([]string{"serve", "--stdio"}, e.serveArgs(t)...)...)
	cmd.Stderr = w
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-fault", Version: "0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the client stops listening to Airlock's diagnostics
	for i := range 3 {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": fmt.Sprintf("echo call-%d", i)}})
		if err != nil || res.IsError {
			t.Fatalf("call %d after stderr closed: %v %+v", i, err, res)
		}
	}
	if err := cs.Close(); err != nil {
		t.Errorf("closing the session: %v", err)
	}
	if st := cmd.ProcessState; st == nil || !st.Exited() || st.ExitCode() != 0 {
		t.Errorf("airlock serve ended %v; want a clean exit after the client closed", st)
	}
	e.assertVerifies(t)
	if n := len(readAudit(t, e.audit)); n != 3 {
		t.Errorf("%d records for 3 calls", n)
	}
}

// TestFaultSignals: SIGHUP (a closed terminal, a dropped SSH session), SIGQUIT and SIGTERM
// mid-call stop Airlock cleanly: the call is cancelled, its container killed and recorded, and
// Airlock exits within 2 s instead of waiting for the call's timeout.
func TestFaultSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			e := faultEnv(t, faultPolicyOpen, 5*time.Minute)
			marker := faultMarker(t)
			cmd := e.command(context.Background(), append([]string{"serve", "--stdio"}, e.serveArgs(t)...)...)
			stderr := &mcpTailWriter{}
			cmd.Stderr = stderr
			client := mcp.NewClient(&mcp.Implementation{Name: "airlock-fault", Version: "0"}, nil)
			cs, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd, TerminateDuration: 10 * time.Second}, nil)
			if err != nil {
				t.Fatal(err)
			}
			callDone := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "sleep " + marker}})
				callDone <- err
			}()
			waitContainer(t, marker)
			pid := cmd.Process.Pid
			signalled := time.Now()
			if err := syscall.Kill(pid, sig); err != nil {
				t.Fatal(err)
			}
			exited := assertExits(t, pid, sig.String())
			assertGone(t, marker, 2*time.Second-time.Since(signalled)+exited, sig.String())
			<-callDone
			_ = cs.Close()
			if strings.Contains(stderr.String(), "goroutine ") {
				t.Errorf("airlock dumped goroutines on %s instead of stopping:\n%s", sig, stderr.String())
			}
			e.assertVerifies(t)
			if rec := closingRecord(t, e); !rec.Cancelled || !strings.Contains(rec.Message, "shutting down") {
				t.Errorf("the call's record: %+v, want cancelled because airlock shut down", rec)
			}
		})
	}
}

// TestFaultHTTPShutdown: SIGTERM to `airlock serve --http` with a call in flight does not wait
// for the call's timeout (the HTTP server's graceful shutdown waits for active requests): the
// call is cancelled, its container killed and recorded, and the server exits within 2 s.
func TestFaultHTTPShutdown(t *testing.T) {
	e := faultEnv(t, faultPolicyOpen, 5*time.Minute)
	s := e.startHTTP(t)
	cs := connectHTTP(t, s, "", nil)
	marker := faultMarker(t)
	go cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "sleep " + marker}})
	waitContainer(t, marker)
	signalled := time.Now()
	if err := syscall.Kill(s.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := assertExits(t, s.pid, "SIGTERM (--http)")
	assertGone(t, marker, 2*time.Second-time.Since(signalled)+exited, "SIGTERM over HTTP")
	e.assertVerifies(t)
	if rec := closingRecord(t, e); !rec.Cancelled || !strings.Contains(rec.Message, "shutting down") {
		t.Errorf("the call's record: %+v, want cancelled because airlock shut down", rec)
	}
}

// TestFaultNohup: started with SIGHUP ignored (nohup, a service manager), Airlock keeps it
// ignored: a hangup does not stop it and calls go on.
func TestFaultNohup(t *testing.T) {
	e := faultEnv(t, faultPolicyOpen, 30*time.Second)
	args := append([]string{"-c", `trap "" HUP; exec "$0" "$@"`, e.bin, "serve", "--stdio"}, e.serveArgs(t)...)
	cmd := exec.Command("sh", args...)
	cmd.Env, cmd.Dir = e.env(), e.workspace
	cmd.Stderr = e.logWriter(t, "airlock serve --stdio (nohup)")
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-fault", Version: "0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if !faultAlive(cmd.Process.Pid) {
		t.Fatal("airlock serve started with SIGHUP ignored stopped on SIGHUP")
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "echo still-here"}})
	if err != nil || res.IsError {
		t.Fatalf("call after SIGHUP: %v %+v", err, res)
	}
}

// faultStdio is a raw newline-delimited JSON-RPC conversation with `airlock serve --stdio`:
// the test sees exactly which responses Airlock writes.
type faultStdio struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   io.ReadCloser
	lines chan map[string]any
}

func startRawStdio(t *testing.T, e *mcpEnv) *faultStdio {
	t.Helper()
	cmd := e.command(context.Background(), append([]string{"serve", "--stdio"}, e.serveArgs(t)...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = e.logWriter(t, "airlock serve --stdio")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &faultStdio{cmd: cmd, in: in, out: out, lines: make(chan map[string]any, 64)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				s.lines <- m
			}
		}
	}()
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	s.send(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`)
	if m := s.next(t); m["id"] != float64(1) {
		t.Fatalf("initialize answered %v", m)
	}
	s.send(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return s
}

func (s *faultStdio) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (s *faultStdio) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case m, ok := <-s.lines:
		if !ok {
			t.Fatal("airlock serve closed stdout")
		}
		return m
	case <-time.After(60 * time.Second):
		t.Fatal("no message from airlock serve in 60 s")
	}
	return nil
}

// TestFaultClientCancels: a client that cancels a running call (notifications/cancelled) gets
// no response for it; the container is killed at once; the call's rate-limit unit stays spent
// (it ran), so the next call is denied by the 1-per-hour limit; the record names the container
// and says the call was cancelled.
func TestFaultClientCancels(t *testing.T) {
	e := faultEnv(t, faultPolicy, 5*time.Minute)
	s := startRawStdio(t, e)
	marker := faultMarker(t)
	s.send(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"sleep %s"}}}`, marker))
	waitContainer(t, marker)
	cancelled := time.Now()
	s.send(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"user pressed stop"}}`)
	assertGone(t, marker, time.Second, "request cancelled")
	// The record is written before the (dropped) response would have been; wait for it.
	if _, ok := faultWait(10*time.Second, func() bool { return len(readAudit(t, e.audit)) == 1 }); !ok {
		t.Fatal("no closing record of the cancelled call")
	}
	t.Logf("cancelled call recorded %s after the cancellation", time.Since(cancelled).Round(time.Millisecond))
	s.send(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"echo again"}}}`)
	m := s.next(t)
	if m["id"] != float64(3) {
		t.Fatalf("first message after the cancellation: %v; want the answer to request 3 (request 2 was cancelled and must get none)", m)
	}
	res, _ := json.Marshal(m["result"])
	if !strings.Contains(string(res), "Hourly command budget used.") {
		t.Errorf("call after a cancelled one: %s; want the limit's denial (the cancelled call ran, so its unit is spent)", res)
	}
	rec := readAudit(t, e.audit)[0]
	if !rec.Cancelled || rec.ContainerID == "" || rec.Decision != "allow" || !strings.Contains(rec.Message, "the client cancelled") {
		t.Errorf("record of the cancelled call: %+v", rec)
	}
	e.assertVerifies(t)
}

// TestFaultStdoutClosed: the client closes its end of Airlock's stdout but keeps stdin open
// (a wrapper that hung on to one pipe). Nothing Airlock writes can arrive, so it cancels the
// call, kills the container, records the call and exits within 2 s, without waiting for a
// write to fail or for stdin to end.
func TestFaultStdoutClosed(t *testing.T) {
	e := faultEnv(t, faultPolicyOpen, 5*time.Minute)
	s := startRawStdio(t, e)
	marker := faultMarker(t)
	s.send(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"sleep %s"}}}`, marker))
	waitContainer(t, marker)
	closed := time.Now()
	s.out.Close()
	exited := assertExits(t, s.cmd.Process.Pid, "its stdout was closed (stdin still open)")
	assertGone(t, marker, 2*time.Second-time.Since(closed)+exited, "stdout closed")
	e.assertVerifies(t)
	if rec := closingRecord(t, e); !rec.Cancelled {
		t.Errorf("the call's record: %+v, want cancelled", rec)
	}
}

// TestFaultAirlockKilled: Airlock itself is SIGKILLed (as the OOM killer would) while a call
// runs. The container's timeout still holds without it (the init inside kills the container
// at its deadline), the log shows the call started and is unfinished, and the next start
// reaps the leftover and closes the call with a reaped record.
func TestFaultAirlockKilled(t *testing.T) {
	const timeout = 3 * time.Second
	e := faultEnv(t, faultPolicyOpen, timeout)
	marker := faultMarker(t)
	cmd := e.command(context.Background(), append([]string{"serve", "--stdio"}, e.serveArgs(t)...)...)
	cmd.Stderr = e.logWriter(t, "airlock serve --stdio (killed)")
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-fault", Version: "0"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "sleep " + marker}})
	waitContainer(t, marker)
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cs.Close()
	// Nothing of Airlock is left to enforce the timeout: the container's own init must.
	_, ok := faultWait(timeout+10*time.Second, func() bool { return len(faultProcs(marker)) == 0 })
	took := time.Since(killed)
	if !ok {
		t.Fatalf("the container's processes still run %s after Airlock died, past their %s timeout", took.Round(time.Millisecond), timeout)
	}
	t.Logf("without Airlock the container ended %s after it was killed (timeout %s)", took.Round(time.Millisecond), timeout)
	if took > timeout+3*time.Second {
		t.Errorf("the container outlived its %s timeout by %s", timeout, took-timeout)
	}
	out := e.assertVerifies(t)
	if !strings.Contains(out, "1 call(s) started and have no closing record") {
		t.Errorf("audit verify after the kill does not report the unfinished call:\n%s", out)
	}
	all := readAuditAll(t, e.audit)
	if len(all) != 1 || all[0].Phase != "started" {
		t.Fatalf("records after the kill: %+v, want the call's intent record only", all)
	}

	// The next start reaps the leftover container and closes the call.
	e.runOneCall(t, "echo after-restart")
	all = readAuditAll(t, e.audit)
	var reaped *mcpAuditRecord
	for i := range all {
		if all[i].Phase == "reaped" {
			reaped = &all[i]
		}
	}
	if reaped == nil || reaped.AuditID != all[0].AuditID || reaped.ContainerID == "" {
		t.Fatalf("records after the restart: %+v, want a reaped record of %s", all, all[0].AuditID)
	}
	out = e.assertVerifies(t)
	if !strings.Contains(out, "1 call(s) were interrupted") || strings.Contains(out, "no closing record") {
		t.Errorf("audit verify after the restart:\n%s", out)
	}
}

// runOneCall starts `airlock serve --stdio`, makes one run_command call and closes it.
func (e *mcpEnv) runOneCall(t *testing.T, command string) *mcp.CallToolResult {
	t.Helper()
	cs := e.connectStdio(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": command}})
	if err != nil {
		t.Fatalf("run_command %q: %v", command, err)
	}
	if err := cs.Close(); err != nil {
		t.Errorf("closing the session: %v", err)
	}
	return res
}

// TestFaultAuditDiskFull: the audit log's file system (a small tmpfs) fills up mid-run. No
// tool runs while a record cannot be written; the refusal says what to do; the log verifies
// throughout; once there is space again calls run and the refused call's record is written.
func TestFaultAuditDiskFull(t *testing.T) {
	e := faultEnv(t, faultPolicyOpen, 30*time.Second)
	dir := filepath.Join(t.TempDir(), "auditfs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		testenv.Unavailable(t, "mounting a small tmpfs for the audit log: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	e.audit = filepath.Join(dir, "audit.jsonl")
	cs := e.connectStdio(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	call := func(command string) *mcp.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": command}})
		if err != nil {
			t.Fatalf("run_command %q: %v", command, err)
		}
		return res
	}
	if res := call("echo before"); res.IsError {
		t.Fatalf("first call: %+v", res)
	}
	// Fill the file system to the last byte.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:1]); err != nil {
			break
		}
	}
	f.Close()
	// The log's last page may still hold a record or two; calls run until it is full.
	var text, marker string
	ran := 1
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("20 calls ran on a full file system; the audit log never reported it full")
		}
		marker = faultMarker(t)
		res := call("echo ran-while-full " + marker)
		text = res.Content[0].(*mcp.TextContent).Text
		if res.IsError {
			break
		}
		ran++
	}
	t.Logf("%d call(s) ran before the audit log's file system was full; then: %s", ran, text)
	if !strings.Contains(text, "did not run") || !strings.Contains(text, "free space") {
		t.Errorf("call on a full audit disk: %q; want a refusal that says to free space", text)
	}
	if strings.Contains(text, "ran-while-full") {
		t.Errorf("the command ran although its record could not be written: %q", text)
	}
	if code, out := e.verifyAudit(t, e.audit); code != 0 {
		t.Errorf("audit verify while the disk is full = %d:\n%s", code, out)
	}
	os.Remove(filler)
	if res := call("echo after"); res.IsError {
		t.Errorf("call once there is space: %+v", res)
	}
	_ = cs.Close()
	e.assertVerifies(t)
	recs := readAudit(t, e.audit)
	if len(recs) != ran+2 || recs[ran].Decision != "error" || !strings.Contains(recs[ran].Message, "free space") {
		t.Errorf("closing records: %+v; want %d that ran, the refused call, the call after", recs, ran)
	}
}
