package integration

// OIDC/JWT bearer tokens against a running `airlock serve --http`: the test is the issuer. It
// serves its JWK set on 127.0.0.1 and signs tokens itself (ES256, with the standard library),
// some good, some expired, for another audience, signed by a key not in the set, or with alg
// none. A real Go SDK client connects with the good one; each bad one is answered 401 with the
// MCP authorization spec's challenge.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// es256 is one signing key of the test's issuer.
type es256 struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newES256(t *testing.T, kid string) es256 {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return es256{kid: kid, priv: k}
}

var b64 = base64.RawURLEncoding.EncodeToString

// jwk is the key's public half as a JWK.
func (k es256) jwk() map[string]any {
	pub, err := k.priv.PublicKey.ECDH()
	if err != nil {
		panic(err)
	}
	raw := pub.Bytes() // 0x04 || X || Y
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": k.kid, "use": "sig", "alg": "ES256",
		"x": b64(raw[1:33]), "y": b64(raw[33:65])}
}

// token signs claims: header.payload.signature, the signature r||s of 32 bytes each.
func (k es256) token(t *testing.T, header map[string]any, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64(sig)
}

func TestJWTBearer(t *testing.T) {
	issuerKey, strangerKey := newES256(t, "k1"), newES256(t, "k1")
	jwks, _ := json.Marshal(map[string]any{"keys": []any{issuerKey.jwk()}})
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer issuer.Close()

	const audience = "https://airlock.test/mcp"
	e := newMCPEnv(t, `{"version": "1", "default": "deny", "tools": {"run_command": {
	  "require": [{"conditions": [{"path": "grant.labels.team", "op": "eq", "value": "pay"}], "on_deny": "Only team pay."}]}}}`,
		map[string]string{"hello.txt": mcpHello})
	e.extraYAML = fmt.Sprintf("http:\n  resource: %q\n  jwt:\n    issuer: %q\n    audience: %q\n    jwks_url: %q\n    labels: {team: team}\n",
		audience, issuer.URL, audience, issuer.URL+"/jwks.json")
	s := e.startHTTP(t)

	now := time.Now()
	claims := func(mutate func(map[string]any)) map[string]any {
		c := map[string]any{"iss": issuer.URL, "aud": audience, "sub": "alice@example.com", "team": "pay",
			"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
		if mutate != nil {
			mutate(c)
		}
		return c
	}
	hdr := map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"}
	good := issuerKey.token(t, hdr, claims(nil))

	// The metadata a client discovers before it has a token.
	resp, err := http.Get("http://" + s.addr + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if json.Unmarshal(body, &meta) != nil || meta.Resource != audience || len(meta.AuthorizationServers) != 1 || meta.AuthorizationServers[0] != issuer.URL {
		t.Fatalf("protected-resource metadata: %d %s", resp.StatusCode, body)
	}

	noneHdr, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT"})
	noneClaims, _ := json.Marshal(claims(nil))
	for _, tc := range []struct{ name, token, reason string }{
		{"no token", "", ""},
		{"expired", issuerKey.token(t, hdr, claims(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-time.Hour).Unix(), now.Add(-10*time.Minute).Unix()
		})), "expired"},
		{"wrong audience", issuerKey.token(t, hdr, claims(func(c map[string]any) { c["aud"] = "https://other.test/mcp" })), "audience"},
		{"wrong key", strangerKey.token(t, hdr, claims(nil)), "signature"},
		{"alg none", b64(noneHdr) + "." + b64(noneClaims) + ".", "algorithm"},
		{"tampered claims", strings.Replace(good, strings.Split(good, ".")[1], b64([]byte(`{"sub":"root","team":"pay"}`)), 1), ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(ch, `resource_metadata="http://`+s.addr+`/.well-known/oauth-protected-resource/mcp"`) &&
			!strings.Contains(ch, `resource_metadata="https://airlock.test/.well-known/oauth-protected-resource/mcp"`) {
			t.Errorf("%s: %d %q; want 401 pointing at the metadata", tc.name, resp.StatusCode, ch)
		}
		if (tc.token == "") == strings.Contains(ch, "invalid_token") {
			t.Errorf("%s: challenge %q; invalid_token exactly when a token was sent", tc.name, ch)
		}
		if tc.reason != "" && !strings.Contains(strings.ToLower(ch), tc.reason) {
			t.Errorf("%s: challenge %q does not say %q", tc.name, ch, tc.reason)
		}
		if tc.token != "" && strings.Contains(ch, tc.token) {
			t.Errorf("%s: the challenge echoes the token", tc.name)
		}
	}

	cs := connectHTTP(t, s, good, nil)
	res, err := callCommand(t, cs, "echo as-alice")
	if err != nil || res.IsError || !strings.Contains(mcpText(res), "as-alice") {
		t.Fatalf("run_command with a good JWT: %v %+v", err, res)
	}
	cs.Close()
	// Revoked by name in the state store, the subject's tokens are refused although the
	// issuer still signs them.
	e.writeConfig(t)
	if _, errOut, code := e.airlockCLI(t, "grant", "create", "alice@example.com", "--no-token", "--uid", "4242", "--config", e.config); code != 0 {
		t.Fatal(errOut)
	}
	if _, _, code := e.airlockCLI(t, "grant", "revoke", "alice@example.com", "--config", e.config); code != 0 {
		t.Fatal("revoke failed")
	}
	req, _ := http.NewRequest(http.MethodPost, s.endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+good)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a good JWT of a revoked grant: %v %v", err, resp.StatusCode)
	}
	s.stop()
	recs := readAudit(t, e.audit)
	if len(recs) != 1 || recs[0].Grant != "alice@example.com" || recs[0].Decision != "allow" {
		t.Errorf("records: %+v; want alice@example.com's allowed call", recs)
	}
}
