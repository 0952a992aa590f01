package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// WellKnownPath is the RFC 9728 well-known path segment for protected-resource metadata.
const WellKnownPath = "/.well-known/oauth-protected-resource"

// metadata is the RFC 9728 protected-resource metadata document.
type metadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
}

// Metadata returns the protected-resource metadata (RFC 9728) of the resource, Airlock's MCP
// endpoint URL such as https://airlock.example.com/mcp: where clients get tokens for it, and
// that tokens go in the Authorization header only. Serve it as application/json at
// MetadataURL(resource).
func (v *Validator) Metadata(resource string) []byte {
	// Strings and string slices always marshal.
	b, _ := json.Marshal(metadata{
		Resource:               resource,
		AuthorizationServers:   v.s.authServers,
		BearerMethodsSupported: []string{"header"},
		ScopesSupported:        v.s.scopes,
	})
	return b
}

// MetadataURL returns where RFC 9728 puts the metadata of a resource: the well-known path
// inserted between the host and the resource's path, e.g. https://a.example/mcp →
// https://a.example/.well-known/oauth-protected-resource/mcp.
func MetadataURL(resource string) (string, error) {
	u, err := url.Parse(resource)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("resource %q: want an absolute http(s) URL such as https://airlock.example.com/mcp", resource)
	}
	if u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("resource %q: a resource identifier has no fragment or user info (RFC 9728 section 1.2)", resource)
	}
	m := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: WellKnownPath, RawQuery: u.RawQuery}
	if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
		m.Path = WellKnownPath + u.Path
		m.RawPath = WellKnownPath + u.EscapedPath()
	}
	return m.String(), nil
}

// Challenge returns the WWW-Authenticate value for a 401 answer (RFC 6750 section 3, RFC 9728
// section 5.1). err is what Validate returned; with no token sent (nil or ErrNoToken) the
// challenge carries no error, which tells the client to start authorization.
//
// The error description is the fixed text of the reason, never the error's details: those
// hold values from the token (a kid, an alg) that must not be reflected into a header.
func Challenge(resourceMetadataURL string, err error) string {
	var params []string
	if resourceMetadataURL != "" {
		params = append(params, `resource_metadata="`+quoteURL(resourceMetadataURL)+`"`)
	}
	if err != nil && !errors.Is(err, ErrNoToken) {
		desc := "invalid token"
		if r := Reason(err); r != nil {
			desc = r.Error()
		}
		params = append(params, `error="invalid_token"`, `error_description="`+descriptionText(desc)+`"`)
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

// quoteURL makes a URL safe inside a quoted-string (RFC 9110 section 5.6.4): bytes that are
// not visible ASCII are percent-encoded, so no CR or LF can split the header, and quote and
// backslash are escaped.
func quoteURL(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ' || c >= 0x7f:
			fmt.Fprintf(&b, "%%%02X", c)
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// descriptionText keeps what RFC 6750 section 3 allows in error_description: %x20-21 /
// %x23-5B / %x5D-7E, i.e. printable ASCII without quote or backslash.
func descriptionText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
