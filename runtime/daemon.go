package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/policies"
)

// DaemonHello is the line `airlock serve --socket` writes to each client before MCP starts:
// the grant the client acts as, or why it may not connect. `airlock connect` reads it.
type DaemonHello struct {
	Airlock string `json:"airlock"` // "1"
	Grant   string `json:"grant,omitempty"`
	Error   string `json:"error,omitempty"`
}

// ListenDaemon listens on the Unix socket at path for `airlock connect` clients. Any local
// user may connect (the socket is 0666): who they are is the kernel's word (SO_PEERCRED),
// mapped to a grant per connection, not the socket's permissions.
func ListenDaemon(path string) (net.Listener, error) {
	// The socket's directory must be Airlock's or root's and writable by nobody else: in a
	// directory others can write, they could swap the new socket for a symlink before its mode
	// is set (making a root daemon chmod another file) or put up a daemon of their own first.
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || (st.Uid != 0 && st.Uid != uint32(os.Getuid())) || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("the socket's directory %s must be a directory owned by root (or Airlock's user) and writable by nobody else (e.g. /run/airlock, mode 0755)", dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
		}
		// A live daemon answers; a dead one's socket is replaced.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another airlock serves %s already", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// daemonGrant maps a client's uid to its grant: the state store's grant of that uid, else
// the config's grant for Airlock's own user and root. Any other user without a grant is
// refused: acting as the operator's grant, it could write the operator's workspace.
func (r *Runtime) daemonGrant(ctx context.Context, uid uint32) (policies.Grant, error) {
	g, err := r.control.byUID(ctx, uid)
	if errors.Is(err, errNoGrant) && (uid == uint32(os.Getuid()) || uid == 0) {
		return r.Grant(), nil
	}
	return g, err
}

// ServeDaemon serves MCP to `airlock connect` clients on ln until ctx ends: one session per
// connection, as the grant of the client's uid.
func (r *Runtime) ServeDaemon(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		r.Shutdown(shutdownCause(ctx))
		ln.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() { r.serveDaemonConn(ctx, c) })
	}
}

func (r *Runtime) serveDaemonConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	hello := func(h DaemonHello) error {
		h.Airlock = "1"
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		defer c.SetWriteDeadline(time.Time{})
		return json.NewEncoder(c).Encode(h)
	}
	uid, err := peerCred(c)
	if err != nil {
		_ = hello(DaemonHello{Error: "cannot tell who is connecting: " + err.Error()})
		return
	}
	g, err := r.daemonGrant(ctx, uid)
	if err != nil {
		r.log.Warn().Err(err).Uint32("uid", uid).Str("event", "daemon.refused").Msg("daemon client refused")
		_ = hello(DaemonHello{Error: err.Error()})
		return
	}
	if err := hello(DaemonHello{Grant: g.ID}); err != nil {
		return
	}
	// The connection becomes files for the stdio transport, which watches for a client that
	// goes away; the net.Conn closes its own descriptor when this returns.
	in, out, err := connFiles(c)
	if err != nil {
		r.log.Error().Err(err).Str("event", "daemon.error").Msg("daemon connection")
		return
	}
	defer in.Close()
	defer out.Close()
	r.log.Info().Uint32("uid", uid).Str("grant", g.ID).Str("event", "daemon.connected").Msg("daemon client connected")
	authorize := func(*mcp.CallToolRequest) error {
		// Each call asks again: a grant revoked (or a uid's grant changed) while the client is
		// connected takes effect from its next call.
		now, err := r.daemonGrant(context.Background(), uid)
		if err != nil {
			return fmt.Errorf("unauthorized: %w", err)
		}
		if now.ID != g.ID {
			return errors.New("unauthorized: uid's grant changed; reconnect")
		}
		return nil
	}
	if err := r.serveAs(ctx, &StdioTransport{In: in, Out: out}, g, authorize); err != nil && ctx.Err() == nil {
		r.log.Debug().Err(err).Str("event", "daemon.disconnected").Msg("daemon client session ended")
	}
}

// connFiles returns two descriptors of c's socket, one to read and one to write.
func connFiles(c net.Conn) (*os.File, *os.File, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, nil, errors.New("not a unix socket")
	}
	in, err := uc.File()
	if err != nil {
		return nil, nil, err
	}
	out, err := uc.File()
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	return in, out, nil
}
