package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// errIPLiteral marks a host that is an IP address in some notation. The proxy reaches named
// hosts only: an address would skip the allowlist's names and the resolver's answer checks,
// and could point anywhere (cloud metadata, the host's own services).
var errIPLiteral = errors.New("an IP address, not a host name")

// rule is one compiled allowlist pattern.
type rule struct {
	name string // normalised host; for a wildcard, the suffix without "*."
	wild bool   // "*.name": any subdomain of name, not name itself
	port int    // 0: ports 80 and 443
}

// allowlist is the compiled form of Config.Allow.
type allowlist []rule

// ParseAllow checks allowlist patterns the way New does, so a configuration can be validated
// before any proxy is built. Every bad pattern is reported, each with its index and the fix.
func ParseAllow(patterns []string) error {
	_, err := compileAllow(patterns)
	return err
}

func compileAllow(patterns []string) (allowlist, error) {
	var out allowlist
	var errs []error
	for i, p := range patterns {
		r, err := compileRule(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow[%d] %q: %w", i, p, err))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

const wantPattern = `want "host.example.com" or "*.example.com", either with an optional ":port" (no port means 80 and 443)`

func compileRule(p string) (rule, error) {
	if p == "" {
		return rule{}, errors.New("empty pattern; " + wantPattern)
	}
	if strings.HasPrefix(p, "[") {
		return rule{}, errors.New("IP addresses are never allowed: name the host; an internal address can be given a name in egress.hosts")
	}
	if strings.ContainsAny(p, "/@?#\\ \t\r\n") {
		return rule{}, errors.New("a pattern is a host, not a URL (no scheme, path, userinfo or spaces); " + wantPattern)
	}
	host, port := p, 0
	if i := strings.LastIndexByte(p, ':'); i >= 0 {
		if strings.Count(p, ":") > 1 {
			return rule{}, errors.New("IP addresses are never allowed: name the host; an internal address can be given a name in egress.hosts")
		}
		n, err := parsePort(p[i+1:])
		if err != nil {
			return rule{}, err
		}
		host, port = p[:i], n
	}
	wild := strings.HasPrefix(host, "*.")
	name := strings.TrimPrefix(host, "*.")
	if strings.Contains(name, "*") {
		return rule{}, errors.New(`'*' is allowed only as a whole leading label, as in "*.example.com"; ` + wantPattern)
	}
	n, err := canonicalHost(name)
	if errors.Is(err, errIPLiteral) {
		return rule{}, errors.New("IP addresses are never allowed: name the host; an internal address can be given a name in egress.hosts")
	}
	if err != nil {
		return rule{}, fmt.Errorf("%w; %s", err, wantPattern)
	}
	return rule{name: n, wild: wild, port: port}, nil
}

// parsePort accepts a decimal TCP port, 1 to 65535.
func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || s[0] == '+' {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return n, nil
}

// match reports whether host (canonical, from canonicalHost) and port are allowed.
func (a allowlist) match(host string, port int) bool {
	for _, r := range a {
		if r.port == 0 && port != 80 && port != 443 || r.port != 0 && r.port != port {
			continue
		}
		if !r.wild && host == r.name {
			return true
		}
		// The '.' before the suffix keeps "evilexample.com" out of "*.example.com", and the
		// length check keeps the bare "example.com" out of it too.
		if r.wild && len(host) > len(r.name)+1 && strings.HasSuffix(host, r.name) && host[len(host)-len(r.name)-1] == '.' {
			return true
		}
	}
	return false
}

// canonicalHost turns a host as a client or an operator wrote it into the one form the proxy
// compares, resolves and forwards: IDNA A-labels (punycode), lower case, no trailing dot. A
// Unicode look-alike therefore only matches a pattern naming its punycode form. Any IP
// address notation is errIPLiteral, including the legacy ones resolvers still accept
// ("2130706433", "0x7f.1", "127.1"), which must not pass as names.
func canonicalHost(h string) (string, error) {
	if strings.HasPrefix(h, "[") {
		return "", errIPLiteral
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return "", errIPLiteral
	}
	t := strings.TrimSuffix(h, ".")
	if t == "" {
		return "", errors.New("empty host name")
	}
	a, err := idna.Lookup.ToASCII(t)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid host name: %v", h, err)
	}
	a = strings.ToLower(a)
	if a == "" || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") || strings.Contains(a, "..") {
		return "", fmt.Errorf("host name %q has an empty label", h)
	}
	if len(a) > 253 {
		return "", fmt.Errorf("host name %q is longer than 253 bytes", h)
	}
	if _, err := netip.ParseAddr(a); err == nil || isNumericHost(a) {
		return "", errIPLiteral
	}
	return a, nil
}

// isNumericHost follows the WHATWG URL rule: a host whose last label is all digits, or 0x
// followed by hex digits, is an IPv4 address in some notation.
func isNumericHost(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	digits := "0123456789"
	if strings.HasPrefix(last, "0x") || strings.HasPrefix(last, "0X") {
		last, digits = last[2:], "0123456789abcdefABCDEF"
	}
	for _, c := range last {
		if !strings.ContainsRune(digits, c) {
			return false
		}
	}
	return true
}

// splitHostPort splits "host:port", "[v6]:port" or, when defPort is not 0, a bare host.
func splitHostPort(s string, defPort int) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty host")
	}
	hasPort := strings.LastIndexByte(s, ':') > strings.LastIndexByte(s, ']')
	if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
		return s, defPort, nil // a bare IPv6 address; canonicalHost refuses it
	}
	if !hasPort {
		if defPort == 0 {
			return "", 0, fmt.Errorf("%q has no port; want host:port", s)
		}
		return strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), defPort, nil
	}
	i := strings.LastIndexByte(s, ':')
	port, err := parsePort(s[i+1:])
	if err != nil {
		return "", 0, err
	}
	return strings.TrimSuffix(strings.TrimPrefix(s[:i], "["), "]"), port, nil
}

// suggestion is what an operator would add to network.allow to admit host:port.
func suggestion(host string, port int) string {
	if port == 80 || port == 443 {
		return host
	}
	return host + ":" + strconv.Itoa(port)
}
