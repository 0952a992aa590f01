package runtime

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Operational endpoints on the HTTP listener, beside /mcp (docs/observe.md). They pass the
// same Host and Origin checks as /mcp first (ServeHTTP), so a web page cannot read them
// through a rebound DNS name either.
const (
	HealthzPath = "/healthz" // 200 while the process serves
	ReadyzPath  = "/readyz"  // 200 when a call could run and be recorded now; 503 otherwise
	MetricsPath = "/metrics" // Prometheus text format
)

// serveOps answers the operational endpoints; false for any other path.
//
// /healthz and /readyz need no credentials: load balancers and orchestrators probe them
// without any, and they say only whether this process can work, in words that name no host
// path and quote no component's error (those go to the log).
//
// /metrics needs credentials where /mcp does (see metricsAllowed): the counters hold no
// argument, output or secret, but tool and rule names, grant names with metrics.grant_label,
// and the rate of every grant's calls are not for anyone who can reach the port.
func (f *httpFront) serveOps(w http.ResponseWriter, req *http.Request) bool {
	switch req.URL.Path {
	case HealthzPath, ReadyzPath, MetricsPath:
	default:
		return false
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method not allowed: use GET", http.StatusMethodNotAllowed)
		return true
	}
	w.Header().Set("Cache-Control", "no-store")
	switch req.URL.Path {
	case HealthzPath:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok: airlock is serving")
	case ReadyzPath:
		ok, body := f.rt.ready.report(req.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, body)
	case MetricsPath:
		if f.metricsAllowed(w, req) {
			f.rt.tel.m.handler.ServeHTTP(w, req)
		}
	}
	return true
}

// metricsAllowed decides who may read /metrics, answering the refusal itself:
//   - with metrics.token_env/token_file, that token and no other: agents' tokens read
//     nothing there, and the scraper's token calls no tool (it is no grant's);
//   - else, where /mcp needs a bearer token (http.tokens, grants, http.jwt), any token /mcp
//     accepts;
//   - else (token-less, which CheckBind allows on loopback only) any loopback client, of any
//     uid: a Prometheus running as its own user must be able to scrape, and what it reads
//     carries no argument, output or secret. Unlike /mcp, /metrics changes nothing.
func (f *httpFront) metricsAllowed(w http.ResponseWriter, req *http.Request) bool {
	if len(req.Header.Values("Authorization")) > 1 {
		// Two credentials: which one would be judged is a parser's accident.
		http.Error(w, "Bad request: more than one Authorization header", http.StatusBadRequest)
		return false
	}
	hdr := req.Header.Get("Authorization")
	if f.metricsToken != nil {
		tok, ok := strings.CutPrefix(hdr, "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(sum[:], f.metricsToken[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock-metrics"`)
			http.Error(w, "Unauthorized: /metrics needs the metrics token (metrics.token_env or metrics.token_file)", http.StatusUnauthorized)
			return false
		}
		return true
	}
	if f.local != nil && hdr == "" {
		remote, err := netip.ParseAddrPort(req.RemoteAddr)
		if err != nil || !remote.Addr().Unmap().IsLoopback() {
			http.Error(w, "Forbidden: /metrics without a token is served to loopback clients only", http.StatusForbidden)
			return false
		}
		return true
	}
	if _, err := f.authenticate(req.Context(), hdr); err != nil {
		f.refuse(w, err)
		return false
	}
	return true
}

// metricsToken reads metrics.token_env or metrics.token_file; nil when neither is set.
func (c *Config) metricsToken() (*[32]byte, error) {
	m := c.Metrics
	if m.TokenEnv != "" && m.TokenFile != "" {
		return nil, c.errAt("set token_env or token_file, not both", "metrics")
	}
	var v string
	switch {
	case m.TokenEnv != "":
		v = os.Getenv(m.TokenEnv)
		if v == "" {
			return nil, c.errAt(fmt.Sprintf("environment variable %s is empty or unset", m.TokenEnv), "metrics", "token_env")
		}
	case m.TokenFile != "":
		b, err := os.ReadFile(m.TokenFile)
		if err != nil {
			return nil, c.errAt(err.Error(), "metrics", "token_file")
		}
		v = strings.TrimSpace(string(b))
	default:
		return nil, nil
	}
	if len(v) < minTokenLen {
		return nil, c.errAt(fmt.Sprintf("token is %d characters; use at least %d random ones (e.g. openssl rand -hex 32)", len(v), minTokenLen), "metrics")
	}
	sum := sha256.Sum256([]byte(v))
	return &sum, nil
}

// metricsHandler serves the registry in the Prometheus text format (or OpenMetrics, when
// the scraper asks for it).
func metricsHandler(m *metrics) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
