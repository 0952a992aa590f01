package pipeline

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Secrets longer than the first slice a rule is tried on are redacted whole: a match that
// reaches the slice's end is tried again on more text, so no tail is left.
func TestRedactorLongSecrets(t *testing.T) {
	r := redactorT(t)
	rng := rand.New(rand.NewPCG(3, 4))
	alnum := func(n int) string {
		const a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		b := make([]byte, n)
		for i := range b {
			b[i] = a[rng.IntN(len(a))]
		}
		return string(b)
	}
	// 1password-service-account-token: "ops_eyJ" and at least 250 more, without bound. (A long
	// generic-api-key secret is no good here: gitleaks allows any that contains one of its
	// stop words, and a long random one always does.)
	long := "ops_eyJ" + alnum(3000)
	pem := "-----BEGIN RSA PRIVATE KEY-----\n" + strings.Repeat(alnum(64)+"\n", 150) + "-----END RSA PRIVATE KEY-----"
	cases := []struct{ name, in, secret string }{
		{"a token of 3000 characters", "OP_SERVICE_ACCOUNT_TOKEN=" + long + "\n", long},
		{"the same at the end of a 40 KB line", strings.Repeat("x ", 20000) + "token: " + long, long},
		{"a 9.6 KB private key", "key:\n" + pem + "\n", pem[40:9000]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, _, err := r.Redact(c.in)
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range []string{c.secret[:32], c.secret[len(c.secret)/2 : len(c.secret)/2+32], c.secret[len(c.secret)-32:]} {
				if strings.Contains(out, part) {
					t.Errorf("part of the secret left: %q in %.300q...", part, out)
				}
			}
		})
	}
}
