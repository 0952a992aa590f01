package identity

import "errors"

// Why a token was refused. Validate wraps exactly one of these, with details for the log
// (never the token itself); errors.Is picks the reason. Challenge sends only the sentinel's
// own short text to the client, so a detail such as a kid from an unverified header never
// reaches a response header.
var (
	// ErrNoToken: the request carried no bearer token. The challenge has no error parameters
	// (RFC 6750 section 3.1), which tells the client to start authorization.
	ErrNoToken = errors.New("no bearer token")
	// ErrTokenTooLarge: the token is longer than MaxTokenBytes.
	ErrTokenTooLarge = errors.New("token too large")
	// ErrMalformed: not a JWS in compact serialization with a JSON claims object.
	ErrMalformed = errors.New("malformed token")
	// ErrEncrypted: a JWE (five parts). Airlock accepts signed tokens only.
	ErrEncrypted = errors.New("encrypted tokens are not accepted")
	// ErrAlgorithm: the header's alg is not in the configured algorithms.
	ErrAlgorithm = errors.New("signing algorithm not accepted")
	// ErrUnknownKey: no key in the issuer's set has the token's kid (after a refetch, when the
	// rate limit allowed one), or the token has no kid and the set holds several keys.
	ErrUnknownKey = errors.New("signing key not found")
	// ErrKeyMismatch: the token's alg does not fit the type, curve or pinned alg of its key.
	ErrKeyMismatch = errors.New("algorithm does not match the signing key")
	// ErrSignature: the signature does not verify with the token's key.
	ErrSignature = errors.New("invalid signature")
	// ErrIssuer: iss is missing or not the configured issuer.
	ErrIssuer = errors.New("wrong issuer")
	// ErrAudience: aud is missing or does not contain the configured audience.
	ErrAudience = errors.New("wrong audience")
	// ErrExpired: exp is past (beyond the leeway).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrClaim: a required claim is missing, or a claim has a value Airlock refuses (exp
	// missing, grant claim missing or not a string, a label claim of the wrong type).
	ErrClaim = errors.New("missing or invalid claim")
	// ErrNoKeys: Airlock holds no usable signing key: the issuer's key set was never loaded
	// (or held none). This is Airlock's problem, not the client's; the HTTP layer may answer
	// 503 rather than 401.
	ErrNoKeys = errors.New("no signing keys available")
)

// reasons are the sentinels in the order Challenge looks for them.
var reasons = []error{ErrNoToken, ErrTokenTooLarge, ErrMalformed, ErrEncrypted, ErrAlgorithm,
	ErrUnknownKey, ErrKeyMismatch, ErrSignature, ErrIssuer, ErrAudience, ErrExpired,
	ErrNotYetValid, ErrClaim, ErrNoKeys}

// Reason returns the sentinel that err wraps, or nil when it wraps none of them.
func Reason(err error) error {
	for _, r := range reasons {
		if errors.Is(err, r) {
			return r
		}
	}
	return nil
}
