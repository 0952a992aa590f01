package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/egress"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/testcache"
)

// proxyGet sends one plain-HTTP proxy request for url over the Unix socket at sock, as the
// in-sandbox forwarder would pass it on, and returns the status line.
func proxyGet(sock, url string) (string, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	host := strings.TrimPrefix(url, "http://")
	host, _, _ = strings.Cut(host, "/")
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", url, host)
	line, err := bufio.NewReader(c).ReadString('\n')
	_, _ = io.Copy(io.Discard, c)
	return strings.TrimSpace(line), err
}

// Each run whose spec carries an allowlist gets a proxy of its own on a fresh socket, reachable
// while the run lasts and gone after it; its connections come back in Result.Egress.
func TestEgressBackendProxyPerRun(t *testing.T) {
	var hits int
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		fmt.Fprint(w, "hello")
	}))
	defer site.Close()
	port := site.Listener.Addr().(*net.TCPAddr).Port
	allowed := fmt.Sprintf("http://files.test:%d/x", port)
	refused := fmt.Sprintf("http://other.test:%d/x", port)

	var sock string
	var statuses []string
	fb := &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		sock = s.Egress.Socket
		for _, u := range []string{allowed, refused} {
			st, err := proxyGet(sock, u)
			if err != nil {
				return sandbox.Result{}, err
			}
			statuses = append(statuses, st)
		}
		return sandbox.Result{}, nil
	}}
	lo := netip.MustParseAddr("127.0.0.1")
	b := egressBackend{Backend: fb, dir: t.TempDir(), log: zerolog.Nop(), base: egress.Config{
		AllowPrivate: []netip.Prefix{netip.PrefixFrom(lo, 32)},
		Hosts:        map[string][]netip.Addr{"files.test": {lo}, "other.test": {lo}},
	}}
	spec, err := sandbox.New(sandbox.WithImage("busybox"), sandbox.WithArgv("true"), sandbox.WithPids(32),
		sandbox.WithEgressAllow([]string{fmt.Sprintf("files.test:%d", port)}))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Egress.Socket != "" {
		t.Fatalf("a planned spec already has a socket: %q", spec.Egress.Socket)
	}
	res, err := b.Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(statuses) != 2 || !strings.Contains(statuses[0], " 200 ") || !strings.Contains(statuses[1], " 403 ") {
		t.Errorf("statuses through the run's proxy: %q, want 200 then 403", statuses)
	}
	if hits != 1 {
		t.Errorf("the site saw %d requests, want 1 (the refused one must not arrive)", hits)
	}
	if len(res.Egress) != 2 || !res.Egress[0].Allowed || res.Egress[1].Allowed || res.Egress[1].Code != "not_allowed" ||
		res.Egress[0].BytesReceived == 0 {
		t.Errorf("events: %+v", res.Egress)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the proxy's socket %s outlived its run: %v", sock, err)
	}
	if _, err := proxyGet(sock, allowed); err == nil {
		t.Error("the proxy still answers after its run")
	}

	// A spec without an allowlist passes through untouched, with no proxy.
	fb.respond = nil
	plain, _ := sandbox.New(sandbox.WithImage("busybox"), sandbox.WithArgv("true"))
	if res, err := b.Run(context.Background(), plain); err != nil || res.Egress != nil {
		t.Errorf("a run without network: %v, events %v", err, res.Egress)
	}
	if got := fb.runs(); got[len(got)-1].Egress != nil || got[len(got)-1].Network != sandbox.NetworkNone {
		t.Errorf("a run without network reached the backend with %v %+v", got[len(got)-1].Network, got[len(got)-1].Egress)
	}
}

// An allowlist makes a planned proxy spec (whose socket the runtime sets: the backends refuse
// one without, TestWithEgressProxy); an empty one leaves the network none.
func TestEgressAllowPlansProxy(t *testing.T) {
	spec, err := sandbox.New(sandbox.WithImage("busybox"), sandbox.WithArgv("true"), sandbox.WithPids(32),
		sandbox.WithEgressAllow([]string{"files.test"}))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Network != sandbox.NetworkProxy || !strings.Contains(strings.Join(spec.Loosened, ","), "network:proxy") {
		t.Errorf("network %q, loosened %v", spec.Network, spec.Loosened)
	}
	empty, err := sandbox.New(sandbox.WithImage("busybox"), sandbox.WithArgv("true"), sandbox.WithEgressAllow(nil))
	if err != nil || empty.Network != sandbox.NetworkNone || empty.Egress != nil {
		t.Errorf("an empty allowlist: %v, network %q, egress %+v", err, empty.Network, empty.Egress)
	}
}

// Each process's sockets go in a directory of its own, locked while it lives: a start removes
// the directories of dead processes and leaves live ones alone; a state directory too long for
// a socket's name moves them to a private temporary directory.
func TestEgressDirs(t *testing.T) {
	state := t.TempDir()
	root := filepath.Join(state, "egress")
	live, cleanLive, err := egressDir(state)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanLive()
	if filepath.Dir(live) != root {
		t.Fatalf("sockets go to %s, want a directory under %s", live, root)
	}
	if fi, err := os.Stat(live); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory %s: %v", live, err)
	}
	// A dead process's directory: unlocked, and older than a minute.
	dead := filepath.Join(root, "dead")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	young := filepath.Join(root, "young")
	if err := os.MkdirAll(young, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(young, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Minute)
	for _, d := range []string{dead, live} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	_, clean, err := egressDir(state)
	if err != nil {
		t.Fatal(err)
	}
	clean()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("a dead process's socket directory was kept: %v", err)
	}
	for _, d := range []string{live, young} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}

	long := "/tmp/" + strings.Repeat("a", 120)
	dir, cleanup, err := egressDir(long)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if strings.HasPrefix(dir, long) || len(dir)+len("/0123456789abcdef.sock") >= 108 {
		t.Errorf("long state dir: sockets go to %q", dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory %s: %v %v", dir, fi.Mode(), err)
	}
}

// A run that writes its test cache while the cache's file system runs low is stopped, and the
// cache cleared; a run without a cache is not watched.
func TestCacheGuardStopsRun(t *testing.T) {
	state := t.TempDir()
	data := filepath.Join(state, "cache", "k", "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		select {
		case <-ctx.Done():
			return sandbox.Result{Ran: true}, ctx.Err()
		case <-time.After(10 * time.Second):
			return sandbox.Result{}, nil
		}
	}}
	b := cacheGuardBackend{Backend: fb, reserve: math.MaxUint64} // never enough room
	spec, _ := sandbox.New(sandbox.WithImage("host"), sandbox.WithArgv("true"),
		sandbox.WithMount(sandbox.Mount{Source: data, Target: testcache.Target, Access: sandbox.ReadWrite}))
	start := time.Now()
	res, err := b.Run(context.Background(), spec)
	if err == nil || !errors.Is(err, testcache.ErrDiskLow) || !res.Ran || time.Since(start) > 5*time.Second {
		t.Fatalf("run: %v, ran %v, after %s", err, res.Ran, time.Since(start))
	}
	if _, err := os.Stat(filepath.Dir(data)); !os.IsNotExist(err) {
		t.Errorf("the cache was kept: %v", err)
	}
	plain, _ := sandbox.New(sandbox.WithImage("host"), sandbox.WithArgv("true"))
	fb.respond = nil
	if _, err := b.Run(context.Background(), plain); err != nil {
		t.Errorf("a run without a cache: %v", err)
	}
}

// A gateway-style policy on http_fetch's URL and the fetch profile's allowlist both hold: the
// policy refuses a URL before any sandbox starts; a URL it allows runs under the profile's
// egress proxy, with only the profile's hosts.
func TestHTTPFetchPolicyAndAllowlist(t *testing.T) {
	const policy = `{"version":"1","default":"deny","tools":{"http_fetch":{"require":[{"conditions":[
		{"path":"args.url","op":"host_in","value":["docs.acme.test"]}],"on_deny":"http_fetch reaches docs.acme.test only."}]}}}`
	const cfg = "profiles:\n  fetch:\n    image: busybox\n    workspace: none\n    pids: 32\n    network:\n      allow: [docs.acme.test]\n"
	fb := &fakeBackend{}
	rt := newTestRuntime(t, cfg, policy, fb)
	cs := connect(t, rt, nil, "")
	res, text := callText(t, cs, "http_fetch", map[string]any{"url": "https://evil.test/x"})
	if !res.IsError || !strings.Contains(text, "http_fetch reaches docs.acme.test only.") || len(fb.runs()) != 0 {
		t.Fatalf("a URL the policy refuses: error %v %q, %d sandbox runs", res.IsError, text, len(fb.runs()))
	}
	fb.respond = func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: []byte(`{"status":200,"status_text":"OK","headers":{},"body":"docs","body_bytes":4,"body_truncated":false,"body_binary":false,"final_url":"https://docs.acme.test/x","redirects":[]}`)}, nil
	}
	res, text = callText(t, cs, "http_fetch", map[string]any{"url": "https://docs.acme.test/x"})
	if res.IsError || !strings.Contains(text, "HTTP 200 OK") || !strings.Contains(text, "docs") {
		t.Fatalf("an allowed URL: error %v %q", res.IsError, text)
	}
	runs := fb.runs()
	if len(runs) != 1 || runs[0].Network != sandbox.NetworkProxy || runs[0].Egress == nil || runs[0].Egress.Socket == "" ||
		!slices.Equal(runs[0].Egress.Allow, []string{"docs.acme.test"}) {
		t.Fatalf("the run's network: %q %+v", runs[0].Network, runs[0].Egress)
	}
}
