package main

// The egress forwarder of a sandbox with network proxy: the sandbox init starts it before the
// command as
//
//	airlock-toolbox egress-forward fd:3 /.airlock/egress.sock
//
// with a TCP socket already listening on 127.0.0.1:3128 as descriptor 3 (see startForwarder);
// `egress-forward 127.0.0.1:3128 SOCKET` listens itself. Each accepted connection is piped,
// byte for byte and in both directions, to a new connection to SOCKET, the Unix socket of
// Airlock's egress proxy on the host, bind-mounted into the sandbox. The forwarder reads
// nothing of what it forwards and decides nothing: the command could connect to SOCKET itself,
// so policy lives in the proxy. It exists because HTTP clients speak to proxies over TCP.
//
// It is a separate process, not goroutines of the init: the init supervises from one thread
// that must never need another, and a forwarder serving many connections needs the runtime's
// network poller and its threads. Its one P keeps those few.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dialTimeout bounds connecting to the proxy's socket; a proxy that does not accept in that
// time is treated as down and the client's connection is closed.
const dialTimeout = 10 * time.Second

// egressForwardMain is `airlock-toolbox egress-forward LISTEN SOCKET`; it returns only on a
// failure to start (exit 2 on usage, 1 otherwise).
func egressForwardMain(args []string) int {
	const usage = "usage: airlock-toolbox egress-forward (IP:PORT | fd:N) SOCKET"
	if len(args) != 2 || args[1] == "" {
		writeStderr("airlock-toolbox egress-forward: " + usage + "\n")
		return exitInitUsage
	}
	runtime.GOMAXPROCS(1)
	ln, err := forwardListener(args[0])
	if err != nil {
		writeStderr("airlock-toolbox egress-forward: " + err.Error() + "\n")
		return 1
	}
	err = forward(ln, args[1])
	writeStderr("airlock-toolbox egress-forward: " + err.Error() + "\n")
	return 1
}

// forwardListener is the inherited listening socket "fd:N", or a new listener on IP:PORT.
func forwardListener(spec string) (net.Listener, error) {
	if n, ok := strings.CutPrefix(spec, "fd:"); ok {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("listener %q: want fd:N with N >= 3", spec)
		}
		f := os.NewFile(uintptr(fd), "egress-listener")
		// FileListener dups the descriptor; the original is not needed afterwards.
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("listener fd %d: %w", fd, err)
		}
		return ln, nil
	}
	return net.Listen("tcp", spec)
}

// forward accepts connections on ln until it fails for good, piping each to a new connection
// to the Unix socket at socket.
func forward(ln net.Listener, socket string) error {
	backoff := time.Duration(0)
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors (RLIMIT_NOFILE bounds the connections held at once) or a
			// connection reset before it was accepted: wait and go on, as net/http does.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		go pipe(c, socket)
	}
}

// pipe connects c to the Unix socket at socket and copies both ways until both directions
// have ended: end of input on one side is passed on as a half-close (shutdown SHUT_WR) to the
// other, so request/response protocols that close their sending side still get their answer.
func pipe(c net.Conn, socket string) {
	defer c.Close()
	u, err := net.DialTimeout("unix", socket, dialTimeout)
	if err != nil {
		return // the client sees its connection closed; the proxy is down
	}
	defer u.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyHalf(u, c) }()
	go func() { defer wg.Done(); copyHalf(c, u) }()
	wg.Wait()
}

// copyHalf copies src to dst, then half-closes dst for writing. On an error in either
// direction both sides are closed entirely, so the other copy ends too.
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
