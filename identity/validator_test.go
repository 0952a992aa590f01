package identity

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	rsa1, ec1, ed1 := rsaKey(t, "rsa-1"), ecKey(t, "ec-1"), edKey(t, "ed-1")
	evil := rsaKey(t, "evil")
	srv := newJWKSServer(t, jwks(t, rsa1, ec1, ed1))
	clk := newClock()
	v := mustValidator(t, urlConfig(srv), clk)
	now := clk.Now()
	ok := claimsAt(now, nil)

	der, err := x509.MarshalPKIXPublicKey(rsa1.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	tests := []struct {
		name  string
		token string
		want  error // nil: accepted
	}{
		{"RS256", rsa1.sign(t, "rsa-1", ok), nil},
		{"ES256", ec1.sign(t, "ec-1", ok), nil},
		{"EdDSA", ed1.sign(t, "ed-1", ok), nil},
		{"expired", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"exp": now.Add(-2 * time.Minute).Unix()})), ErrExpired},
		{"expired within leeway", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"exp": now.Add(-30 * time.Second).Unix()})), nil},
		{"no exp", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"exp": del{}})), ErrClaim},
		{"exp not a number", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"exp": "tomorrow"})), ErrClaim},
		{"nbf in the future", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"nbf": now.Add(2 * time.Minute).Unix()})), ErrNotYetValid},
		{"nbf within leeway", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"nbf": now.Add(30 * time.Second).Unix()})), nil},
		{"iat in the future", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"iat": now.Add(2 * time.Minute).Unix()})), ErrNotYetValid},
		{"wrong audience", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"aud": "https://other.test/api"})), ErrAudience},
		{"audience in an array", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"aud": []string{"https://other.test/api", testAudience}})), nil},
		{"array without our audience", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"aud": []string{"https://other.test/api"}})), ErrAudience},
		{"no audience", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"aud": del{}})), ErrAudience},
		{"wrong issuer", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"iss": "https://evil.test/"})), ErrIssuer},
		{"issuer without trailing slash", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"iss": "https://issuer.test"})), ErrIssuer},
		{"no issuer", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"iss": del{}})), ErrIssuer},
		{"signed by a key not in the set, with a known kid", evil.sign(t, "rsa-1", ok), ErrSignature},
		{"signed by a key not in the set, with its own kid", evil.sign(t, "evil", ok), ErrUnknownKey},
		{"embedded jwk is ignored", evil.signAs(t, "RS256", "rsa-1", ok, map[string]any{"jwk": evil.jwk()}), ErrSignature},
		{"no kid, several keys", rsa1.sign(t, "", ok), ErrUnknownKey},
		{"alg none, empty signature", rawToken(t, map[string]any{"alg": "none", "kid": "rsa-1"}, ok, nil), ErrAlgorithm},
		{"alg None", rawToken(t, map[string]any{"alg": "None", "kid": "rsa-1"}, ok, nil), ErrAlgorithm},
		{"alg NONE", rawToken(t, map[string]any{"alg": "NONE"}, ok, nil), ErrAlgorithm},
		{"no alg", rawToken(t, map[string]any{"kid": "rsa-1"}, ok, []byte("x")), ErrAlgorithm},
		{"HS256 keyed with the RSA public key (PEM)", hmacToken(t, "rsa-1", pemKey, ok), ErrAlgorithm},
		{"HS256 keyed with the RSA public key (DER)", hmacToken(t, "rsa-1", der, ok), ErrAlgorithm},
		{"ES256 token naming an RSA key", ec1.sign(t, "rsa-1", ok), ErrKeyMismatch},
		{"RS256 token naming an EC key", rsa1.sign(t, "ec-1", ok), ErrKeyMismatch},
		{"EdDSA token naming an RSA key", ed1.sign(t, "rsa-1", ok), ErrKeyMismatch},
		{"RS256 token naming an Ed25519 key", rsa1.sign(t, "ed-1", ok), ErrKeyMismatch},
		{"no grant claim", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"sub": del{}})), ErrClaim},
		{"empty grant claim", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"sub": ""})), ErrClaim},
		{"grant claim not a string", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"sub": 42})), ErrClaim},
		{"grant claim null", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"sub": nil})), ErrClaim},
		{"grant claim with a newline", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"sub": "alice\nforged log line"})), ErrClaim},
		{"grant claim too long", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"sub": strings.Repeat("a", 1025)})), ErrClaim},
		{"JWE shape", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", ErrEncrypted},
		{"oversized", rsa1.sign(t, "rsa-1", claimsAt(now, map[string]any{"pad": strings.Repeat("x", MaxTokenBytes)})), ErrTokenTooLarge},
		{"empty", "", ErrNoToken},
		{"one part", "abc", ErrMalformed},
		{"two parts", "abc.def", ErrMalformed},
		{"JSON serialization", `{"payload":"e30","signatures":[]}`, ErrMalformed},
		{"bad base64", "!!.!!.!!", ErrMalformed},
		{"garbage signature", rawToken(t, map[string]any{"alg": "RS256", "kid": "rsa-1"}, ok, []byte("x")), ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Validate(context.Background(), tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.Grant != "alice" || id.Subject != "alice" || id.Labels == nil {
					t.Errorf("identity = %+v, want grant and subject alice, labels non-nil", id)
				}
				if want := time.Unix(ok["exp"].(int64), 0); !id.Expiry.Equal(want) && tt.name != "expired within leeway" {
					t.Errorf("expiry = %v, want %v", id.Expiry, want)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if Reason(err) != tt.want {
				t.Errorf("Reason(err) = %v, want %v", Reason(err), tt.want)
			}
			if tt.token != "" && len(tt.token) > 20 && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error echoes the token: %v", err)
			}
		})
	}
}

// A signed payload that is not a JSON object is malformed, not an identity.
func TestValidateClaimsNotObject(t *testing.T) {
	k := edKey(t, "k")
	srv := newJWKSServer(t, jwks(t, k))
	clk := newClock()
	v := mustValidator(t, urlConfig(srv), clk)
	tok := k.signAs(t, k.alg, "k", nil, nil) // the JSON payload "null"
	if _, err := v.Validate(context.Background(), tok); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

// With one key in the set, a token without kid uses it.
func TestValidateNoKidOneKey(t *testing.T) {
	k := edKey(t, "only")
	srv := newJWKSServer(t, jwks(t, k))
	clk := newClock()
	v := mustValidator(t, urlConfig(srv), clk)
	if _, err := v.Validate(context.Background(), k.sign(t, "", claimsAt(clk.Now(), nil))); err != nil {
		t.Fatalf("refused: %v", err)
	}
	other := edKey(t, "other")
	if _, err := v.Validate(context.Background(), other.sign(t, "", claimsAt(clk.Now(), nil))); !errors.Is(err, ErrSignature) {
		t.Fatalf("token of another key: err = %v, want ErrSignature", err)
	}
}

func TestLabels(t *testing.T) {
	k := ecKey(t, "k")
	srv := newJWKSServer(t, jwks(t, k))
	clk := newClock()
	cfg := urlConfig(srv)
	cfg.GrantClaim = "client_id"
	cfg.Labels = map[string]string{"team": "team", "groups": "groups", "tenant": "https://example.com/tenant"}
	v := mustValidator(t, cfg, clk)
	now := clk.Now()

	tests := []struct {
		name   string
		claims map[string]any
		want   map[string]string
		err    error
	}{
		{"all mapped", map[string]any{"client_id": "ci-bot", "team": "core", "groups": []string{"dev", "ops"}, "https://example.com/tenant": "acme"},
			map[string]string{"team": "core", "groups": "dev,ops", "tenant": "acme"}, nil},
		{"missing claims leave labels unset", map[string]any{"client_id": "ci-bot"}, map[string]string{}, nil},
		{"empty array", map[string]any{"client_id": "ci-bot", "groups": []string{}}, map[string]string{"groups": ""}, nil},
		{"number refused", map[string]any{"client_id": "ci-bot", "team": 7}, nil, ErrClaim},
		{"bool refused", map[string]any{"client_id": "ci-bot", "team": true}, nil, ErrClaim},
		{"object refused", map[string]any{"client_id": "ci-bot", "team": map[string]any{"a": "b"}}, nil, ErrClaim},
		{"null refused", map[string]any{"client_id": "ci-bot", "team": nil}, nil, ErrClaim},
		{"mixed array refused", map[string]any{"client_id": "ci-bot", "groups": []any{"dev", 1}}, nil, ErrClaim},
		{"element with a comma refused", map[string]any{"client_id": "ci-bot", "groups": []string{"staff,admins"}}, nil, ErrClaim},
		{"control character refused", map[string]any{"client_id": "ci-bot", "team": "core\x1b[31m"}, nil, ErrClaim},
		{"grant claim is client_id, not sub", map[string]any{"sub": "alice"}, nil, ErrClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			over := map[string]any{"sub": del{}}
			for k, v := range tt.claims {
				over[k] = v
			}
			id, err := v.Validate(context.Background(), k.sign(t, "k", claimsAt(now, over)))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if id.Grant != "ci-bot" {
				t.Errorf("grant = %q, want ci-bot", id.Grant)
			}
			if len(id.Labels) != len(tt.want) {
				t.Errorf("labels = %v, want %v", id.Labels, tt.want)
			}
			for name, val := range tt.want {
				if got, ok := id.Labels[name]; !ok || got != val {
					t.Errorf("label %s = %q (set %v), want %q", name, got, ok, val)
				}
			}
		})
	}
}

// Other algorithms than the defaults, once configured, verify; a JWK that pins alg allows only
// that one.
func TestConfiguredAlgorithms(t *testing.T) {
	k := rsaKey(t, "r")
	pinned := rsaKey(t, "pinned")
	set := jwks(t, k)
	pj := pinned.jwk()
	pj.Algorithm = "RS256"
	set = []byte(strings.Replace(string(set), `"keys":[`, `"keys":[`+string(mustJSON(t, pj))+`,`, 1))
	srv := newJWKSServer(t, set)
	clk := newClock()
	cfg := urlConfig(srv)
	cfg.Algorithms = []string{"RS256", "PS256"}
	v := mustValidator(t, cfg, clk)
	c := claimsAt(clk.Now(), nil)
	for _, tt := range []struct {
		name  string
		token string
		want  error
	}{
		{"PS256", k.signAs(t, "PS256", "r", c, nil), nil},
		{"RS256 on the pinned key", pinned.signAs(t, "RS256", "pinned", c, nil), nil},
		{"PS256 on a key pinned to RS256", pinned.signAs(t, "PS256", "pinned", c, nil), ErrKeyMismatch},
		{"ES256 no longer accepted", ecKey(t, "r").sign(t, "r", c), ErrAlgorithm},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Validate(context.Background(), tt.token)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
