package integration

// Escape cases: the airlock exec CLI path.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// testCLI: the same properties hold through `airlock exec`, and the CLI's container leaves no
// bundle or cgroup behind.
func testCLI(t *testing.T, s *escapeSuite) {
	bin := s.airlockBin(t)
	// The CLI opens the backend as an operator's airlock does: default state and cgroups.
	cliHost := escapeHostFor(t, registryName(s.name), s.runc, sandbox.OpenOptions{StateDir: testenv.StateDir()})
	ws := s.workspace(t)
	escWriteFile(t, filepath.Join(ws, "data.txt"), "original\n", 0o666)
	escChmod(t, ws, 0o777)
	before := escHashTree(t, ws)
	// A listener on the host that the CLI's container must not reach, by loopback or by any
	// host address. The host's own connection is the control: it shows the listener accepts
	// (and counts) a connection whenever a route exists.
	targets, accepted := escTCPListener(t)
	if c, err := net.DialTimeout("tcp4", targets[0], 2*time.Second); err != nil {
		t.Fatalf("control dial from the host to %s: %v", targets[0], err)
	} else {
		c.Close()
	}
	var connect strings.Builder
	for _, target := range targets {
		host, port, _ := net.SplitHostPort(target)
		fmt.Fprintf(&connect, "nc -w 2 %s %s </dev/null && echo CONNECTED; echo nc_exit=$?; ", host, port)
	}
	script := "cat /proc/self/status; cat /proc/self/environ; echo; echo x > /workspace/data.txt && echo WROTE; " +
		connect.String() + "cat /proc/net/dev"
	cli := func(args ...string) (int, escExecJSON) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"exec", "--json", "--backend", registryName(s.name)}, args...)...)
		// The test's own environment (canary included) plus where runc and the images are.
		cmd.Env = append(os.Environ(), "AIRLOCK_STATE_DIR="+testenv.StateDir(), "AIRLOCK_RUNC="+s.runc)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		var res escExecJSON
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("airlock exec %q: exit %d, stdout %q stderr %q: %v", args, cmd.ProcessState.ExitCode(), stdout.String(), stderr.String(), err)
		}
		return cmd.ProcessState.ExitCode(), res
	}

	_, res := cli("--workspace", ws, "--", "sh", "-c", script)
	status := escParseStatus(res.Stdout)
	if status["CapEff"] != "0000000000000000" || status["NoNewPrivs"] != "1" || status["Seccomp"] != "2" {
		t.Errorf("CLI run: CapEff %q NoNewPrivs %q Seccomp %q", status["CapEff"], status["NoNewPrivs"], status["Seccomp"])
	}
	for _, bad := range []string{s.canary, "WROTE", "CONNECTED", "nc_exit=0", "eth", "ens"} {
		if strings.Contains(res.Stdout, bad) {
			t.Errorf("CLI run: %q in the output:\n%s", bad, res.Stdout)
		}
	}
	if n := strings.Count(res.Stdout, "nc_exit="); n != len(targets) {
		t.Errorf("CLI run: %d of %d connection attempts ran (stdout %q stderr %q)", n, len(targets), res.Stdout, res.Stderr)
	}
	if got := accepted(); len(got) != 1 { // the host's own control connection
		t.Errorf("CLI run: the host listener accepted %d connections %v; want only the host's control connection", len(got), got)
	}
	escAssertTreeUnchanged(t, ws, before)
	cliHost.assertGone(t, res.ContainerID)

	code, res := cli("--timeout", "1s", "--", "sh", "-c", "sleep 1000 & while :; do :; done")
	if code != sandbox.ExitTimeout || !res.TimedOut || res.ExitCode != sandbox.ExitTimeout {
		t.Errorf("CLI timeout: exit %d result %+v, want 124 and timed_out", code, res)
	}
	cliHost.assertGone(t, res.ContainerID)

	code, res = cli("--memory", "32Mi", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	if code != sandbox.ExitKilled || !res.OOMKilled {
		t.Errorf("CLI memory bomb: exit %d result %+v, want 137 and oom_killed", code, res)
	}

	code, res = cli("--", "sh", "-c", "yes | head -c 100000000")
	if code != 0 || !res.Truncated || len(res.Stdout) != 1<<20 {
		t.Errorf("CLI flood: exit %d truncated %v stdout %d bytes, want 0 true %d", code, res.Truncated, len(res.Stdout), 1<<20)
	}
}

// escExecJSON mirrors `airlock exec --json`.
type escExecJSON struct {
	ExitCode    int      `json:"exit_code"`
	Stdout      string   `json:"stdout"`
	Stderr      string   `json:"stderr"`
	Truncated   bool     `json:"truncated"`
	TimedOut    bool     `json:"timed_out"`
	OOMKilled   bool     `json:"oom_killed"`
	DurationMS  int64    `json:"duration_ms"`
	ContainerID string   `json:"container_id"`
	Loosened    []string `json:"loosened"`
}

// ---- the suite's helpers ----
