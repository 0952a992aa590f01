// Package identity turns OAuth 2.0 bearer tokens into Airlock grants. Airlock's streamable
// HTTP endpoint is an OAuth 2.0 resource server in the sense of the MCP authorization
// specification (2025-06-18): an authorization server the operator trusts issues JWT access
// tokens, and Airlock verifies them against that issuer's published keys (JWKS), checks that
// they were issued for Airlock (aud), and maps their claims to a grant id and grant labels.
package identity

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWTConfig configures token validation. Zero values take the documented defaults.
type JWTConfig struct {
	// Issuer is the iss value of the tokens, compared exactly (trailing slash included).
	Issuer string `yaml:"issuer"`
	// Audience must be in the tokens' aud (a string or an array): normally Airlock's own
	// resource URL, e.g. https://airlock.example.com/mcp.
	Audience string `yaml:"audience"`
	// JWKSURL is where the issuer publishes its signing keys (https, or http on loopback).
	JWKSURL string `yaml:"jwks_url"`
	// JWKSFile is a local JWK set file, instead of JWKSURL.
	JWKSFile string `yaml:"jwks_file"`
	// GrantClaim names the claim whose string value is the grant id; default "sub".
	GrantClaim string `yaml:"grant_claim"`
	// Labels maps grant label names to claim names. A string claim becomes the label's value;
	// an array of strings is joined with ","; a missing claim leaves the label unset.
	Labels map[string]string `yaml:"labels"`
	// Algorithms are the accepted signing algorithms; default RS256, ES256, EdDSA.
	Algorithms []string `yaml:"algorithms"`
	// Leeway is the clock skew allowed on exp, nbf and iat; a Go duration, default 60s,
	// at most 5m.
	Leeway string `yaml:"leeway"`
	// AuthorizationServers are advertised in the protected-resource metadata; default
	// [Issuer].
	AuthorizationServers []string `yaml:"authorization_servers"`
	// ScopesSupported are advertised in the protected-resource metadata when set. Airlock
	// does not enforce scopes: policies decide what a grant may call.
	ScopesSupported []string `yaml:"scopes_supported"`
}

const (
	defaultGrantClaim = "sub"
	defaultLeeway     = 60 * time.Second
	maxLeeway         = 5 * time.Minute
)

// defaultAlgorithms are asymmetric algorithms that every mainstream issuer can use.
func defaultAlgorithms() []string { return []string{"RS256", "ES256", "EdDSA"} }

// supportedAlgorithms are the asymmetric signature algorithms Airlock verifies.
func supportedAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// labelName is what a label may be called: it becomes a policy path (grant.labels.NAME).
var labelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// ConfigError is a problem with one field of a JWTConfig.
type ConfigError struct {
	Field string // yaml name, e.g. "jwks_url" or "labels.team"
	Msg   string // what is wrong and how to fix it
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks the configuration and returns the first problem as a *ConfigError.
func (c JWTConfig) Validate() error {
	if strings.TrimSpace(c.Issuer) == "" {
		return fieldErr("issuer", "required: the iss value of the tokens, exactly as the issuer writes it (e.g. https://login.example.com/)")
	}
	if strings.TrimSpace(c.Audience) == "" {
		return fieldErr("audience", "required: the aud value the issuer puts in tokens meant for Airlock, normally Airlock's resource URL (e.g. https://airlock.example.com/mcp)")
	}
	switch {
	case c.JWKSURL == "" && c.JWKSFile == "":
		return fieldErr("jwks_url", "set jwks_url (the issuer's JWK set URL, its jwks_uri) or jwks_file (a local JWK set)")
	case c.JWKSURL != "" && c.JWKSFile != "":
		return fieldErr("jwks_file", "set either jwks_url or jwks_file, not both")
	case c.JWKSURL != "":
		if err := checkJWKSURL(c.JWKSURL); err != nil {
			return err
		}
	}
	if c.GrantClaim != "" && strings.TrimSpace(c.GrantClaim) != c.GrantClaim {
		return fieldErr("grant_claim", "%q has surrounding spaces; name the claim exactly (default sub)", c.GrantClaim)
	}
	for _, label := range slices.Sorted(maps.Keys(c.Labels)) {
		if !labelName.MatchString(label) {
			return fieldErr("labels."+label, "label name must match %s (it is used as grant.labels.NAME in policies)", labelName)
		}
		if claim := c.Labels[label]; strings.TrimSpace(claim) == "" || strings.TrimSpace(claim) != claim {
			return fieldErr("labels."+label, "claim name %q: name the token claim exactly, e.g. groups", claim)
		}
	}
	for _, a := range c.Algorithms {
		if err := checkAlgorithm(a); err != nil {
			return err
		}
	}
	if c.Algorithms != nil && len(c.Algorithms) == 0 {
		return fieldErr("algorithms", "empty list: leave it out for the default %v", defaultAlgorithms())
	}
	if c.Leeway != "" {
		d, err := time.ParseDuration(c.Leeway)
		if err != nil || d < 0 || d > maxLeeway {
			return fieldErr("leeway", "%q: want a Go duration from 0s to %s, such as 60s", c.Leeway, maxLeeway)
		}
	}
	for i, s := range c.AuthorizationServers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fieldErr(fmt.Sprintf("authorization_servers[%d]", i), "%q: want an absolute http(s) URL, the authorization server's issuer identifier", s)
		}
	}
	for i, s := range c.ScopesSupported {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			return fieldErr(fmt.Sprintf("scopes_supported[%d]", i), "%q: a scope is a non-empty token without spaces, quotes or backslashes", s)
		}
	}
	return nil
}

// checkAlgorithm refuses algorithms that would let someone other than the issuer mint tokens.
func checkAlgorithm(a string) error {
	switch {
	case strings.EqualFold(a, "none"):
		// alg none means no signature at all: anyone could write any claims.
		return fieldErr("algorithms", "%q is refused: it means an unsigned token, so anyone could write a token with any grant; use an asymmetric algorithm such as RS256, ES256 or EdDSA", a)
	case strings.HasPrefix(strings.ToUpper(a), "HS"):
		// HMAC needs a secret shared with the issuer, which Airlock would have to hold and
		// which could then mint tokens; and with public keys in the set, HS* is the classic
		// key-confusion attack (the public key used as the HMAC secret).
		return fieldErr("algorithms", "%q is refused: HMAC needs a symmetric key shared with the issuer, so whoever holds it (Airlock too) can mint tokens; use an asymmetric algorithm such as RS256, ES256 or EdDSA", a)
	case !slices.Contains(supportedAlgorithms(), a):
		return fieldErr("algorithms", "%q is not supported; choose from %v (names are case-sensitive)", a, supportedAlgorithms())
	}
	return nil
}

// checkJWKSURL wants https, since whoever can change the key set in transit can mint tokens;
// plain http is accepted only on loopback, where no network sits between.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fieldErr("jwks_url", "%q: want an absolute https URL, the issuer's jwks_uri", s)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fieldErr("jwks_url", "%q: use https: a key set fetched over plain http can be swapped in transit, letting whoever does it mint tokens (http is accepted only on loopback)", s)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// settings is a validated JWTConfig with the defaults filled in.
type settings struct {
	issuer, audience string
	grantClaim       string
	labels           map[string]string
	algorithms       []jose.SignatureAlgorithm
	leeway           time.Duration
	authServers      []string
	scopes           []string
}

func (c JWTConfig) settings() (settings, error) {
	if err := c.Validate(); err != nil {
		return settings{}, err
	}
	s := settings{issuer: c.Issuer, audience: c.Audience, grantClaim: c.GrantClaim,
		labels: maps.Clone(c.Labels), leeway: defaultLeeway,
		authServers: slices.Clone(c.AuthorizationServers), scopes: slices.Clone(c.ScopesSupported)}
	if s.grantClaim == "" {
		s.grantClaim = defaultGrantClaim
	}
	algs := c.Algorithms
	if algs == nil {
		algs = defaultAlgorithms()
	}
	for _, a := range algs {
		s.algorithms = append(s.algorithms, jose.SignatureAlgorithm(a))
	}
	if c.Leeway != "" {
		s.leeway, _ = time.ParseDuration(c.Leeway) // checked by Validate
	}
	if len(s.authServers) == 0 {
		s.authServers = []string{c.Issuer}
	}
	return s, nil
}
