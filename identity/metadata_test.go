package identity

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func TestMetadata(t *testing.T) {
	k := edKey(t, "k")
	srv := newJWKSServer(t, jwks(t, k))
	clk := newClock()
	for _, tt := range []struct {
		name   string
		change func(*JWTConfig)
		want   map[string]any
	}{
		{"defaults", func(*JWTConfig) {}, map[string]any{
			"resource":                 "https://airlock.test/mcp",
			"authorization_servers":    []any{testIssuer},
			"bearer_methods_supported": []any{"header"},
		}},
		{"configured", func(c *JWTConfig) {
			c.AuthorizationServers = []string{"https://a.test/", "https://b.test/"}
			c.ScopesSupported = []string{"mcp:tools"}
		}, map[string]any{
			"resource":                 "https://airlock.test/mcp",
			"authorization_servers":    []any{"https://a.test/", "https://b.test/"},
			"bearer_methods_supported": []any{"header"},
			"scopes_supported":         []any{"mcp:tools"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := urlConfig(srv)
			tt.change(&cfg)
			v := mustValidator(t, cfg, clk)
			var got map[string]any
			if err := json.Unmarshal(v.Metadata("https://airlock.test/mcp"), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("metadata = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetadataURL(t *testing.T) {
	for _, tt := range []struct{ resource, want string }{
		{"https://airlock.example.com/mcp", "https://airlock.example.com/.well-known/oauth-protected-resource/mcp"},
		{"https://airlock.example.com", "https://airlock.example.com/.well-known/oauth-protected-resource"},
		{"https://airlock.example.com/", "https://airlock.example.com/.well-known/oauth-protected-resource"},
		{"http://127.0.0.1:8811/mcp", "http://127.0.0.1:8811/.well-known/oauth-protected-resource/mcp"},
		{"https://a.example/t/a%2Fb?x=1", "https://a.example/.well-known/oauth-protected-resource/t/a%2Fb?x=1"},
		{"airlock.example.com/mcp", ""},
		{"https://a.example/mcp#frag", ""},
		{"https://u:p@a.example/mcp", ""},
	} {
		got, err := MetadataURL(tt.resource)
		if tt.want == "" {
			if err == nil {
				t.Errorf("MetadataURL(%q) = %q, want an error", tt.resource, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("MetadataURL(%q) = %q, %v; want %q", tt.resource, got, err, tt.want)
		}
	}
}

func TestChallenge(t *testing.T) {
	const meta = "https://airlock.test/.well-known/oauth-protected-resource/mcp"
	for _, tt := range []struct {
		name string
		url  string
		err  error
		want string
	}{
		{"no token", meta, nil, `Bearer resource_metadata="` + meta + `"`},
		{"ErrNoToken", meta, ErrNoToken, `Bearer resource_metadata="` + meta + `"`},
		{"expired", meta, fmt.Errorf("%w: exp 2025-01-01T00:00:00Z is past", ErrExpired),
			`Bearer resource_metadata="` + meta + `", error="invalid_token", error_description="token expired"`},
		{"details never reach the header", meta, fmt.Errorf("%w: kid %q", ErrUnknownKey, "eyJhbGciOi\"\r\nSet-Cookie: x"),
			`Bearer resource_metadata="` + meta + `", error="invalid_token", error_description="signing key not found"`},
		{"an error of no known reason", meta, fmt.Errorf("boom"),
			`Bearer resource_metadata="` + meta + `", error="invalid_token", error_description="invalid token"`},
		{"no metadata URL", "", ErrAudience, `Bearer error="invalid_token", error_description="wrong audience"`},
		{"nothing at all", "", nil, `Bearer`},
		{"quote and backslash escaped", `https://a.test/x"y\z`, nil, `Bearer resource_metadata="https://a.test/x\"y\\z"`},
		{"CR LF and spaces encoded", "https://a.test/x\r\nSet-Cookie: y", nil, `Bearer resource_metadata="https://a.test/x%0D%0ASet-Cookie:%20y"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Challenge(tt.url, tt.err); got != tt.want {
				t.Fatalf("Challenge = %s\nwant        %s", got, tt.want)
			}
		})
	}
	// Every reason's text is a valid error_description as it stands.
	for _, r := range reasons {
		if d := descriptionText(r.Error()); d != r.Error() {
			t.Errorf("reason %q is not a valid error_description", r)
		}
	}
}
