package runtime

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

// TestPeerUIDLookedUpOncePerConnection: ServeHTTP's connections carry a peerCache, so the
// /proc/net/tcp lookup runs once per connection however many requests it carries, while a
// request without one (another server) is looked up every time. A denied peer stays denied.
func TestPeerUIDLookedUpOncePerConnection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		uid       uint32
		wantAllow bool
	}{{"own uid", 1000, true}, {"other uid", 4242, false}} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			f := &httpFront{uid: 1000, peerUID: func(netip.AddrPort, netip.AddrPort) (uint32, error) {
				calls++
				return tc.uid, nil
			}}
			local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8811}
			request := func(ctx context.Context) *http.Request {
				req, _ := http.NewRequestWithContext(context.WithValue(ctx, http.LocalAddrContextKey, net.Addr(local)), "POST", "http://127.0.0.1:8811/mcp", nil)
				req.RemoteAddr = "127.0.0.1:40000"
				return req
			}
			conn := context.WithValue(context.Background(), peerCacheKey{}, &peerCache{})
			for range 3 {
				if err := f.checkPeer(request(conn)); (err == nil) != tc.wantAllow {
					t.Fatalf("checkPeer = %v, want allowed %v", err, tc.wantAllow)
				}
			}
			if calls != 1 {
				t.Fatalf("%d lookups for 3 requests on one connection, want 1", calls)
			}
			f.checkPeer(request(context.Background()))
			f.checkPeer(request(context.Background()))
			if calls != 3 {
				t.Fatalf("%d lookups in all, want 1 + 2 for the requests without a connection cache", calls)
			}
		})
	}
}
