// Package egress is Airlock's host-side egress proxy: the only way a sandbox whose profile
// names hosts reaches the network.
//
// A sandbox's network namespace keeps only loopback. A forwarder inside it listens on
// 127.0.0.1:3128 and pipes each TCP connection, byte for byte, to a Unix socket that Airlock
// bind-mounts from the host; HTTP_PROXY and HTTPS_PROXY point at the forwarder. This package
// serves that socket. For every connection it:
//
//  1. reads one proxy request: CONNECT host:port (a TLS tunnel), or a plain HTTP request in
//     absolute form ("GET http://host/path") or origin form with a Host header;
//  2. matches the host against the profile's allowlist (exact names and "*.suffix", ports);
//     IP literals never match, because an address skips every name check;
//  3. resolves the name once (Config.Hosts first, then the resolver) and refuses it if any
//     answer is a private or special-purpose address not in Config.AllowPrivate;
//  4. connects to a resolved address, never the name, so nothing can re-resolve it;
//  5. for CONNECT, reads the client's TLS ClientHello before relaying a byte and requires its
//     server name (SNI) to be the CONNECT host; for plain HTTP, requires the Host header to
//     name the request target, rewrites the request to origin form and strips hop-by-hop and
//     Proxy-* headers;
//  6. enforces the per-proxy caps on connections and bytes; and
//  7. records one Event per connection, allowed or refused, with byte counts.
//
// A refusal the client can still read is an HTTP 403 whose X-Airlock-Egress header and body
// say which host:port was refused, why, and what the operator can change. One Proxy serves
// one tool call: its caps and its Events are that call's.
package egress
