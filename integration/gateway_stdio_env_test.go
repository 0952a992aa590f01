package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Helpers for the stdio gateway tests: the real npm MCP servers (`make upstreams`) run by
// `airlock serve` as stdio upstreams, each in a long-lived sandbox on the runc backend, and
// the host checks that none of their containers or node processes outlive the test.

// mcpServersTarget is where the servers' code is mounted in their sandbox (/opt/mcp exists in
// every image for that).
const mcpServersTarget = "/opt/mcp"

// The servers' entry points inside the sandbox.
const (
	everythingIndex = mcpServersTarget + "/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
	filesystemIndex = mcpServersTarget + "/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
)

// upstreamLabel is runtime.LabelUpstream: the annotation naming the upstream a container serves.
const upstreamLabel = "airlock.upstream"

// mcpServersDir is the real host directory holding upstream/servers/node_modules, to mount at
// mcpServersTarget. Symlinks are resolved first: in a worktree node_modules may be a link to
// another checkout, and a link would dangle inside the container.
func mcpServersDir(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Unavailable(t, "node is not installed (make node): the host image runs the servers with the host's node")
	}
	nm, err := filepath.EvalSymlinks(filepath.Join(testenv.RepoRoot(t), "upstream", "servers", "node_modules"))
	if err != nil {
		testenv.Unavailable(t, "the upstream MCP servers are not installed (make upstreams): %v", err)
	}
	for _, index := range []string{everythingIndex, filesystemIndex} {
		p := filepath.Join(nm, strings.TrimPrefix(index, mcpServersTarget+"/node_modules/"))
		if _, err := os.Stat(p); err != nil {
			testenv.Unavailable(t, "an upstream MCP server is not installed (make upstreams): %v", err)
		}
	}
	return filepath.Dir(nm)
}

// stdioUpstream is one stdio upstream of a test: a unique name (its pins and its containers'
// label), and a marker put in its server's environment, by which its node processes are
// found on the host.
type stdioUpstream struct {
	name   string
	marker string
	runc   string
}

func newStdioUpstream(t testing.TB, base string) stdioUpstream {
	t.Helper()
	return stdioUpstream{name: uniqueUpstream(t, base), marker: "airlock-stdio-" + strings.ToLower(rand.Text()[:16]), runc: testenv.Runc(t)}
}

// yaml is the upstream's entry under upstreams: argv, the servers' code mounted read-only,
// the marker and env (name -> a YAML source such as {from_env: X}) in its server's
// environment, and extra keys (each line indented by four spaces).
func (u stdioUpstream) yaml(t testing.TB, prefix string, argv []string, env map[string]string, extra string) string {
	t.Helper()
	cmd, err := json.Marshal(argv)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    command: %s\n    prefix: %s\n    timeout: 30s\n", u.name, cmd, prefix)
	fmt.Fprintf(&b, "    mounts:\n      - {source: %q, target: %s}\n", mcpServersDir(t), mcpServersTarget)
	fmt.Fprintf(&b, "    env:\n      AIRLOCK_TEST_MARKER: {value: %s}\n", u.marker)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "      %s: %s\n", k, env[k])
	}
	b.WriteString(extra)
	return b.String()
}

// runcState is the runc backend's state directory of `airlock serve` (StateDir/run).
func runcState() string { return filepath.Join(testenv.StateDir(), "run") }

// runcContainer is one entry of `runc list --format json`.
type runcContainer struct {
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Annotations map[string]string `json:"annotations"`
}

// containers lists the runc containers serving the upstream (by their label), running or not,
// and bundles of its containers runc no longer knows. The state directory is shared with every
// other Airlock on the host: only this upstream's containers are looked at.
func (u stdioUpstream) containers(t testing.TB) []string {
	t.Helper()
	ids, err := u.list()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (u stdioUpstream) list() ([]string, error) {
	var ids []string
	root := filepath.Join(runcState(), "root")
	if _, err := os.Stat(root); err == nil {
		out, err := exec.Command(u.runc, "--root", root, "list", "--format", "json").Output()
		if err != nil {
			return nil, fmt.Errorf("runc --root %s list: %v", root, err)
		}
		var list []runcContainer
		if s := bytes.TrimSpace(out); len(s) > 0 && !bytes.Equal(s, []byte("null")) {
			if err := json.Unmarshal(s, &list); err != nil {
				return nil, fmt.Errorf("runc list: %v\n%s", err, out)
			}
		}
		for _, c := range list {
			if c.Annotations[upstreamLabel] == u.name {
				ids = append(ids, c.ID)
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Join(runcState(), "bundles"))
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(runcState(), "bundles", e.Name(), "config.json"))
		if err != nil {
			continue
		}
		var cfg struct {
			Annotations map[string]string `json:"annotations"`
		}
		if json.Unmarshal(raw, &cfg) == nil && cfg.Annotations[upstreamLabel] == u.name && !slices.Contains(ids, e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// processes lists the node processes whose environment holds the upstream's marker: its
// servers, wherever they run.
func (u stdioUpstream) processes() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte(u.marker)) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
		// The sandbox's init carries the environment too; the server is the node process.
		if filepath.Base(argv[0]) == "node" {
			out = append(out, e.Name()+": "+strings.Join(argv, " "))
		}
	}
	return out
}

// waitServers waits until the upstream has exactly n containers and n node processes, and
// returns the containers' ids.
func (u stdioUpstream) waitServers(t testing.TB, n int, within time.Duration, what string) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ids, procs := u.containers(t), u.processes()
		if len(ids) == n && len(procs) == n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: upstream %s has containers %v and processes %v after %s, want %d of each", what, u.name, ids, procs, within, n)
			return ids
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNoneLeft registers the host check that runs when the test ends, after Airlock (whose
// cleanups, registered later, run first) has stopped: no container, bundle, runc state or
// cgroup of the upstream, and no process of its servers.
func (u stdioUpstream) checkNoneLeft(t *testing.T) {
	seen := map[string]bool{}
	t.Cleanup(func() {
		ids := u.waitServers(t, 0, 15*time.Second, "after the test")
		for _, id := range ids {
			seen[id] = true
		}
		for id := range seen {
			if d := escCgroupDirs(filepath.Join("airlock", id)); len(d) > 0 {
				t.Errorf("cgroups of upstream container %s remain: %v", id, d)
			}
		}
	})
	// Remember every container seen, to check its cgroups at the end.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				ids, _ := u.list()
				for _, id := range ids {
					seen[id] = true
				}
			}
		}
	}()
}

// gatewayRecord is the part of an audit record the stdio gateway tests look at.
type gatewayRecord struct {
	AuditID      string         `json:"audit_id"`
	Tool         string         `json:"tool"`
	Decision     string         `json:"decision"`
	Rule         string         `json:"rule"`
	Message      string         `json:"message"`
	Backend      string         `json:"backend"`
	Upstream     string         `json:"upstream"`
	UpstreamTool string         `json:"upstream_tool"`
	ExitCode     *int           `json:"exit_code"`
	Cancelled    bool           `json:"cancelled"`
	TimedOut     bool           `json:"timed_out"`
	Redactions   map[string]int `json:"redactions"`
	Phase        string         `json:"phase"`
	DurationMS   float64        `json:"duration_ms"`
}

// readGatewayAudit returns every closing record of an audit log (gateway decisions included).
func readGatewayAudit(t testing.TB, path string) []gatewayRecord {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	var out []gatewayRecord
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r gatewayRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit log %s: %v\n%s", path, err, sc.Text())
		}
		if r.Phase == "" {
			out = append(out, r)
		}
	}
	return out
}
