package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// A new key the issuer adds is accepted after a refetch, and tokens with unknown kids make
// Airlock fetch the set at most once per 30 seconds.
func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	oldKey, newKey := rsaKey(t, "2025"), rsaKey(t, "2026")
	srv := newJWKSServer(t, jwks(t, oldKey))
	clk := newClock()
	v := mustValidator(t, urlConfig(srv), clk)
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("fetches at start = %d, want 1", n)
	}
	tok := func(k testKey) string { return k.sign(t, k.kid, claimsAt(clk.Now(), nil)) }

	// The issuer rotates right after Airlock's first fetch: within 30 s no refetch happens.
	srv.serve(jwks(t, oldKey, newKey))
	if _, err := v.Validate(ctx, tok(newKey)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new kid within the rate limit: err = %v, want ErrUnknownKey", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (rate limit)", n)
	}
	clk.Advance(refetchInterval + time.Second)
	if _, err := v.Validate(ctx, tok(newKey)); err != nil {
		t.Fatalf("new kid after the rate limit: %v", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if _, err := v.Validate(ctx, tok(oldKey)); err != nil {
		t.Fatalf("old key still in the set: %v", err)
	}

	// A flood of random kids, from many goroutines: still no extra fetch within 30 s, then one.
	attacker := edKey(t, "")
	flood := func() {
		var tokens []string // signed here: t.Fatal belongs to the test's goroutine
		for i := range 200 {
			tokens = append(tokens, attacker.sign(t, fmt.Sprintf("rand-%d", i), claimsAt(clk.Now(), nil)))
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for _, tok := range tokens[g*25 : (g+1)*25] {
					if _, err := v.Validate(ctx, tok); !errors.Is(err, ErrUnknownKey) {
						t.Errorf("random kid: err = %v, want ErrUnknownKey", err)
					}
				}
			})
		}
		wg.Wait()
	}
	flood()
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("fetches after a flood = %d, want 2", n)
	}
	clk.Advance(refetchInterval + time.Second)
	flood()
	if n := srv.hits.Load(); n != 3 {
		t.Fatalf("fetches after a flood past the limit = %d, want 3", n)
	}
}

// A key the issuer withdraws stops being accepted within the refresh interval.
func TestKeyWithdrawn(t *testing.T) {
	ctx := context.Background()
	a, b := ecKey(t, "a"), ecKey(t, "b")
	srv := newJWKSServer(t, jwks(t, a, b))
	clk := newClock()
	v := mustValidator(t, urlConfig(srv), clk)
	srv.serve(jwks(t, a))
	clk.Advance(refreshInterval / 2)
	if _, err := v.Validate(ctx, b.sign(t, "b", claimsAt(clk.Now(), nil))); err != nil {
		t.Fatalf("before the refresh: %v", err)
	}
	clk.Advance(refreshInterval / 2)
	if _, err := v.Validate(ctx, b.sign(t, "b", claimsAt(clk.Now(), nil))); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after the refresh: err = %v, want ErrUnknownKey", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

// An issuer that is down at start: NewValidator says so clearly and the Validator refuses
// every token, until the issuer answers (retried at most every 30 s).
func TestIssuerDownAtStart(t *testing.T) {
	ctx := context.Background()
	k := edKey(t, "k")
	srv := newJWKSServer(t, jwks(t, k))
	srv.fail(http.StatusServiceUnavailable)
	clk := newClock()
	v, err := NewValidator(ctx, urlConfig(srv), WithClock(clk.Now))
	if !errors.Is(err, ErrNoKeys) || v == nil {
		t.Fatalf("NewValidator = %v, %v; want a Validator and ErrNoKeys", v, err)
	}
	for _, want := range []string{"jwks_url " + srv.jwksURL(), "503", "every token is refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	tok := func() string { return k.sign(t, "k", claimsAt(clk.Now(), nil)) }
	if _, err := v.Validate(ctx, tok()); !errors.Is(err, ErrNoKeys) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want ErrNoKeys with the cause", err)
	}
	srv.serve(jwks(t, k))
	if _, err := v.Validate(ctx, tok()); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("within the rate limit: err = %v, want ErrNoKeys", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	clk.Advance(refetchInterval)
	if _, err := v.Validate(ctx, tok()); err != nil {
		t.Fatalf("after the issuer came back: %v", err)
	}

	// Nothing listening at all.
	srv.Close()
	_, err = NewValidator(ctx, urlConfig(srv), WithClock(clk.Now))
	if !errors.Is(err, ErrNoKeys) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("closed server: err = %v, want ErrNoKeys with connection refused", err)
	}
}

// An issuer that goes down, or starts answering garbage, leaves the last good set in use.
func TestIssuerDownLater(t *testing.T) {
	ctx := context.Background()
	k := rsaKey(t, "k")
	srv := newJWKSServer(t, jwks(t, k))
	clk := newClock()
	v := mustValidator(t, urlConfig(srv), clk)
	for i, breakIt := range []func(){
		func() { srv.fail(http.StatusInternalServerError) },
		func() { srv.serve([]byte("<html>maintenance</html>")) },
		func() { srv.serve([]byte(`{"keys":[]}`)) },
		func() { srv.serve([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k"}]}`)) },
	} {
		breakIt()
		before := srv.hits.Load()
		clk.Advance(refreshInterval)
		if _, err := v.Validate(ctx, k.sign(t, "k", claimsAt(clk.Now(), nil))); err != nil {
			t.Fatalf("case %d: known key after a failed refresh: %v", i, err)
		}
		clk.Advance(refetchInterval)
		if _, err := v.Validate(ctx, k.sign(t, "other", claimsAt(clk.Now(), nil))); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("case %d: unknown kid: err = %v, want ErrUnknownKey", i, err)
		}
		if n := srv.hits.Load() - before; n != 2 {
			t.Fatalf("case %d: fetches = %d, want 2 (refresh and refetch)", i, n)
		}
	}
}

func TestJWKSFile(t *testing.T) {
	ctx := context.Background()
	a, b := edKey(t, "a"), rsaKey(t, "b")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks(t, a), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	cfg := JWTConfig{Issuer: testIssuer, Audience: testAudience, JWKSFile: path}
	v := mustValidator(t, cfg, clk)
	if _, err := v.Validate(ctx, a.sign(t, "a", claimsAt(clk.Now(), nil))); err != nil {
		t.Fatalf("key from the file: %v", err)
	}
	if err := os.WriteFile(path, jwks(t, a, b), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(ctx, b.sign(t, "b", claimsAt(clk.Now(), nil))); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("within the rate limit: err = %v, want ErrUnknownKey", err)
	}
	clk.Advance(refetchInterval)
	if _, err := v.Validate(ctx, b.sign(t, "b", claimsAt(clk.Now(), nil))); err != nil {
		t.Fatalf("key added to the file: %v", err)
	}

	cfg.JWKSFile = filepath.Join(t.TempDir(), "missing.json")
	if _, err := NewValidator(ctx, cfg); !errors.Is(err, ErrNoKeys) || !strings.Contains(err.Error(), "jwks_file "+cfg.JWKSFile) {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestJWKSTooLarge(t *testing.T) {
	k := edKey(t, "k")
	big := strings.Replace(string(jwks(t, k)), `"keys"`, `"pad":"`+strings.Repeat("x", maxJWKSBytes)+`","keys"`, 1)
	srv := newJWKSServer(t, []byte(big))
	_, err := NewValidator(context.Background(), urlConfig(srv))
	if !errors.Is(err, ErrNoKeys) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a size error", err)
	}
}

func TestParseKeySet(t *testing.T) {
	good := edKey(t, "good")
	goodJSON := string(mustJSON(t, good.jwk()))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	private := string(mustJSON(t, jose.JSONWebKey{Key: good.priv, KeyID: "priv"}))
	defaults := []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}
	tests := []struct {
		name    string
		set     string
		keys    int    // usable keys; 0 means an error
		errText string // in the error, or in the skipped reasons
	}{
		{"one good key", `{"keys":[` + goodJSON + `]}`, 1, ""},
		{"not JSON", `<html>`, 0, "not a JWK set"},
		{"no keys", `{"keys":[]}`, 0, "holds no keys"},
		{"symmetric key", `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","kid":"s"}]}`, 0, "symmetric (oct) keys are never used"},
		{"symmetric key beside a good one", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"},` + goodJSON + `]}`, 1, ""},
		{"private key", `{"keys":[` + private + `]}`, 0, "holds private key material"},
		{"short RSA key", `{"keys":[` + string(mustJSON(t, jose.JSONWebKey{Key: &small.PublicKey, KeyID: "s"})) + `]}`, 0, "1024 bits"},
		{"encryption key", `{"keys":[` + strings.Replace(goodJSON, `"use":"sig"`, `"use":"enc"`, 1) + `]}`, 0, `use "enc"`},
		{"unknown key type beside a good one", `{"keys":[{"kty":"XYZ","kid":"x"},` + goodJSON + `]}`, 1, ""},
		{"P-384 key without ES384 allowed", `{"keys":[` + string(mustJSON(t, jose.JSONWebKey{Key: &p384.PublicKey, KeyID: "p"})) + `]}`, 0, "fits none of the accepted algorithms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := parseKeySet([]byte(tt.set), defaults)
			if tt.keys == 0 {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want one saying %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if len(set.keys) != tt.keys {
				t.Fatalf("usable keys = %d, want %d", len(set.keys), tt.keys)
			}
		})
	}
}

// The key's type decides the algorithms: the token's header never does.
func TestKeyFits(t *testing.T) {
	r, e, d := rsaKey(t, "r"), ecKey(t, "e"), edKey(t, "d")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]verifyKey{
		"RSA":           {key: r.priv.Public()},
		"P-256":         {key: e.priv.Public()},
		"P-384":         {key: &p384.PublicKey},
		"Ed25519":       {key: d.priv.Public()},
		"RSA pinned PS": {key: r.priv.Public(), alg: jose.PS256},
	}
	fits := map[string][]jose.SignatureAlgorithm{
		"RSA":           {jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512},
		"P-256":         {jose.ES256},
		"P-384":         {jose.ES384},
		"Ed25519":       {jose.EdDSA},
		"RSA pinned PS": {jose.PS256},
	}
	all := []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.HS256, jose.HS384, jose.HS512, "none", ""}
	for name, k := range keys {
		for _, alg := range all {
			want := false
			for _, a := range fits[name] {
				want = want || a == alg
			}
			if got := k.fits(alg); got != want {
				t.Errorf("%s key fits %q = %v, want %v", name, alg, got, want)
			}
		}
	}
}

func TestNoDowngradeRedirect(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer plain.Close()
	from, _ := http.NewRequest("GET", "https://issuer.test/jwks", nil)
	to, _ := http.NewRequest("GET", plain.URL+"/jwks", nil)
	if err := noDowngrade(to, []*http.Request{from}); err == nil {
		t.Fatal("https to http redirect allowed")
	}
	toTLS, _ := http.NewRequest("GET", "https://keys.issuer.test/jwks", nil)
	if err := noDowngrade(toTLS, []*http.Request{from}); err != nil {
		t.Fatalf("https to https redirect refused: %v", err)
	}
}

// The first load is bounded by NewValidator's context; later loads ignore the cancellation of
// the request that triggered them, which other requests may be waiting on.
func TestLoadContexts(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer hang.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := NewValidator(ctx, JWTConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: hang.URL})
	if !errors.Is(err, ErrNoKeys) || !strings.Contains(err.Error(), "deadline exceeded") || time.Since(start) > 2*time.Second {
		t.Fatalf("hanging issuer: err = %v after %s", err, time.Since(start))
	}

	a, b := edKey(t, "a"), edKey(t, "b")
	srv := newJWKSServer(t, jwks(t, a))
	clk := newClock()
	v := mustValidator(t, urlConfig(srv), clk)
	srv.serve(jwks(t, a, b))
	clk.Advance(refetchInterval)
	gone, cancelGone := context.WithCancel(context.Background())
	cancelGone()
	if _, err := v.Validate(gone, b.sign(t, "b", claimsAt(clk.Now(), nil))); err != nil {
		t.Fatalf("refetch for a request whose client hung up: %v", err)
	}
}
