package runtime

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// peerUID finds the uid owning the client end of a TCP connection on this host, given the
// client's address (the request's RemoteAddr) and the server's (the connection's local
// address). Both ends of a loopback connection are sockets of this network namespace, so the
// client's socket is the /proc/net/tcp{,6} entry whose local address is remote and whose remote
// address is local.
func peerUID(remote, local netip.AddrPort) (uint32, error) {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		uid, err := findSocketUID(f, remote, local)
		if err == nil {
			return uid, nil
		}
		if !errors.Is(err, errNoSocket) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("no socket %s -> %s in /proc/net/tcp or tcp6: %w", remote, local, errNoSocket)
}

var errNoSocket = errors.New("socket not found")

func findSocketUID(file string, local, remote netip.AddrPort) (uint32, error) {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, errNoSocket
		}
		return 0, err
	}
	defer f.Close()
	v6 := strings.HasSuffix(file, "6")
	wantLocal, wantRemote := procAddr(local, v6), procAddr(remote, v6)
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		if !strings.EqualFold(fields[1], wantLocal) || !strings.EqualFold(fields[2], wantRemote) {
			continue
		}
		uid, err := strconv.ParseUint(fields[7], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s: uid %q: %w", file, fields[7], err)
		}
		return uint32(uid), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errNoSocket
}

// procAddr renders an address as /proc/net/tcp does: the address as 32-bit words in host
// byte order, then the port, all in hex. In tcp6 an IPv4 peer of a dual-stack
// socket appears as ::ffff:a.b.c.d.
func procAddr(ap netip.AddrPort, v6 bool) string {
	a := ap.Addr().Unmap()
	var raw []byte
	if v6 {
		b := netip.AddrFrom16(a.As16()).As16()
		if a.Is4() {
			b = netip.AddrFrom16(netip.IPv6Unspecified().As16()).As16()
			v4 := a.As4()
			b[10], b[11] = 0xff, 0xff
			copy(b[12:], v4[:])
		}
		raw = b[:]
	} else {
		if !a.Is4() {
			return "-"
		}
		b := a.As4()
		raw = b[:]
	}
	var sb strings.Builder
	for i := 0; i < len(raw); i += 4 {
		fmt.Fprintf(&sb, "%08X", binary.NativeEndian.Uint32(raw[i:i+4]))
	}
	fmt.Fprintf(&sb, ":%04X", ap.Port())
	return sb.String()
}
