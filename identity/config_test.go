package identity

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"gopkg.in/yaml.v3"
)

const (
	testIssuer   = "https://issuer.test/"
	testAudience = "https://airlock.test/mcp"
)

func validConfig() JWTConfig {
	return JWTConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://issuer.test/jwks"}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*JWTConfig)
		field  string // "" means valid
		says   string
	}{
		{"valid", func(*JWTConfig) {}, "", ""},
		{"jwks_file instead", func(c *JWTConfig) { c.JWKSURL, c.JWKSFile = "", "/etc/airlock/jwks.json" }, "", ""},
		{"http on loopback", func(c *JWTConfig) { c.JWKSURL = "http://127.0.0.1:8080/jwks" }, "", ""},
		{"http on localhost", func(c *JWTConfig) { c.JWKSURL = "http://localhost:8080/jwks" }, "", ""},
		{"all algorithms", func(c *JWTConfig) { c.Algorithms = supportedAlgorithms() }, "", ""},
		{"no issuer", func(c *JWTConfig) { c.Issuer = "" }, "issuer", "required"},
		{"no audience", func(c *JWTConfig) { c.Audience = " " }, "audience", "required"},
		{"no key source", func(c *JWTConfig) { c.JWKSURL = "" }, "jwks_url", "or jwks_file"},
		{"both key sources", func(c *JWTConfig) { c.JWKSFile = "/x" }, "jwks_file", "not both"},
		{"relative jwks_url", func(c *JWTConfig) { c.JWKSURL = "/jwks" }, "jwks_url", "absolute https URL"},
		{"ftp jwks_url", func(c *JWTConfig) { c.JWKSURL = "ftp://issuer.test/jwks" }, "jwks_url", "absolute https URL"},
		{"plain http jwks_url", func(c *JWTConfig) { c.JWKSURL = "http://issuer.test/jwks" }, "jwks_url", "use https"},
		{"alg none", func(c *JWTConfig) { c.Algorithms = []string{"RS256", "none"} }, "algorithms", "unsigned token"},
		{"alg None", func(c *JWTConfig) { c.Algorithms = []string{"None"} }, "algorithms", "unsigned token"},
		{"HS256", func(c *JWTConfig) { c.Algorithms = []string{"HS256"} }, "algorithms", "symmetric key shared with the issuer"},
		{"hs512", func(c *JWTConfig) { c.Algorithms = []string{"hs512"} }, "algorithms", "symmetric key shared with the issuer"},
		{"unknown algorithm", func(c *JWTConfig) { c.Algorithms = []string{"rs256"} }, "algorithms", "not supported"},
		{"empty algorithms", func(c *JWTConfig) { c.Algorithms = []string{} }, "algorithms", "leave it out"},
		{"bad leeway", func(c *JWTConfig) { c.Leeway = "60" }, "leeway", "Go duration"},
		{"negative leeway", func(c *JWTConfig) { c.Leeway = "-1s" }, "leeway", "from 0s to 5m0s"},
		{"leeway too long", func(c *JWTConfig) { c.Leeway = "6m" }, "leeway", "from 0s to 5m0s"},
		{"bad label name", func(c *JWTConfig) { c.Labels = map[string]string{"a.b": "groups"} }, "labels.a.b", "grant.labels.NAME"},
		{"empty label claim", func(c *JWTConfig) { c.Labels = map[string]string{"team": ""} }, "labels.team", "claim name"},
		{"grant claim with spaces", func(c *JWTConfig) { c.GrantClaim = " sub" }, "grant_claim", "surrounding spaces"},
		{"bad authorization server", func(c *JWTConfig) { c.AuthorizationServers = []string{"issuer.test"} }, "authorization_servers[0]", "absolute http(s) URL"},
		{"bad scope", func(c *JWTConfig) { c.ScopesSupported = []string{"a b"} }, "scopes_supported[0]", "without spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			ce, ok := errors.AsType[*ConfigError](err)
			if !ok {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if ce.Field != tt.field || !strings.Contains(ce.Msg, tt.says) {
				t.Fatalf("err = %v, want field %s saying %q", err, tt.field, tt.says)
			}
		})
	}
}

func TestConfigYAMLAndDefaults(t *testing.T) {
	doc := `
issuer: https://login.example.com/
audience: https://airlock.example.com/mcp
jwks_url: https://login.example.com/.well-known/jwks.json
labels:
  team: team
  groups: groups
`
	var c JWTConfig
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	s, err := c.settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.grantClaim != "sub" || s.leeway != 60*time.Second ||
		!slices.Equal(s.algorithms, []jose.SignatureAlgorithm{"RS256", "ES256", "EdDSA"}) ||
		!slices.Equal(s.authServers, []string{"https://login.example.com/"}) ||
		s.labels["groups"] != "groups" || s.scopes != nil {
		t.Fatalf("defaults = %+v", s)
	}

	doc += `grant_claim: client_id
algorithms: [ES384]
leeway: 10s
authorization_servers: [https://auth.example.com/]
scopes_supported: [mcp:tools]
`
	c = JWTConfig{}
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if s, err = c.settings(); err != nil {
		t.Fatal(err)
	}
	if s.grantClaim != "client_id" || s.leeway != 10*time.Second ||
		!slices.Equal(s.algorithms, []jose.SignatureAlgorithm{"ES384"}) ||
		!slices.Equal(s.authServers, []string{"https://auth.example.com/"}) ||
		!slices.Equal(s.scopes, []string{"mcp:tools"}) {
		t.Fatalf("settings = %+v", s)
	}
}
