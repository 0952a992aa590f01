package runtime

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// TestTokenlessHTTPServesOnlyItsOwnUser: without tokens a loopback caller acts as the
// operator's grant, and write_file runs as the workspace's owner. Another local user (here
// uid 65534 running curl) must be refused; the operator's own client is served.
func TestTokenlessHTTPServesOnlyItsOwnUser(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Unavailable(t, "running a client as another uid needs root (uid %d)", os.Getuid())
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		testenv.Unavailable(t, "curl: %v", err)
	}
	rt := newTestRuntime(t, "", "", &fakeBackend{})
	srv := httptest.NewUnstartedServer(nil)
	h, err := rt.HTTPHandler(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)

	if resp := post(t, srv.URL+MCPPath, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("Airlock's own uid: status %d, want 200", resp.StatusCode)
	}
	run := func(uid uint32) string {
		cmd := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}",
			"-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream",
			"-d", initBody, srv.URL+MCPPath)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl as uid %d: %v", uid, err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(65534); got != "403" {
		t.Fatalf("another local user (uid 65534): status %s, want 403", got)
	}
	if got := run(0); got != "200" {
		t.Fatalf("root via curl: status %s, want 200", got)
	}
}

func TestProcAddr(t *testing.T) {
	tests := []struct {
		addr string
		v6   bool
		want string
	}{
		{"127.0.0.1:8811", false, "0100007F:226B"},
		{"127.0.0.1:8811", true, "0000000000000000FFFF00000100007F:226B"},
		{"[::1]:80", true, "00000000000000000000000001000000:0050"},
		{"[::1]:80", false, "-"},
	}
	for _, tc := range tests {
		if got := procAddr(netip.MustParseAddrPort(tc.addr), tc.v6); got != tc.want {
			t.Errorf("procAddr(%s, v6=%v) = %s, want %s", tc.addr, tc.v6, got, tc.want)
		}
	}
}
