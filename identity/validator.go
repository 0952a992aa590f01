package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxTokenBytes caps a bearer token. Real access tokens are a few KiB; the cap keeps parsing
// and base64 decoding of attacker-sent data small.
const MaxTokenBytes = 16 << 10

// maxClaimBytes caps the grant id and each label value taken from a token.
const maxClaimBytes = 1024

// Identity is who a valid token speaks for.
type Identity struct {
	Grant   string            // the grant claim's value: the policy's grant.id
	Labels  map[string]string // the mapped labels: grant.labels.NAME; never nil
	Subject string            // sub, when the token has one as a string
	Expiry  time.Time         // exp: the token is refused from then on (plus the leeway)
}

// Option changes how a Validator works; for tests and for callers with their own transport.
type Option func(*options)

type options struct {
	client *http.Client
	now    func() time.Time
}

// WithHTTPClient sets the client that fetches jwks_url (its own timeout, proxy, TLS roots and
// redirect policy; the default client refuses a redirect from https to http). Each fetch is
// still bounded by 5 seconds.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClock sets the clock used for exp, nbf, iat and the key set's reload schedule.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Validator checks bearer tokens against one issuer. It is safe for concurrent use.
type Validator struct {
	s    settings
	keys *keySource
	now  func() time.Time
}

// NewValidator validates cfg and loads the issuer's key set, bounded by ctx and 5 seconds.
//
// A configuration problem returns a nil Validator and a *ConfigError. If only the key set
// failed to load, NewValidator returns both a working Validator and an error wrapping
// ErrNoKeys: the Validator refuses every token with ErrNoKeys until a later load succeeds
// (tried at most every 30 seconds, when a token arrives). The caller chooses between failing
// start-up and logging the error and serving.
func NewValidator(ctx context.Context, cfg JWTConfig, opts ...Option) (*Validator, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	src := &keySource{algs: s.algorithms, now: o.now}
	if cfg.JWKSURL != "" {
		client := o.client
		if client == nil {
			client = &http.Client{Timeout: fetchTimeout, CheckRedirect: noDowngrade}
		}
		src.where, src.load = "jwks_url "+cfg.JWKSURL, fetchURL(client, cfg.JWKSURL)
	} else {
		src.where, src.load = "jwks_file "+cfg.JWKSFile, readFile(cfg.JWKSFile)
	}
	v := &Validator{s: s, keys: src, now: o.now}
	src.reload(ctx, 0, true)
	if _, err := src.current(); err != nil {
		return v, fmt.Errorf("%w: %w; every token is refused until the key set loads", ErrNoKeys, err)
	}
	return v, nil
}

// Validate checks a bearer token (the text after "Bearer ") and returns the identity it
// carries. Every error wraps one of the Err* reasons; none contains the token.
func (v *Validator) Validate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	// Checked before any decoding, so an oversized token costs nothing but this comparison.
	if len(token) > MaxTokenBytes {
		return Identity{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTokenTooLarge, len(token), MaxTokenBytes)
	}
	switch strings.Count(token, ".") {
	case 2:
	case 4:
		// A JWE proves only that its sender knew the encryption key, not that the issuer made
		// it: only a signature by one of the issuer's published keys is accepted.
		return Identity{}, fmt.Errorf("%w: got a JWE (five parts); configure the issuer to sign access tokens (JWS)", ErrEncrypted)
	default:
		return Identity{}, fmt.Errorf("%w: want a JWS in compact serialization (three dot-separated parts)", ErrMalformed)
	}
	// The algorithm allowlist is enforced while parsing: alg "none", HS256 and anything not
	// configured never reach a verifier.
	jws, err := jose.ParseSignedCompact(token, v.s.algorithms)
	if err != nil {
		if alg, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return Identity{}, fmt.Errorf("%w: alg %q (accepted: %v)", ErrAlgorithm, short(string(alg.Got)), v.s.algorithms)
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return Identity{}, fmt.Errorf("%w: want exactly one signature", ErrMalformed)
	}
	// Only kid and alg from the header are used. A key embedded in the token (jwk, x5c) or
	// named by URL (jku, x5u) is ignored: it would let the token bring its own trust.
	h := jws.Signatures[0].Header
	alg := jose.SignatureAlgorithm(h.Algorithm)
	keys, err := v.keysFor(ctx, h.KeyID, alg)
	if err != nil {
		return Identity{}, err
	}
	var payload []byte
	verified := false
	for _, k := range keys {
		if p, err := jws.Verify(k.key); err == nil {
			payload, verified = p, true
			break
		}
	}
	if !verified {
		return Identity{}, fmt.Errorf("%w: alg %s, kid %q", ErrSignature, alg, short(h.KeyID))
	}
	return v.claims(payload)
}

// keysFor finds the keys for a token's kid and alg, reloading the key set when it is stale,
// missing, or lacks the kid (the issuer may have rotated its keys), within the rate limit.
func (v *Validator) keysFor(ctx context.Context, kid string, alg jose.SignatureAlgorithm) ([]verifyKey, error) {
	// A load belongs to every request waiting for it, not to the one that started it: a
	// client that hangs up must not cancel it (and spend the rate limit on nothing).
	ctx = context.WithoutCancel(ctx)
	if v.keys.due(refreshInterval) {
		v.keys.reload(ctx, refreshInterval, false)
	}
	set, lastErr := v.keys.current()
	if set == nil && v.keys.due(refetchInterval) {
		v.keys.reload(ctx, refetchInterval, true)
		set, lastErr = v.keys.current()
	}
	if set == nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKeys, lastErr)
	}
	keys, err := set.lookup(kid, alg)
	if errors.Is(err, errKidNotFound) && v.keys.due(refetchInterval) {
		v.keys.reload(ctx, refetchInterval, true)
		if set, _ := v.keys.current(); set != nil {
			keys, err = set.lookup(kid, alg)
		}
	}
	return keys, err
}

// claims checks the verified claims and maps them to an Identity.
func (v *Validator) claims(payload []byte) (Identity, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(payload, &c); err != nil || c == nil {
		return Identity{}, fmt.Errorf("%w: the claims are not a JSON object", ErrMalformed)
	}
	var iss string
	if !decode(c, "iss", &iss) || iss != v.s.issuer {
		return Identity{}, fmt.Errorf("%w: iss %q, want %q", ErrIssuer, short(iss), v.s.issuer)
	}
	// The audience binds the token to Airlock: a token the same issuer minted for another
	// service (or an ID token for a client) must not open Airlock's tools.
	var aud jwt.Audience
	if !decode(c, "aud", &aud) || !aud.Contains(v.s.audience) {
		return Identity{}, fmt.Errorf("%w: aud does not contain %q", ErrAudience, v.s.audience)
	}
	now := v.now()
	var exp, nbf, iat jwt.NumericDate
	// A token without exp would be valid forever: refused.
	if !decode(c, "exp", &exp) {
		return Identity{}, fmt.Errorf("%w: exp is missing or not a number", ErrClaim)
	}
	if !now.Before(exp.Time().Add(v.s.leeway)) {
		return Identity{}, fmt.Errorf("%w: exp %s is past (leeway %s)", ErrExpired, exp.Time().UTC().Format(time.RFC3339), v.s.leeway)
	}
	for _, d := range []struct {
		name string
		to   *jwt.NumericDate
	}{{"nbf", &nbf}, {"iat", &iat}} {
		if _, ok := c[d.name]; !ok {
			continue
		}
		if !decode(c, d.name, d.to) {
			return Identity{}, fmt.Errorf("%w: %s is not a number", ErrClaim, d.name)
		}
		if t := d.to.Time(); now.Add(v.s.leeway).Before(t) {
			return Identity{}, fmt.Errorf("%w: %s %s is in the future (leeway %s)", ErrNotYetValid, d.name, t.UTC().Format(time.RFC3339), v.s.leeway)
		}
	}
	grant, ok := stringClaim(c[v.s.grantClaim])
	if !ok || grant == "" {
		return Identity{}, fmt.Errorf("%w: grant claim %q is missing, empty or not a string", ErrClaim, v.s.grantClaim)
	}
	if err := cleanValue(grant); err != nil {
		return Identity{}, fmt.Errorf("%w: grant claim %q: %v", ErrClaim, v.s.grantClaim, err)
	}
	id := Identity{Grant: grant, Labels: map[string]string{}, Expiry: exp.Time()}
	if sub, ok := stringClaim(c["sub"]); ok {
		id.Subject = sub
	}
	for label, claim := range v.s.labels {
		raw, ok := c[claim]
		if !ok {
			continue
		}
		val, err := labelValue(raw)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: claim %q for label %s: %v", ErrClaim, claim, label, err)
		}
		id.Labels[label] = val
	}
	return id, nil
}

// decode unmarshals claim name into dst and reports whether it was present and well typed.
func decode(c map[string]json.RawMessage, name string, dst any) bool {
	raw, ok := c[name]
	return ok && json.Unmarshal(raw, dst) == nil
}

// stringClaim returns a claim that is a JSON string (null is not one).
func stringClaim(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// labelValue turns a claim into a label value: a string as is, an array of strings joined
// with ",". Anything else is refused rather than guessed at.
func labelValue(raw json.RawMessage) (string, error) {
	if s, ok := stringClaim(raw); ok {
		return s, cleanValue(s)
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil || list == nil {
		return "", errors.New("want a string or an array of strings")
	}
	for _, e := range list {
		// Joined with ",", an element holding a comma would read as two: a group named
		// "staff,admins" must not look like membership of admins.
		if strings.Contains(e, ",") {
			return "", fmt.Errorf("array element %q contains a comma", short(e))
		}
	}
	joined := strings.Join(list, ",")
	return joined, cleanValue(joined)
}

// cleanValue refuses values that would read differently downstream. The grant id and labels go
// into the audit trail and logs and are matched by policies: invalid UTF-8 or a control
// character (a newline forging a log line, an escape sequence for a terminal) is refused, and
// the length is capped.
func cleanValue(s string) error {
	if len(s) > maxClaimBytes {
		return fmt.Errorf("value of %d bytes, at most %d", len(s), maxClaimBytes)
	}
	if !utf8.ValidString(s) {
		return errors.New("value is not valid UTF-8")
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return errors.New("value contains control characters")
	}
	return nil
}
