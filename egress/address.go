package egress

import (
	"net/netip"
)

// specialRange is an address block a sandbox may not reach unless the operator lists it in
// Config.AllowPrivate: the host's own services, the private networks around it, and the cloud
// metadata endpoint, which hands out credentials to anyone who can reach 169.254.169.254.
type specialRange struct {
	prefix netip.Prefix
	what   string
}

// specialRanges is read-only. Order matters only for the description: narrower blocks first.
var specialRanges = []specialRange{
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
	{netip.MustParsePrefix("0.0.0.0/8"), `a "this network" address (0.0.0.0/8)`},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address (RFC 1918, 10.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address (100.64.0.0/10)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address (169.254.0.0/16, where cloud metadata lives)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address (RFC 1918, 172.16.0.0/12)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment (192.0.0.0/24)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address (192.0.2.0/24)"},
	{netip.MustParsePrefix("192.88.99.0/24"), "a 6to4 relay anycast address (192.88.99.0/24)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address (RFC 1918, 192.168.0.0/16)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address (198.51.100.0/24)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address (203.0.113.0/24)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address (224.0.0.0/4)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"},

	{netip.MustParsePrefix("::/128"), "the unspecified address (::)"},
	{netip.MustParsePrefix("::1/128"), "the loopback address (::1)"},
	{netip.MustParsePrefix("::/96"), "a deprecated IPv4-compatible address (::/96)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address (100::/64)"},
	{netip.MustParsePrefix("2001::/23"), "an IETF protocol assignment (2001::/23, Teredo included)"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address (2001:db8::/32)"},
	{netip.MustParsePrefix("fc00::/7"), "a unique local address (fc00::/7)"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address (fe80::/10, where cloud metadata lives)"},
	{netip.MustParsePrefix("fec0::/10"), "a deprecated site-local address (fec0::/10)"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address (ff00::/8)"},
}

var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	sixToFo = netip.MustParsePrefix("2002::/16")
)

// classify says why a is a special-purpose address, or "" if it is an ordinary public one.
// IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64's 64:ff9b::/96, 6to4's
// 2002::/16) are judged by the IPv4 address they reach, so ::ffff:127.0.0.1 is loopback.
func classify(a netip.Addr) string {
	if !a.IsValid() {
		return "not a valid address"
	}
	if a.Zone() != "" {
		return "a scoped (zoned) address"
	}
	if a.Is4In6() {
		if w := classify(a.Unmap()); w != "" {
			return "the IPv4-mapped form of " + w
		}
		return ""
	}
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		if w := classify(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); w != "" {
			return "the NAT64 form of " + w
		}
		return ""
	}
	if a.Is6() && sixToFo.Contains(a) {
		b := a.As16()
		if w := classify(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})); w != "" {
			return "the 6to4 form of " + w
		}
		return ""
	}
	for _, r := range specialRanges {
		if r.prefix.Contains(a) {
			return r.what
		}
	}
	return ""
}

// privateAllowed reports whether the operator listed a in AllowPrivate.
func privateAllowed(a netip.Addr, allow []netip.Prefix) bool {
	for _, p := range allow {
		if p.Contains(a) || p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}
