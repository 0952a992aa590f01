package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/testcache"
)

// mcpEnv is one test's private Airlock: its own workspace, policy, config and audit log. Only
// the images are shared, read from testenv.StateDir() where `make setup` built them.
type mcpEnv struct {
	bin       string // the airlock binary
	runc      string
	workspace string
	policy    string // path of the policy JSON
	config    string // path of the config YAML
	audit     string // path of the audit log (JSON lines)
	// state is the config's state: (counters, grants, kill switches); this test's own
	// directory unless a test shares one between servers.
	state string
	// quiet keeps a server's diagnostics out of the log unless the test fails (benchmarks
	// always print their logs).
	quiet bool
	// commandProfile is run_command's sandbox profile (YAML); mcpCommandProfile by default.
	commandProfile string
	// stateDir, when set, is the server's AIRLOCK_STATE_DIR instead of the shared one (see
	// privateStateDir).
	stateDir string
	// extraYAML is appended to the config (top-level keys); extraEnv to the server's environment.
	extraYAML string
	extraEnv  []string
	// backend is the config's sandbox backend; "" is runc.
	backend string
	// extraProfiles are more entries of profiles: (YAML, indented by two spaces).
	extraProfiles string
	// stderrTo, when set, also receives all a server writes to stderr (its log), for tests
	// that look at what Airlock logged.
	stderrTo io.Writer
}

// mcpCommandProfile replaces the built-in "command" profile (run_command's sandbox) for the
// tests: the same as the built-in one but with a 2s timeout, so the timeout case is quick.
const mcpCommandProfile = `image: host
seccomp: default
workspace: ro
user: nobody
memory: 512Mi
cpus: 1
pids: 128
timeout: 2s
tmpfs: 64Mi`

// newMCPEnv prepares a workspace holding files (path -> content), writes policyJSON and a
// config pointing at both, and checks that the real parts the server needs are present.
func newMCPEnv(t testing.TB, policyJSON string, files map[string]string) *mcpEnv {
	t.Helper()
	runc := testenv.Runc(t)
	mcpRequireImages(t, "busybox", "host")
	dir := t.TempDir()
	e := &mcpEnv{
		bin:       filepath.Join(testenv.Binaries(t), "airlock"),
		runc:      runc,
		workspace: filepath.Join(dir, "workspace"),
		policy:    filepath.Join(dir, "policy.json"),
		config:    filepath.Join(dir, "airlock.yaml"),
		audit:     filepath.Join(dir, "audit.jsonl"),
		state:     filepath.Join(dir, "state"),

		commandProfile: mcpCommandProfile,
	}
	if err := os.MkdirAll(e.workspace, 0o755); err != nil {
		t.Fatal(err)
	}
	// run_tests keeps a toolchain cache per workspace in the shared state directory.
	t.Cleanup(func() {
		if real, err := filepath.EvalSymlinks(e.workspace); err == nil {
			_, _ = testcache.Clear(testenv.StateDir(), real)
		}
	})
	for name, content := range files {
		p := filepath.Join(e.workspace, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !json.Valid([]byte(policyJSON)) {
		t.Fatalf("test policy is not valid JSON:\n%s", policyJSON)
	}
	if err := os.WriteFile(e.policy, []byte(policyJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// configYAML is the server's config (docs/config.md): the built-in toolset on this test's
// workspace, policy and audit log, with run_command's profile replaced by commandProfile.
func (e *mcpEnv) configYAML() string {
	backend := e.backend
	if backend == "" {
		backend = "runc"
	}
	var profile strings.Builder
	for _, line := range strings.Split(e.commandProfile, "\n") {
		profile.WriteString("    " + line + "\n")
	}
	return fmt.Sprintf("workspace: %q\nbackend: %s\npolicy: %q\nstate: %q\naudit:\n  path: %q\nprofiles:\n  command:\n%s%s%s",
		e.workspace, backend, e.policy, e.state, e.audit, profile.String(), e.extraProfiles, e.extraYAML)
}

// mcpRequireImages skips (fails under make test) when an image the built-in tools run on has
// not been built into testenv.StateDir().
func mcpRequireImages(t testing.TB, names ...string) {
	t.Helper()
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store %s: %v", testenv.StateDir(), err)
	}
	for _, name := range names {
		if _, err := store.Resolve(context.Background(), name); err != nil {
			testenv.Unavailable(t, "image %s: %v", name, err)
		}
	}
}

// env is the server's environment: the images' state dir and the runc to use.
func (e *mcpEnv) env() []string {
	env := append(os.Environ(), e.extraEnv...)
	state := e.stateDir
	if state == "" {
		state = testenv.StateDir()
	}
	return append(env,
		"AIRLOCK_STATE_DIR="+state,
		"AIRLOCK_RUNC="+e.runc,
		"PATH="+filepath.Dir(e.bin)+string(os.PathListSeparator)+filepath.Dir(e.runc)+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
}

// writeConfig writes the config file; every server start rewrites it from the fields.
func (e *mcpEnv) writeConfig(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(e.config, []byte(e.configYAML()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serveArgs are the arguments of `airlock serve` after the transport flag.
func (e *mcpEnv) serveArgs(t testing.TB) []string {
	e.writeConfig(t)
	return []string{"--workspace", e.workspace, "--config", e.config, "--policy", e.policy}
}

// command returns an airlock command line with this env's environment, run in the workspace.
func (e *mcpEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = e.env()
	cmd.Dir = e.workspace
	return cmd
}

// logWriter returns where a server's output goes: the test log, or (quiet) a buffer whose tail
// is logged only if the test fails.
func (e *mcpEnv) logWriter(t testing.TB, prefix string) io.Writer {
	if !e.quiet {
		return &mcpLogWriter{t: t, prefix: prefix}
	}
	w := &mcpTailWriter{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s (last %d bytes):\n%s", prefix, mcpTailBytes, w.String())
		}
	})
	return w
}

// stderrWriter is where a server's stderr goes: logWriter's, and stderrTo when set.
func (e *mcpEnv) stderrWriter(t testing.TB, prefix string) io.Writer {
	w := e.logWriter(t, prefix)
	if e.stderrTo != nil {
		return io.MultiWriter(w, e.stderrTo)
	}
	return w
}

const mcpTailBytes = 8 << 10

// mcpTailWriter keeps the last mcpTailBytes written to it.
type mcpTailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *mcpTailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > mcpTailBytes {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-mcpTailBytes:]...)
	}
	return len(p), nil
}

func (w *mcpTailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// mcpLogWriter forwards a server's stderr to the test log, line by line.
type mcpLogWriter struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (w *mcpLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.t.Logf("%s: %s", w.prefix, strings.TrimRight(line, "\n"))
	}
}

// connectStdio starts `airlock serve --stdio` as the client's subprocess and connects to it.
// The session is closed (and the server waited for) when the test ends.
func (e *mcpEnv) connectStdio(t testing.TB, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	cmd := e.command(context.Background(), append([]string{"serve", "--stdio"}, e.serveArgs(t)...)...)
	cmd.Stderr = e.stderrWriter(t, "airlock serve --stdio")
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-integration", Version: "0"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd, TerminateDuration: 5 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connecting to airlock serve --stdio: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// mcpServer is a running `airlock serve --http`.
type mcpServer struct {
	endpoint string // http://127.0.0.1:PORT/mcp
	addr     string
	pid      int
	stop     func() // idempotent: SIGTERM, then wait
}

// startHTTP starts `airlock serve --http 127.0.0.1:0` and waits for the endpoint it prints
// once it listens (the kernel picks the port, so parallel test packages never collide). The
// server is stopped when the test ends (or by stop()).
func (e *mcpEnv) startHTTP(t testing.TB, extra ...string) *mcpServer {
	t.Helper()
	args := append([]string{"serve", "--http", "127.0.0.1:0"}, e.serveArgs(t)...)
	cmd := e.command(context.Background(), append(args, extra...)...)
	ready := &mcpEndpointWriter{next: e.stderrWriter(t, "airlock serve --http"), found: make(chan string, 1)}
	cmd.Stderr = ready
	cmd.Stdout = e.logWriter(t, "airlock serve --http (stdout)")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting airlock serve --http: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
	}
	t.Cleanup(stop)
	select {
	case endpoint := <-ready.found:
		u, err := url.Parse(endpoint)
		if err != nil || u.Hostname() != "127.0.0.1" {
			t.Fatalf("airlock serve --http printed endpoint %q, want http://127.0.0.1:PORT/mcp (%v)", endpoint, err)
		}
		return &mcpServer{endpoint: endpoint, addr: u.Host, pid: cmd.Process.Pid, stop: stop}
	case err := <-exited:
		// Keep the channel's contract for stop(): it must not block on a second receive.
		exited <- err
		t.Fatalf("airlock serve --http exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("airlock serve --http: no endpoint printed after 30s")
	}
	return nil
}

// mcpEndpointRE matches the line `airlock serve --http` prints once it listens.
var mcpEndpointRE = regexp.MustCompile(`MCP endpoint \(streamable HTTP\): (http://\S+)`)

// mcpEndpointWriter passes a server's stderr on and reports the first endpoint it announces.
type mcpEndpointWriter struct {
	next  io.Writer
	found chan string
	mu    sync.Mutex
	buf   []byte
	done  bool
}

func (w *mcpEndpointWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if !w.done {
		w.buf = append(w.buf, p...)
		if m := mcpEndpointRE.FindSubmatch(w.buf); m != nil {
			w.found <- string(m[1])
			w.done, w.buf = true, nil
		} else if len(w.buf) > 64<<10 {
			w.buf = w.buf[len(w.buf)-4096:]
		}
	}
	w.mu.Unlock()
	return w.next.Write(p)
}

// mcpBearer adds a bearer token to every request.
type mcpBearer struct {
	token string
	base  http.RoundTripper
}

func (b mcpBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// connectHTTP connects a Go SDK client to a running server's streamable HTTP endpoint.
func connectHTTP(t testing.TB, s *mcpServer, token string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	hc := &http.Client{Timeout: 150 * time.Second} // above run_tests' own 120 s timeout: a loaded machine is not a hang
	if token != "" {
		hc.Transport = mcpBearer{token: token, base: http.DefaultTransport}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-integration", Version: "0"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.endpoint, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connecting to %s: %v", s.endpoint, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// mcpAuditRecord is the part of an audit record the tests look at.
type mcpAuditRecord struct {
	AuditID  string `json:"audit_id"`
	Grant    string `json:"grant"`
	Tool     string `json:"tool"`
	Decision string `json:"decision"`
	Rule     string `json:"rule"`
	// PolicySHA256 is the hash of the policy that decided the call.
	PolicySHA256 string             `json:"policy_sha256"`
	Redactions   map[string]int     `json:"redactions"` // rule -> count
	TimedOut     bool               `json:"timed_out"`
	ExitCode     *int               `json:"exit_code"` // null when the tool did not run
	PrevHash     string             `json:"prev_hash"`
	Hash         string             `json:"hash"`
	DurationMS   float64            `json:"duration_ms"`
	StageMS      map[string]float64 `json:"stage_ms"`
	// Phase is "" on a call's closing record, "started" on its intent record, "reaped" on the
	// record a later start writes for a call whose Airlock died.
	Phase       string `json:"phase"`
	Cancelled   bool   `json:"cancelled"`
	ContainerID string `json:"container_id"`
	Message     string `json:"message"`
	// Egress is the call's connections through its egress proxy (the first 64); EgressCount
	// is how many there were.
	Egress      []mcpEgressRecord `json:"egress"`
	EgressCount int               `json:"egress_count"`
}

// mcpEgressRecord is one connection of a call's egress proxy in its audit record.
type mcpEgressRecord struct {
	Host          string `json:"host"`
	Port          int    `json:"port"`
	Allowed       bool   `json:"allowed"`
	Code          string `json:"code"`
	BytesSent     int64  `json:"bytes_sent"`
	BytesReceived int64  `json:"bytes_received"`
}

// redactions is the record's total number of redacted secrets.
func (r mcpAuditRecord) redactions() int {
	n := 0
	for _, c := range r.Redactions {
		n += c
	}
	return n
}

// readAudit returns the closing record of every call in an audit log (one per call).
func readAudit(t testing.TB, path string) []mcpAuditRecord {
	t.Helper()
	var out []mcpAuditRecord
	for _, r := range readAuditAll(t, path) {
		if r.Phase == "" {
			out = append(out, r)
		}
	}
	return out
}

// readAuditAll returns every record of an audit log, intent and reaped records included.
func readAuditAll(t testing.TB, path string) []mcpAuditRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var recs []mcpAuditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r mcpAuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit log %s: record %d is not JSON: %v\n%s", path, len(recs)+1, err, sc.Text())
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading audit log %s: %v", path, err)
	}
	return recs
}

// verifyAudit runs `airlock audit verify FILE` and returns its exit code and output.
func (e *mcpEnv) verifyAudit(t testing.TB, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.command(ctx, "audit", "verify", path).CombinedOutput()
	if err == nil {
		return 0, string(out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("airlock audit verify %s: %v\n%s", path, err, out)
	return -1, ""
}

// jsonString is v as JSON, for failure messages.
func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// checkToolNames asserts a tools/list answer (from any client) shows every tool the test
// policy allows and none it hides.
func checkToolNames(t *testing.T, names []string) {
	t.Helper()
	for _, want := range mcpVisibleTools {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list %v lacks %s", names, want)
		}
	}
	for _, hidden := range mcpHiddenTools {
		if slices.Contains(names, hidden) {
			t.Errorf("tools/list %v shows %s, which the policy hides", names, hidden)
		}
	}
}
