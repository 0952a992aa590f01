package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	// fetchTimeout bounds one load of the key set.
	fetchTimeout = 5 * time.Second
	// maxJWKSBytes caps a key set: real ones are a few KiB, and the issuer's endpoint (or
	// whoever answers for it) must not make Airlock buffer without bound.
	maxJWKSBytes = 1 << 20
	// refetchInterval is the least time between two loads of the key set. A token with an
	// unknown kid triggers a load (the issuer may have rotated its keys); without this limit a
	// flood of tokens with random kids would make Airlock hammer the issuer.
	refetchInterval = 30 * time.Second
	// refreshInterval is how old the key set may get before a token triggers a reload, so that
	// a key the issuer withdrew stops being accepted.
	refreshInterval = 10 * time.Minute
	// minRSABits refuses RSA keys that are too short to trust.
	minRSABits = 2048
)

// verifyKey is one usable public key from the issuer's set.
type verifyKey struct {
	kid string
	alg jose.SignatureAlgorithm // pinned by the JWK's alg member; "" when not pinned
	key any                     // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is an immutable snapshot of the usable keys.
type keySet struct {
	keys []verifyKey
}

// parseKeySet keeps the keys of a JWK set that can verify one of algs and says why it dropped
// the others. A set with no usable key is an error: it cannot be what the issuer meant, and
// replacing a good set with it would refuse every token.
func parseKeySet(data []byte, algs []jose.SignatureAlgorithm) (*keySet, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	set := &keySet{}
	var skipped []string
	for i, r := range raw.Keys {
		k, err := usableKey(r, algs)
		if err != nil {
			// RFC 7517 section 5: ignore keys one does not understand, so that an issuer
			// publishing, say, an encryption key beside its signing keys still works.
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		set.keys = append(set.keys, k)
	}
	if len(set.keys) == 0 {
		if len(skipped) == 0 {
			return nil, errors.New("the JWK set holds no keys")
		}
		return nil, fmt.Errorf("the JWK set holds no usable signing key (%s)", strings.Join(skipped, "; "))
	}
	return set, nil
}

func usableKey(raw json.RawMessage, algs []jose.SignatureAlgorithm) (verifyKey, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return verifyKey{}, err
	}
	k := verifyKey{kid: jwk.KeyID, alg: jose.SignatureAlgorithm(jwk.Algorithm), key: jwk.Key}
	kid := fmt.Sprintf("kid %q", short(jwk.KeyID))
	switch pub := jwk.Key.(type) {
	case []byte:
		// A symmetric key is a shared secret: anyone who can read the set could sign with it,
		// and verifying HMAC with published material is the key-confusion attack.
		return verifyKey{}, fmt.Errorf("%s: symmetric (oct) keys are never used", kid)
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return verifyKey{}, fmt.Errorf("%s: RSA key of %d bits, want at least %d", kid, pub.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		if !jwk.IsPublic() {
			// Private key material in a key set means anyone who read it can mint tokens;
			// trusting its public half would accept their tokens.
			return verifyKey{}, fmt.Errorf("%s: holds private key material; publish only the public key (and replace this one)", kid)
		}
		return verifyKey{}, fmt.Errorf("%s: unsupported key type %T", kid, jwk.Key)
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return verifyKey{}, fmt.Errorf("%s: use %q, not a signing key", kid, jwk.Use)
	}
	if !slices.ContainsFunc(algs, func(a jose.SignatureAlgorithm) bool { return k.fits(a) }) {
		return verifyKey{}, fmt.Errorf("%s: fits none of the accepted algorithms %v", kid, algs)
	}
	return k, nil
}

// fits reports whether the key can verify alg. The algorithm comes from the token's header,
// which the attacker writes: the key's type decides which algorithms are possible, so a token
// can never make Airlock run, say, HMAC keyed with an RSA public key, or ECDSA on the wrong
// curve. A JWK that pins an alg allows only that one.
func (k verifyKey) fits(alg jose.SignatureAlgorithm) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		case jose.ES512:
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// errKidNotFound is the one lookup failure that a reload of the set may cure.
var errKidNotFound = fmt.Errorf("%w in the issuer's key set", ErrUnknownKey)

// lookup returns the keys that may verify a token with this kid and alg.
func (s *keySet) lookup(kid string, alg jose.SignatureAlgorithm) ([]verifyKey, error) {
	var cands []verifyKey
	if kid == "" {
		// Without a kid the token cannot say which key it means; guessing among several would
		// let a token pick whichever key suits it, so only a one-key set is unambiguous.
		if len(s.keys) != 1 {
			return nil, fmt.Errorf("%w: the token has no kid and the issuer's set holds %d keys", ErrUnknownKey, len(s.keys))
		}
		cands = s.keys
	} else {
		for _, k := range s.keys {
			if k.kid == kid {
				cands = append(cands, k)
			}
		}
		if len(cands) == 0 {
			return nil, fmt.Errorf("%w (kid %q)", errKidNotFound, short(kid))
		}
	}
	var fit []verifyKey
	for _, k := range cands {
		if k.fits(alg) {
			fit = append(fit, k)
		}
	}
	if len(fit) == 0 {
		return nil, fmt.Errorf("%w: alg %s does not fit key %q (%s)", ErrKeyMismatch, alg, short(kid), keyType(cands[0].key))
	}
	return fit, nil
}

func keyType(k any) string {
	switch p := k.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "EC " + p.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// keySource holds the last good key set and reloads it, at most once per refetchInterval.
type keySource struct {
	where string // "jwks_url https://…" or "jwks_file /path", for messages
	load  func(context.Context) ([]byte, error)
	algs  []jose.SignatureAlgorithm
	now   func() time.Time

	fetching sync.Mutex // held during a load: one at a time

	mu      sync.Mutex // guards the fields below
	set     *keySet    // last good set; nil until a load succeeds
	lastTry time.Time  // start of the last load, good or not
	lastErr error      // error of the last load; nil after a good one
}

// current returns the last good set (nil if none) and the last load's error.
func (s *keySource) current() (*keySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set, s.lastErr
}

// due reports whether a load may start now, given the least gap since the last one.
func (s *keySource) due(gap time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastTry.IsZero() || s.now().Sub(s.lastTry) >= gap
}

// reload loads the set again unless a load started less than gap ago. With wait, it waits for
// a load in progress (whose result the caller then sees); without, it leaves that load alone.
// A failed load keeps the last good set: an issuer that is down, or answers garbage, must not
// lock out every caller whose token was valid a minute ago.
func (s *keySource) reload(ctx context.Context, gap time.Duration, wait bool) {
	if wait {
		s.fetching.Lock()
	} else if !s.fetching.TryLock() {
		return
	}
	defer s.fetching.Unlock()
	if !s.due(gap) {
		return
	}
	s.mu.Lock()
	s.lastTry = s.now()
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	data, err := s.load(ctx)
	var set *keySet
	if err == nil {
		set, err = parseKeySet(data, s.algs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = fmt.Errorf("%s: %w", s.where, err)
		return
	}
	s.set, s.lastErr = set, nil
}

// fetchURL loads a key set over HTTP(S).
func fetchURL(client *http.Client, u string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP %s", resp.Status)
		}
		return readCapped(resp.Body)
	}
}

// readFile loads a key set from a file.
func readFile(path string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readCapped(f)
	}
}

func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	return data, nil
}

// noDowngrade refuses a redirect from https to http, which would expose the key set to
// anyone on the path.
func noDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if req.URL.Scheme != "https" && via[0].URL.Scheme == "https" {
		return fmt.Errorf("refusing redirect from https to %s", req.URL.Redacted())
	}
	return nil
}

// short caps a value taken from a token before it goes into a message.
func short(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
