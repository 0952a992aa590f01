package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// ownerToken is the owner token of the runc backend of the Airlock process pid: the name of
// the owner lock file under runDir/owners that holds its pid; its containers are
// airlock-TOKEN-N.
func ownerToken(t *testing.T, pid int, runDir string) string {
	t.Helper()
	locks, _ := filepath.Glob(filepath.Join(runDir, "owners", "*.lock"))
	for _, l := range locks {
		if raw, err := os.ReadFile(l); err == nil && strings.TrimSpace(string(raw)) == strconv.Itoa(pid) {
			return strings.TrimSuffix(filepath.Base(l), ".lock")
		}
	}
	t.Fatalf("no owner lock under %s/owners names process %d", runDir, pid)
	return ""
}

// containersOf lists the bundles and runc states of owner token under runDir.
func containersOf(runDir, token string) []string {
	var left []string
	for _, d := range []string{"bundles", "root"} {
		ents, _ := os.ReadDir(filepath.Join(runDir, d))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "airlock-"+token+"-") {
				left = append(left, d+"/"+e.Name())
			}
		}
	}
	return left
}

// warmInits lists the pids of the sandbox inits waiting in the ready sandboxes of owner token
// (each bundle's init.pid, still a waiting init).
func warmInits(runDir, token string) []int {
	ents, _ := os.ReadDir(filepath.Join(runDir, "bundles"))
	var pids []int
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "airlock-"+token+"-") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(runDir, "bundles", e.Name(), "init.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); err == nil && strings.Contains(string(cmdline), "--warm") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestPoolDrains: `airlock serve` keeps sandboxes started for the shape a call used; a
// graceful stop removes them all (containers, bundles, processes), and a server killed with
// SIGKILL leaves inits that end by themselves (their socket closed with the server) and
// records the next start reaps.
func TestPoolDrains(t *testing.T) {
	mcpRequireImages(t, "host")
	e := newMCPEnv(t, gwFaultPolicy, nil)
	e.quiet = true
	e.extraYAML = "pool:\n  size: 3\n"
	runDir := filepath.Join(testenv.StateDir(), "run")

	callOnce := func(s *mcpServer) {
		t.Helper()
		cs := connectHTTP(t, s, "", nil)
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"argv": []string{"true"}}})
		if err != nil || res.IsError {
			t.Fatalf("run_command true: %v %v", err, res)
		}
		_ = cs.Close()
	}
	awaitReady := func(token string, n int) []int {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if pids := warmInits(runDir, token); len(pids) >= n {
				return pids
			}
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d sandboxes ready after 30s: %v", n, warmInits(runDir, token))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	alive := func(pids []int) []int {
		var left []int
		for _, pid := range pids {
			st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
			if err == nil && !strings.Contains(string(st), ") Z ") {
				left = append(left, pid)
			}
		}
		return left
	}

	t.Run("graceful stop removes every ready sandbox", func(t *testing.T) {
		s := e.startHTTP(t)
		token := ownerToken(t, s.pid, runDir)
		callOnce(s)
		pids := awaitReady(token, 3)
		s.stop()
		if left := alive(pids); len(left) > 0 {
			t.Errorf("ready sandboxes' inits still run after the server stopped: %v", left)
		}
		if left := containersOf(runDir, token); len(left) > 0 {
			t.Errorf("the stopped server left %v", left)
		}
	})

	t.Run("SIGKILL: inits end by themselves, the next start reaps", func(t *testing.T) {
		s := e.startHTTP(t)
		token := ownerToken(t, s.pid, runDir)
		callOnce(s)
		pids := awaitReady(token, 3)
		if err := syscall.Kill(s.pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		s.stop()
		deadline := time.Now().Add(5 * time.Second)
		for len(alive(pids)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if left := alive(pids); len(left) > 0 {
			t.Fatalf("inits of a killed server's ready sandboxes still run after 5s: %v", left)
		}
		if left := containersOf(runDir, token); len(left) < 3 {
			t.Errorf("%v: want the killed server's leftovers until the next start", left)
		}
		next := e.startHTTP(t)
		next.stop()
		if left := containersOf(runDir, token); len(left) > 0 {
			t.Errorf("the next start did not reap %v", left)
		}
	})
}
