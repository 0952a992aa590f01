package policies

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/idna"
)

// host_in decides whether an http(s) URL points at an allowed host. It exists because a regex
// on a URL is where egress allowlists break: "^https://acme\.com" admits
// "https://acme.com@evil.example/" and "https://acme.com.evil.example/", and ".*\.acme\.com"
// admits "evilacme.com". Here the URL is parsed by net/url, and the host (only the host) is
// compared exactly, or by "*.suffix" on a label boundary.
//
// Refused as a mismatch (require denies, deny_if fires):
//   - anything net/url rejects, opaque URLs ("https:acme.com"), and an empty host;
//   - a scheme other than http or https (file:, gopher:, ftp: reach different services);
//   - userinfo ("https://acme.com@evil.example/"): the host a reader sees is not the one
//     dialled;
//   - a host that IDNA cannot convert to ASCII, or with an empty label ("acme..com");
//   - a legacy IPv4 form ("http://2130706433/", "http://0x7f.1/", "http://127.1/"): browsers
//     and curl dial these as addresses, so they must not pass as unlisted host names.
//
// The host is lower-cased, one trailing dot is removed ("acme.com." is "acme.com"), and
// internationalised names are converted to ASCII (punycode) before comparing, so a Unicode
// look-alike can only match a pattern that names its punycode form. The port is not compared.
// An IP literal matches only an IP literal listed in the constant (a "*." pattern never matches
// an address).

type hostSet struct {
	exact    []string     // "acme.com"
	suffixes []string     // ".acme.com" from "*.acme.com"
	addrs    []netip.Addr // listed IP literals
}

// compileHost normalises one host_in pattern.
func compileHost(h *hostSet, pat string) error {
	if pat == "" {
		return fmt.Errorf("empty host pattern")
	}
	if strings.ContainsAny(pat, "/:@?#") && !strings.HasPrefix(pat, "[") {
		if _, err := netip.ParseAddr(pat); err != nil {
			return fmt.Errorf("host pattern %q must be a bare host name, *.suffix or IP literal (no scheme, port, path or userinfo)", pat)
		}
	}
	if a, err := netip.ParseAddr(strings.Trim(pat, "[]")); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("host pattern %q has an IPv6 zone", pat)
		}
		h.addrs = append(h.addrs, a.Unmap())
		return nil
	}
	wild := strings.HasPrefix(pat, "*.")
	name := strings.TrimPrefix(pat, "*.")
	if strings.Contains(name, "*") {
		return fmt.Errorf("host pattern %q: '*' is only allowed as a leading \"*.\" label", pat)
	}
	n, err := normaliseHost(name)
	if err != nil {
		return fmt.Errorf("host pattern %q: %w", pat, err)
	}
	if isNumericHost(n) {
		return fmt.Errorf("host pattern %q looks like an IP address but is not a canonical one", pat)
	}
	if wild {
		h.suffixes = append(h.suffixes, "."+n)
	} else {
		h.exact = append(h.exact, n)
	}
	return nil
}

// normaliseHost lower-cases, strips one trailing dot and converts IDNA to ASCII.
func normaliseHost(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", fmt.Errorf("empty host name")
	}
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", fmt.Errorf("not a valid host name: %w", err)
	}
	a = strings.ToLower(a)
	if a == "" || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") || strings.Contains(a, "..") {
		return "", fmt.Errorf("host name %q has an empty label", h)
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
	if strings.HasPrefix(last, "0x") || strings.HasPrefix(last, "0X") {
		for _, c := range last[2:] {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
		return true
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (h *hostSet) match(raw string) outcome {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return badType
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return badType
	}
	host := u.Hostname()
	if host == "" {
		return badType
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return badType
		}
		a = a.Unmap()
		for _, l := range h.addrs {
			if l == a {
				return holds
			}
		}
		return fails
	}
	if strings.HasPrefix(u.Host, "[") {
		return badType // bracketed but not an address
	}
	n, err := normaliseHost(host)
	if err != nil {
		return badType
	}
	if isNumericHost(n) {
		return badType
	}
	for _, e := range h.exact {
		if n == e {
			return holds
		}
	}
	for _, s := range h.suffixes {
		// The suffix starts with '.', so "evilacme.com" never matches "*.acme.com", and
		// len(n) > len(s) keeps "*.acme.com" from matching ".acme.com" itself.
		if len(n) > len(s) && strings.HasSuffix(n, s) {
			return holds
		}
	}
	return fails
}
