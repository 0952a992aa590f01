package integration

// Dependencies through the egress proxy: run_tests under a profile whose network.allow names a
// package registry installs a project's dependencies from it, as a developer's agent would
// before running tests. A Go HTTP server on the host's loopback stands in for the npm
// registry, another for a Go module proxy; egress.hosts gives their names, and
// egress.allow_private admits loopback. Each case calls run_tests through a real `airlock
// serve` with the Go SDK client and checks three witnesses that must agree: what the command
// printed, what the stand-in was asked, and the call's audit record. On every backend that
// answers here.

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The stand-ins' names, as the sandbox knows them: egress.hosts maps both to 127.0.0.1.
const (
	depsRegistryHost = "registry.test"
	depsModulesHost  = "modules.test"
)

// The npm package the registry stand-in serves, and the Go module the proxy stand-in serves.
const (
	depsNPMName    = "airlock-left-pad"
	depsNPMVersion = "1.0.0"
	depsNPMIndex   = "// airlock-left-pad: served by the registry stand-in\n" +
		"module.exports = (s, n) => String(s).padStart(n, '.');\n"
	depsGoModule  = "example.test/greet"
	depsGoVersion = "v1.0.0"
	depsGreeting  = "hello from example.test/greet v1.0.0"
)

// depsRequest is one request a stand-in received.
type depsRequest struct {
	Method, Path, Host string
	ProxyHeaders       []string // Proxy-* headers, which the egress proxy strips
}

// depsServer is a stand-in: an HTTP server on 127.0.0.1 that logs every request it gets.
type depsServer struct {
	port int
	mu   sync.Mutex
	log  []depsRequest
}

// startDepsServer serves files (path -> body) on 127.0.0.1 until the test ends; any other
// path is a 404, still logged.
func startDepsServer(t *testing.T, files map[string][]byte) *depsServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &depsServer{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := depsRequest{Method: r.Method, Path: r.URL.Path, Host: r.Host}
		for k := range r.Header {
			if strings.HasPrefix(k, "Proxy-") {
				req.ProxyHeaders = append(req.ProxyHeaders, k)
			}
		}
		s.mu.Lock()
		s.log = append(s.log, req)
		s.mu.Unlock()
		body, ok := files[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// requests is a copy of the log so far.
func (s *depsServer) requests() []depsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]depsRequest(nil), s.log...)
}

// hostPort is the stand-in's address as the sandbox names it.
func (s *depsServer) hostPort(name string) string { return name + ":" + strconv.Itoa(s.port) }

// checkRequests asserts the stand-in was asked for each of want (paths) and for nothing it
// does not serve, every time through the egress proxy: Host names the allowed name (the
// proxy connects to 127.0.0.1, so a direct connection would carry no such name) and no
// Proxy-* header got through.
func (s *depsServer) checkRequests(t *testing.T, name string, served map[string][]byte, want ...string) {
	t.Helper()
	log := s.requests()
	seen := map[string]bool{}
	for _, r := range log {
		seen[r.Path] = true
		if _, ok := served[r.Path]; !ok {
			t.Errorf("%s was asked for %s %s, which it does not serve", name, r.Method, r.Path)
		}
		if r.Host != s.hostPort(name) {
			t.Errorf("%s got %s %s with Host %q, want %q (through the egress proxy)", name, r.Method, r.Path, r.Host, s.hostPort(name))
		}
		if len(r.ProxyHeaders) > 0 {
			t.Errorf("%s got %s %s with proxy headers %v, which the egress proxy strips", name, r.Method, r.Path, r.ProxyHeaders)
		}
	}
	for _, p := range want {
		if !seen[p] {
			t.Errorf("%s was never asked for %s; its requests: %+v", name, p, log)
		}
	}
}

// depsNPM is the registry stand-in's content: the tarball, the packument naming it, and the
// lockfile fields npm ci checks it against.
type depsNPM struct {
	files     map[string][]byte
	tarball   string // path of the tarball on the registry
	integrity string // "sha512-" + base64 of the tarball's SHA-512
	shasum    string // hex SHA-1 of the tarball
	size      int
}

// newDepsNPM builds airlock-left-pad's tarball (package/package.json, package/index.js, as
// npm pack lays it out) and the packument a registry serves for it.
func newDepsNPM(t *testing.T) depsNPM {
	t.Helper()
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	pkgJSON := fmt.Sprintf(`{"name":%q,"version":%q,"main":"index.js","license":"MIT"}`+"\n", depsNPMName, depsNPMVersion)
	for _, f := range []struct{ name, body string }{
		{"package/package.json", pkgJSON},
		{"package/index.js", depsNPMIndex},
	} {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Unix(499162500, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	sum512 := sha512.Sum512(tgz.Bytes())
	sum1 := sha1.Sum(tgz.Bytes())
	n := depsNPM{
		tarball:   "/" + depsNPMName + "/-/" + depsNPMName + "-" + depsNPMVersion + ".tgz",
		integrity: "sha512-" + base64.StdEncoding.EncodeToString(sum512[:]),
		shasum:    hex.EncodeToString(sum1[:]),
		size:      tgz.Len(),
	}
	n.files = map[string][]byte{n.tarball: tgz.Bytes()}
	return n
}

// addPackument adds the package's metadata document, whose tarball URL names the registry
// as the sandbox reaches it.
func (n depsNPM) addPackument(t *testing.T, registry string) {
	t.Helper()
	doc := map[string]any{
		"name":      depsNPMName,
		"dist-tags": map[string]string{"latest": depsNPMVersion},
		"versions": map[string]any{depsNPMVersion: map[string]any{
			"name": depsNPMName, "version": depsNPMVersion, "main": "index.js", "license": "MIT",
			"dist": map[string]any{"tarball": "http://" + registry + n.tarball, "integrity": n.integrity, "shasum": n.shasum},
		}},
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	n.files["/"+depsNPMName] = raw
}

// workspace is a project depending on airlock-left-pad, with a v3 lockfile that resolves it
// on the registry at registry (host:port), so npm ci fetches exactly that tarball.
func (n depsNPM) workspace(registry string) map[string]string {
	pkg := fmt.Sprintf(`{"name":"egress-deps","version":"1.0.0","private":true,"dependencies":{%q:%q}}`+"\n", depsNPMName, depsNPMVersion)
	lock := fmt.Sprintf(`{
  "name": "egress-deps",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {"name": "egress-deps", "version": "1.0.0", "dependencies": {%[1]q: %[2]q}},
    "node_modules/%[1]s": {"version": %[2]q, "resolved": %[3]q, "integrity": %[4]q, "license": "MIT"}
  }
}
`, depsNPMName, depsNPMVersion, "http://"+registry+n.tarball, n.integrity)
	return map[string]string{"package.json": pkg, "package-lock.json": lock}
}

// depsNPMScript installs the lockfile's dependencies and shows what landed in node_modules
// (the workspace is a throwaway copy, so the same command must print it) and that it loads.
const depsNPMScript = "npm ci && echo '--- index.js' && cat node_modules/" + depsNPMName + "/index.js && " +
	"node -e 'console.log(\"padded:\" + require(\"" + depsNPMName + "\")(\"x\", 4))'"

// depsNPMEnv points npm at the registry stand-in (npm takes the proxy from HTTPS_PROXY or
// HTTP_PROXY, which Airlock sets) and keeps it from asking anything else: no audit, fund or
// update-notifier requests, and no retries, which would only slow a refused run down.
func depsNPMEnv(registry string) []string {
	return []string{"HOME=/tmp", "npm_config_registry=http://" + registry + "/",
		"npm_config_audit=false", "npm_config_fund=false", "npm_config_update_notifier=false",
		"npm_config_fetch_retries=0"}
}

// depsGo is the module proxy stand-in's content (the GOPROXY protocol) for example.test/greet.
type depsGo struct {
	files map[string][]byte
	mod   string // path of the go.mod on the proxy
	zip   string // path of the module zip
	size  int    // of the zip
}

func newDepsGo(t *testing.T) depsGo {
	t.Helper()
	gomod := "module " + depsGoModule + "\n\ngo 1.21\n"
	src := "// Package greet is served by Airlock's module proxy stand-in.\npackage greet\n\n" +
		"// Hello is the greeting the workspace prints.\nfunc Hello() string { return " + strconv.Quote(depsGreeting) + " }\n"
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	prefix := depsGoModule + "@" + depsGoVersion + "/"
	for _, f := range []struct{ name, body string }{{"go.mod", gomod}, {"greet.go", src}} {
		w, err := zw.Create(prefix + f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	base := "/" + depsGoModule + "/@v/"
	g := depsGo{mod: base + depsGoVersion + ".mod", zip: base + depsGoVersion + ".zip", size: z.Len()}
	g.files = map[string][]byte{
		base + "list":                   []byte(depsGoVersion + "\n"),
		base + depsGoVersion + ".info":  []byte(`{"Version":"` + depsGoVersion + `","Time":"2024-01-02T03:04:05Z"}`),
		g.mod:                           []byte(gomod),
		g.zip:                           z.Bytes(),
		"/" + depsGoModule + "/@latest": []byte(`{"Version":"` + depsGoVersion + `","Time":"2024-01-02T03:04:05Z"}`),
	}
	return g
}

// depsGoWorkspace is a main package that prints the module's greeting.
var depsGoWorkspace = map[string]string{
	"go.mod": "module example.test/hello\n\ngo 1.21\n\nrequire " + depsGoModule + " " + depsGoVersion + "\n",
	"main.go": "package main\n\nimport (\n\t\"os\"\n\n\t\"" + depsGoModule + "\"\n)\n\n" +
		"func main() { os.Stdout.WriteString(greet.Hello() + \"\\n\") }\n",
}

// depsGoScript downloads the module (-x shows each request go makes) and runs the program.
const depsGoScript = "go mod download -x " + depsGoModule + " && go run ."

// depsGoEnv points the go command at the proxy stand-in; the checksum database is off (the
// module is not public) and the toolchain is the image's own.
func depsGoEnv(proxy string) []string {
	return []string{"GOPROXY=http://" + proxy, "GOSUMDB=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local"}
}

// depsExit is a record's exit code as text, "null" when it has none.
func depsExit(r mcpAuditRecord) string {
	if r.ExitCode == nil {
		return "null"
	}
	return strconv.Itoa(*r.ExitCode)
}

// readDepsAudit returns the closing record of the one run_tests call in an audit log.
func readDepsAudit(t *testing.T, path string) mcpAuditRecord {
	t.Helper()
	var found []mcpAuditRecord
	for _, r := range readAuditAll(t, path) {
		if r.Tool == "run_tests" && r.Phase == "" {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("audit log %s has %d closing records of run_tests, want 1", path, len(found))
	}
	return found[0]
}

// depsCase is one run_tests call: the workspace, the command, the profile's env and allowlist.
type depsCase struct {
	files map[string]string
	argv  string // for sh -c
	env   []string
	allow []string // host:port
}

// depsRun serves c's workspace with a real `airlock serve --http` on backend, calls run_tests
// once with the Go SDK client, and returns the result, its text and the call's audit record.
func depsRun(t *testing.T, backend string, c depsCase) (*mcp.CallToolResult, string, mcpAuditRecord) {
	t.Helper()
	e := newMCPEnv(t, `{"version":"1","default":"allow"}`, c.files)
	e.backend = backend
	e.quiet = true
	q := func(ss []string) string {
		parts := make([]string, len(ss))
		for i, s := range ss {
			parts[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	// run_tests' profile, the built-in one's settings with env and network of the case's own.
	e.extraProfiles = "  tests:\n    image: host\n    seccomp: default\n    workspace: copy\n    user: workspace-owner\n" +
		"    memory: 2Gi\n    cpus: 2\n    pids: 1024\n    timeout: 2m\n    tmpfs: 1Gi\n" +
		"    env: " + q(c.env) + "\n    network:\n      allow: " + q(c.allow) + "\n"
	e.extraYAML = "egress:\n  allow_private: [\"127.0.0.1/32\"]\n" +
		"  hosts: {" + depsRegistryHost + ": 127.0.0.1, " + depsModulesHost + ": 127.0.0.1}\n" +
		"tests:\n  argv: " + q([]string{"/bin/sh", "-c", c.argv}) + "\n"
	cs := connectHTTP(t, e.startHTTP(t), "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_tests", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("run_tests: %v", err)
	}
	t.Logf("run_tests on %s: %v", backend, time.Since(start).Round(time.Millisecond))
	return res, mcpText(res), readDepsAudit(t, e.audit)
}

// checkNoRefusalNote asserts the result's text notes no refusal.
func checkNoRefusalNote(t *testing.T, text string) {
	t.Helper()
	if strings.Contains(text, "egress refused") {
		t.Errorf("run_tests output reports a refusal:\n%s", text)
	}
}

// checkAllowedEgress asserts the record lists the proxy's connections, every one to
// host:port and allowed, and that together they brought at least
// minReceived bytes in.
func checkAllowedEgress(t *testing.T, rec mcpAuditRecord, host string, port int, minReceived int) {
	t.Helper()
	if len(rec.Egress) == 0 || rec.EgressCount != len(rec.Egress) {
		t.Fatalf("audit record lists %d egress connections (egress_count %d), want the run's connections: %+v", len(rec.Egress), rec.EgressCount, rec)
	}
	var received int64
	for _, ev := range rec.Egress {
		if ev.Host != host || ev.Port != port || !ev.Allowed || ev.Code != "" {
			t.Errorf("audit egress entry %+v, want an allowed connection to %s:%d", ev, host, port)
		}
		if ev.BytesSent <= 0 {
			t.Errorf("audit egress entry %+v sent no bytes, want the request", ev)
		}
		received += ev.BytesReceived
	}
	if received < int64(minReceived) {
		t.Errorf("audit egress entries received %d bytes in all, want at least %d (what the stand-in served)", received, minReceived)
	}
}

// TestEgressDeps installs dependencies through run_tests' egress proxy on every backend:
// npm ci from a registry stand-in and go mod download from a module proxy stand-in, each on
// the profile's allowlist, and npm ci once more with its registry left off the allowlist,
// which must fail with Airlock's note and leave the registry untouched.
func TestEgressDeps(t *testing.T) {
	for _, backend := range []string{"runc", "docker", "containerd"} {
		t.Run(backend, func(t *testing.T) {
			// The backends at once: the Go case spends most of its time compiling.
			t.Parallel()
			requireGatewayBackend(t, backend)
			mcpRequireImages(t, "host")
			t.Run("npm_ci", func(t *testing.T) { testDepsNPM(t, backend) })
			t.Run("go_mod_download", func(t *testing.T) { testDepsGo(t, backend) })
			t.Run("refused", func(t *testing.T) { testDepsRefused(t, backend) })
		})
	}
}

func testDepsNPM(t *testing.T, backend string) {
	npm := newDepsNPM(t)
	reg := startDepsServer(t, npm.files)
	registry := reg.hostPort(depsRegistryHost)
	npm.addPackument(t, registry)
	res, text, rec := depsRun(t, backend, depsCase{
		files: npm.workspace(registry),
		argv:  depsNPMScript,
		env:   depsNPMEnv(registry),
		allow: []string{registry},
	})

	if res.IsError {
		t.Errorf("run_tests (npm ci) failed:\n%s", text)
	}
	for _, want := range []string{"added 1 package", "--- index.js\n" + depsNPMIndex, "padded:...x"} {
		if !strings.Contains(text, want) {
			t.Errorf("run_tests output lacks %q:\n%s", want, text)
		}
	}
	checkNoRefusalNote(t, text)
	reg.checkRequests(t, depsRegistryHost, npm.files, npm.tarball)
	checkAllowedEgress(t, rec, depsRegistryHost, reg.port, npm.size)
	if rec.ExitCode == nil || *rec.ExitCode != 0 {
		t.Errorf("audit exit_code %s, want 0", depsExit(rec))
	}
}

func testDepsGo(t *testing.T, backend string) {
	mods := newDepsGo(t)
	proxy := startDepsServer(t, mods.files)
	addr := proxy.hostPort(depsModulesHost)
	res, text, rec := depsRun(t, backend, depsCase{
		files: depsGoWorkspace,
		argv:  depsGoScript,
		env:   depsGoEnv(addr),
		allow: []string{addr},
	})

	if res.IsError {
		t.Errorf("run_tests (go mod download) failed:\n%s", text)
	}
	for _, want := range []string{
		"# get http://" + addr + mods.zip, // go mod download -x, each request it makes
		depsGreeting + "\n",               // go run: the module's code, compiled and run
	} {
		if !strings.Contains(text, want) {
			t.Errorf("run_tests output lacks %q:\n%s", want, text)
		}
	}
	checkNoRefusalNote(t, text)
	proxy.checkRequests(t, depsModulesHost, mods.files, mods.mod, mods.zip)
	checkAllowedEgress(t, rec, depsModulesHost, proxy.port, mods.size)
	if rec.ExitCode == nil || *rec.ExitCode != 0 {
		t.Errorf("audit exit_code %s, want 0", depsExit(rec))
	}
}

func testDepsRefused(t *testing.T, backend string) {
	npm := newDepsNPM(t)
	reg := startDepsServer(t, npm.files)
	registry := reg.hostPort(depsRegistryHost)
	npm.addPackument(t, registry)
	// The profile allows a host, so the run has its proxy, but not the registry.
	other := depsModulesHost + ":" + strconv.Itoa(reg.port)
	res, text, rec := depsRun(t, backend, depsCase{
		files: npm.workspace(registry),
		argv:  depsNPMScript,
		env:   depsNPMEnv(registry),
		allow: []string{other},
	})

	if !res.IsError {
		t.Errorf("run_tests (npm ci, registry not allowed) succeeded, want npm ci to fail:\n%s", text)
	}
	if strings.Contains(text, "--- index.js") {
		t.Errorf("npm ci succeeded with its registry off the allowlist:\n%s", text)
	}
	note := fmt.Sprintf("[airlock: egress refused: %s: not on this tool's network allowlist; an operator can allow it by adding %q to the profile's network.allow]",
		registry, registry)
	if !strings.Contains(text, note) {
		t.Errorf("run_tests output lacks Airlock's note %q:\n%s", note, text)
	}
	if log := reg.requests(); len(log) != 0 {
		t.Errorf("the registry, not on the allowlist, got requests: %+v", log)
	}
	if len(rec.Egress) == 0 {
		t.Fatalf("audit record lists no egress connections, want the refused one: %+v", rec)
	}
	for _, ev := range rec.Egress {
		if ev.Host != depsRegistryHost || ev.Port != reg.port || ev.Allowed || ev.Code != "not_allowed" {
			t.Errorf("audit egress entry %+v, want a refused (not_allowed) connection to %s", ev, registry)
		}
	}
	if rec.ExitCode == nil || *rec.ExitCode == 0 {
		t.Errorf("audit exit_code %s, want npm ci's failure", depsExit(rec))
	}
}
