package integration

// A stdio upstream is contained: integration/testupstream, run as a stdio upstream of a real
// `airlock serve` in its long-lived sandbox, tries to reach the network, write the workspace
// and its own code, and read host secrets and environments. Each attempt must fail inside
// (the tool's own report) and leave no trace outside (listener accept counts, tree hashes,
// canaries absent from every result), on every backend that answers here.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ctrd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/moby/moby/client"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox/containerd"
	"github.com/airlock-mcp/airlock/sandbox/docker"
)

// gatewayCanaryEnv is planted in the test process's environment (so in `airlock serve`'s);
// no upstream may see it.
const gatewayCanaryEnv = "AIRLOCK_GATEWAY_HOST_CANARY"

// testUpstream is integration/testupstream in a host directory of its own (0755, so the
// sandbox's uid 65534 can enter it) that a config mounts read-only at /opt/mcp, with the
// lookup tool's description in lookup.txt beside it.
type testUpstream struct {
	dir    string // mounted at /opt/mcp
	bin    string // dir/testupstream
	marker string // on the server's command line: finds its processes and containers on the host
}

// testUpstreamBuild builds the static binary once per test process.
var testUpstreamBuild struct {
	once sync.Once
	bin  string
	err  error
}

// buildTestUpstream builds integration/testupstream statically (it runs in images without a
// libc of the host's) and returns the binary's path.
func buildTestUpstream(t testing.TB) string {
	t.Helper()
	testUpstreamBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-testupstream-")
		if err != nil {
			testUpstreamBuild.err = err
			return
		}
		bin := filepath.Join(dir, "testupstream")
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./testupstream")
		cmd.Dir = filepath.Join(testenv.RepoRoot(t), "integration")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			testUpstreamBuild.err = fmt.Errorf("go build ./testupstream: %v\n%s", err, out)
			return
		}
		testUpstreamBuild.bin = bin
	})
	if testUpstreamBuild.err != nil {
		t.Fatal(testUpstreamBuild.err)
	}
	return testUpstreamBuild.bin
}

// newTestUpstream copies the built server into a fresh directory with the default lookup
// description.
func newTestUpstream(t testing.TB) *testUpstream {
	t.Helper()
	src := buildTestUpstream(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{dir: dir, bin: filepath.Join(dir, "testupstream"), marker: "testupstream-" + strings.ToLower(rand.Text()[:12])}
	if err := os.WriteFile(u.bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	u.setDescription(t, "Looks up a word in the dictionary.")
	return u
}

// setDescription changes what the lookup tool says about itself at the server's next start:
// an update of the server's code or data in its mount, as an operator (or an attacker with
// the package) would ship it.
func (u *testUpstream) setDescription(t testing.TB, desc string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(u.dir, "lookup.txt"), []byte(desc+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// yaml is the server's entry under upstreams: (indented by two spaces), with more keys of
// its own in extra ("profile: x").
func (u *testUpstream) yaml(name, prefix string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    command: [/opt/mcp/testupstream, --marker=%s, --desc-file=/opt/mcp/lookup.txt]\n", name, u.marker)
	fmt.Fprintf(&b, "    mounts:\n      - {source: %q, target: /opt/mcp}\n    prefix: %s\n", u.dir, prefix)
	for _, e := range extra {
		b.WriteString("    " + e + "\n")
	}
	return b.String()
}

// processes lists the host processes of this server (any of its containers, any backend).
func (u *testUpstream) processes() []string { return escProcessesWith(u.marker) }

// tuAttempt is one JSON line of a testupstream tool's result.
type tuAttempt struct {
	Op   string `json:"op"`
	OK   bool   `json:"ok"`
	Err  string `json:"err"`
	Data string `json:"data"`
}

// tuAttempts parses a testupstream result's lines, in order. They are matched to what the
// test asked by position, not by their op: stage 6 scrubs host-looking paths in results
// ("/root/.bashrc" arrives as "[host-path]/.bashrc").
func tuAttempts(t *testing.T, text string) []tuAttempt {
	t.Helper()
	var out []tuAttempt
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] != '{' {
			continue
		}
		var a tuAttempt
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("testupstream line %q: %v", line, err)
		}
		out = append(out, a)
	}
	return out
}

// requireGatewayBackend skips (fails under AIRLOCK_REQUIRE_SANDBOX=1) when the daemon a
// backend needs does not answer.
func requireGatewayBackend(t *testing.T, backend string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch backend {
	case "runc":
		testenv.Runc(t)
	case "docker":
		host := os.Getenv("DOCKER_HOST")
		if host == "" {
			host = docker.DefaultHost
		}
		cli, err := client.New(client.WithHost(host))
		if err != nil {
			testenv.Unavailable(t, "docker client for %s: %v", host, err)
		}
		defer cli.Close()
		if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
			testenv.Unavailable(t, "the docker daemon at %s does not answer: %v", host, err)
		}
	case "containerd":
		addr := os.Getenv(containerd.AddressEnv)
		if addr == "" {
			addr = containerd.DefaultAddress
		}
		cli, err := ctrd.New(addr, ctrd.WithTimeout(5*time.Second))
		if err != nil {
			testenv.Unavailable(t, "containerd at %s (set %s): %v", addr, containerd.AddressEnv, err)
		}
		defer cli.Close()
		if _, err := cli.Version(ctx); err != nil {
			testenv.Unavailable(t, "containerd at %s does not answer: %v", addr, err)
		}
	default:
		t.Fatalf("no availability check for backend %q", backend)
	}
}

// upstreamLeftovers lists what remains on the host of the servers of u (its processes), and
// of the containers of the named upstreams on backend.
func upstreamLeftovers(t *testing.T, backend string, u *testUpstream, names ...string) []string {
	t.Helper()
	var left []string
	for _, p := range u.processes() {
		left = append(left, "process "+p)
	}
	ctx := context.Background()
	switch backend {
	case "runc":
		// `airlock serve` keeps its bundles in $AIRLOCK_STATE_DIR/run/bundles; the server's
		// argv (with the marker) is in each bundle's config.json.
		bundles := filepath.Join(testenv.StateDir(), "run", "bundles")
		ents, _ := os.ReadDir(bundles)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(bundles, e.Name(), "config.json"))
			if err == nil && strings.Contains(string(b), u.marker) {
				left = append(left, "runc bundle "+e.Name())
			}
		}
	case "docker":
		host := os.Getenv("DOCKER_HOST")
		if host == "" {
			host = docker.DefaultHost
		}
		cli, err := client.New(client.WithHost(host))
		if err != nil {
			return append(left, "docker client: "+err.Error())
		}
		defer cli.Close()
		for _, name := range names {
			list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true,
				Filters: client.Filters{}.Add("label", runtime.LabelUpstream+"="+name)})
			if err != nil {
				return append(left, "docker container list: "+err.Error())
			}
			for _, c := range list.Items {
				left = append(left, "docker container "+c.ID+" "+string(c.State))
			}
		}
	case "containerd":
		addr := os.Getenv(containerd.AddressEnv)
		if addr == "" {
			addr = containerd.DefaultAddress
		}
		cli, err := ctrd.New(addr)
		if err != nil {
			return append(left, "containerd client: "+err.Error())
		}
		defer cli.Close()
		nctx := namespaces.WithNamespace(ctx, containerd.DefaultNamespace)
		for _, name := range names {
			cs, err := cli.Containers(nctx, `labels."`+runtime.LabelUpstream+`"=="`+name+`"`)
			if err != nil {
				return append(left, "containerd container list: "+err.Error())
			}
			for _, c := range cs {
				left = append(left, "containerd container "+c.ID())
			}
		}
	}
	return left
}

// waitNoLeftovers waits a little for the containers of a server being stopped to be removed,
// then fails the test for whatever remains.
func waitNoLeftovers(t *testing.T, backend string, u *testUpstream, names ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := upstreamLeftovers(t, backend, u, names...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind on the host by the upstream's servers (%s): %v", backend, left)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// gatewayCall calls a tool and fails the test on a transport error.
func gatewayCall(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(gatewayCtx(t), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return res
}

// gatewayListed is the set of tool names a session is shown.
func gatewayListed(t *testing.T, cs *mcp.ClientSession) map[string]bool {
	t.Helper()
	res, err := cs.ListTools(gatewayCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, tl := range res.Tools {
		out[tl.Name] = true
	}
	return out
}

// TestGatewayContained runs the hostile tools of integration/testupstream as two stdio
// upstreams of one `airlock serve --http`: "t" in the default upstream profile (no workspace,
// no network) and "tws" in a profile that mounts the workspace read-only. On runc, and on
// docker and containerd when their daemons answer.
func TestGatewayContained(t *testing.T) {
	canary := "gw-env-canary-" + rand.Text()
	// Set before any server starts: had a backend leaked the host environment into a
	// container, the canary would be there.
	t.Setenv(gatewayCanaryEnv, canary)
	for _, backend := range []string{"runc", "docker", "containerd"} {
		t.Run(backend, func(t *testing.T) { testGatewayContained(t, backend, canary) })
	}
}

func testGatewayContained(t *testing.T, backend, envCanary string) {
	requireGatewayBackend(t, backend)
	e := newMCPEnv(t, `{"version":"1","default":"allow"}`, map[string]string{
		"README.md":   "the workspace\n",
		"src/main.go": "package main\n",
	})
	e.backend = backend
	e.quiet = true
	up := newTestUpstream(t)
	name := uniqueUpstream(t, "contained")
	nameWS := uniqueUpstream(t, "contained-ws")
	e.extraProfiles = "  upstream-ws:\n    image: host\n    seccomp: default\n    workspace: ro\n    user: nobody\n" +
		"    memory: 256Mi\n    pids: 64\n    timeout: 1h\n    tmpfs: 16Mi\n"
	e.extraYAML = "builtins: []\nupstreams:\n" + up.yaml(name, "t") + up.yaml(nameWS, "tws", "profile: upstream-ws")

	// A host directory outside anything mounted, holding a secret.
	secretDir := t.TempDir()
	fileCanary := "gw-file-canary-" + rand.Text()
	canaryFile := filepath.Join(secretDir, "canary.txt")
	if err := os.WriteFile(canaryFile, []byte(fileCanary+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wsBefore := escHashTree(t, e.workspace)
	mountBefore := escHashTree(t, up.dir)
	secretBefore := escHashTree(t, secretDir)

	// A listener on every IPv4 address of the host. A control connection from the host
	// proves it accepts when there is a route.
	targets, stopListener := escTCPListener(t)
	if c, err := net.DialTimeout("tcp4", targets[0], 2*time.Second); err != nil {
		t.Fatalf("control dial from the host: %v", err)
	} else {
		c.Close()
	}

	s := e.startHTTP(t)
	cs := connectHTTP(t, s, "", nil)
	if l := gatewayListed(t, cs); !l["t__net"] || !l["tws__write"] {
		t.Fatalf("the upstreams' tools are not listed: %v", l)
	}

	var results []string // every text any tool returned
	// run calls tool and returns its attempts keyed by ops, the operations the arguments
	// ask for, in the order the tool makes them (every one must be reported).
	run := func(tool string, args map[string]any, ops ...string) map[string]tuAttempt {
		t.Helper()
		res := gatewayCall(t, cs, tool, args)
		text := mcpText(res)
		results = append(results, text)
		if res.IsError {
			t.Fatalf("%s: error result: %s", tool, text)
		}
		got := tuAttempts(t, text)
		if ops == nil {
			out := map[string]tuAttempt{}
			for _, a := range got {
				out[a.Op] = a
			}
			return out
		}
		if len(got) != len(ops) {
			t.Fatalf("%s: %d attempts reported, want %d (%v): %s", tool, len(got), len(ops), ops, text)
		}
		out := map[string]tuAttempt{}
		for i, op := range ops {
			out[op] = got[i]
		}
		return out
	}
	mustFail := func(tool string, got map[string]tuAttempt, ops ...string) {
		t.Helper()
		for _, op := range ops {
			if a := got[op]; a.OK {
				t.Errorf("%s: %q succeeded inside the sandbox (data %q)", tool, op, escTruncate([]byte(a.Data), 200))
			} else {
				t.Logf("%s: %s: %s", tool, op, a.Err)
			}
		}
	}
	mustWork := func(tool string, got map[string]tuAttempt, op string) tuAttempt {
		t.Helper()
		a := got[op]
		if !a.OK {
			t.Errorf("%s: control %q failed (%s): the tool does not work, so its failures prove nothing", tool, op, a.Err)
		}
		return a
	}

	// (a) The network: the host's listener on loopback and every host address, an outside
	// address, and a name to resolve.
	addrs := append(append([]string{}, targets...), "1.1.1.1:53")
	names := []string{"example.com"}
	netOps := prefixAll("connect ", addrs)
	for _, n := range names {
		netOps = append(netOps, "resolve "+n, "connect "+net.JoinHostPort(n, "80"))
	}
	for _, prefix := range []string{"t", "tws"} {
		tool := prefix + "__net"
		mustFail(tool, run(tool, map[string]any{"addrs": addrs, "names": names}, netOps...), netOps...)
	}

	// (b) Writes: the workspace, the server's own code and mount, the image's root. /tmp is
	// the sandbox's own tmpfs: writing there must work (the control).
	writes := []string{"/workspace/pwned.txt", "/workspace/README.md", "/opt/mcp/pwned.txt", "/opt/mcp/testupstream",
		"/opt/mcp/lookup.txt", "/pwned.txt", "/usr/pwned.txt", "/etc/passwd", "/root/pwned.txt"}
	writeOps := prefixAll("write ", append(append([]string{}, writes...), "/tmp/ok.txt"))
	for _, prefix := range []string{"t", "tws"} {
		tool := prefix + "__write"
		got := run(tool, map[string]any{"paths": append(append([]string{}, writes...), "/tmp/ok.txt")}, writeOps...)
		mustFail(tool, got, writeOps[:len(writes)]...)
		mustWork(tool, got, "write /tmp/ok.txt")
	}
	// The workspace is there, read-only, in the upstream-ws profile, and absent in the default.
	got := run("tws__read", map[string]any{"paths": []string{"/workspace/README.md"}}, "read ws")
	if a := mustWork("tws__read", got, "read ws"); a.OK && a.Data != "the workspace\n" {
		t.Errorf("tws__read /workspace/README.md = %q", a.Data)
	}
	mustFail("t__read", run("t__read", map[string]any{"paths": []string{"/workspace/README.md"}}, "read ws"), "read ws")

	// (c) Host files: /etc/shadow, /root, the canary file and its directory, by their host
	// paths. The server's own lookup.txt is the control.
	reads := []string{"/etc/shadow", "/root/.bashrc", canaryFile, secretDir}
	readOps := prefixAll("read ", append(append([]string{}, reads...), "/root", "/opt/mcp/lookup.txt"))
	for _, prefix := range []string{"t", "tws"} {
		tool := prefix + "__read"
		got := run(tool, map[string]any{"paths": append(append([]string{}, reads...), "/root", "/opt/mcp/lookup.txt")}, readOps...)
		mustFail(tool, got, readOps[:len(reads)]...)
		if a := got["read /root"]; a.OK && a.Data != "" {
			t.Errorf("%s: /root lists %q", tool, a.Data)
		}
		mustWork(tool, got, "read /opt/mcp/lookup.txt")
	}

	// (c) Environments: its own, pid 1's, every /proc/*/environ it sees, and by host pid
	// those of `airlock serve` and of this test.
	for _, prefix := range []string{"t", "tws"} {
		tool := prefix + "__environ"
		got := run(tool, map[string]any{"pids": []string{strconv.Itoa(s.pid), strconv.Itoa(os.Getpid())}})
		mustWork(tool, got, "environ self")
		for op, a := range got {
			if strings.Contains(a.Data, gatewayCanaryEnv) {
				t.Errorf("%s: %s shows the host's environment: %q", tool, op, escTruncate([]byte(a.Data), 300))
			}
		}
	}

	// Nothing got through, by the host's own account.
	if acc := stopListener(); len(acc) != 1 {
		t.Errorf("host listener accepted %d connections %v; want only the host's control connection", len(acc), acc)
	}
	escAssertTreeUnchanged(t, e.workspace, wsBefore)
	escAssertTreeUnchanged(t, up.dir, mountBefore)
	escAssertTreeUnchanged(t, secretDir, secretBefore)
	all := strings.Join(results, "\n")
	for what, c := range map[string]string{"the environment canary": envCanary, "the file canary": fileCanary} {
		if strings.Contains(all, c) {
			t.Errorf("%s reached a result", what)
		}
	}

	// The servers run while their sessions last, and nothing remains once Airlock stops.
	if len(up.processes()) == 0 {
		t.Error("no server process of the upstreams found on the host while their sessions are open: the leftover check below would prove nothing")
	}
	s.stop()
	waitNoLeftovers(t, backend, up, name, nameWS)
	if code, out := e.verifyAudit(t, e.audit); code != 0 {
		t.Errorf("audit verify: exit %d: %s", code, out)
	}
	calls := 0
	for _, r := range readAudit(t, e.audit) {
		if (strings.HasPrefix(r.Tool, "t__") || strings.HasPrefix(r.Tool, "tws__")) && r.Decision == "allow" {
			calls++
		}
	}
	if want := 10; calls != want {
		t.Errorf("audit has %d allowed upstream calls, want %d", calls, want)
	}
}

func prefixAll(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// TestGatewayStdioCrash: a stdio server that exits in the middle of a call. The call gets an
// error result saying how the server ended, the audit log records it, the crashed container is
// removed, and the next call of the same session works on a server started again after the
// crash backoff.
func TestGatewayStdioCrash(t *testing.T) {
	e := newMCPEnv(t, `{"version":"1","default":"allow"}`, nil)
	e.quiet = true
	up := newTestUpstream(t)
	name := uniqueUpstream(t, "crash")
	e.extraYAML = "builtins: []\nupstreams:\n" + up.yaml(name, "t")
	s := e.startHTTP(t)
	cs := connectHTTP(t, s, "", nil)

	if res := gatewayCall(t, cs, "t__echo", map[string]any{"text": "before"}); res.IsError || mcpText(res) != "echo: before" {
		t.Fatalf("echo: %q", mcpText(res))
	}
	if len(up.processes()) == 0 {
		t.Fatal("no server process on the host after a call: the leftover checks would prove nothing")
	}

	res := gatewayCall(t, cs, "t__crash", map[string]any{})
	text := mcpText(res)
	// The error says how the server ended, with the end of its stderr: what the operator
	// needs, and the sign that Airlock counted a crash (not a stop of its own).
	if !res.IsError || !strings.Contains(text, "exited with code 3") || !strings.Contains(text, "crashing on purpose") {
		t.Errorf("crash: want an error result naming the exit (code 3) and the server's stderr, got error %v: %q", res.IsError, text)
	}
	t.Logf("crash result: %s", text)

	// The next call, right away, starts a new server once the crash backoff (500 ms after a
	// first crash) has passed.
	start := time.Now()
	res = gatewayCall(t, cs, "t__echo", map[string]any{"text": "after"})
	took := time.Since(start)
	if res.IsError || mcpText(res) != "echo: after" {
		t.Fatalf("the call after the crash: error %v: %q", res.IsError, mcpText(res))
	}
	t.Logf("the call after the crash took %s", took.Round(time.Millisecond))
	if took < 300*time.Millisecond {
		t.Errorf("the call after the crash took %s: the server was restarted without the crash backoff", took)
	}

	// The crashed container is gone: one container (the new server's) remains.
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := upstreamLeftovers(t, "runc", up, name)
		bundles := 0
		for _, l := range left {
			if strings.HasPrefix(l, "runc bundle ") {
				bundles++
			}
		}
		if bundles == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after the crash and one restart, the host has %v; want the new server's bundle only", left)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	s.stop()
	waitNoLeftovers(t, "runc", up, name)
	var crash *mcpAuditRecord
	for _, r := range readAudit(t, e.audit) {
		if r.Tool == "t__crash" {
			crash = &r
		}
	}
	switch {
	case crash == nil:
		t.Error("no audit record of the crashed call")
	case crash.Decision != "error":
		t.Errorf("crashed call recorded as %q, want error", crash.Decision)
	case crash.ExitCode != nil:
		t.Errorf("crashed call recorded exit code %d, want null (the upstream never answered)", *crash.ExitCode)
	case !strings.Contains(crash.Message, "exited with code 3"):
		t.Errorf("the crashed call's audit record does not say how the server ended: %+v", *crash)
	}
	if crash != nil {
		t.Logf("audit record of the crash: decision %s, message %q", crash.Decision, crash.Message)
	}
	if code, out := e.verifyAudit(t, e.audit); code != 0 {
		t.Errorf("audit verify: exit %d: %s", code, out)
	}
}
