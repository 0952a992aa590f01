package pipeline

import (
	"strings"
	"testing"

	"github.com/zricethezav/gitleaks/v8/config"
)

// allowMatcher answers exactly as gitleaks' Allowlist.RegexAllowed on every allowlist of the
// rule set, for targets that exercise each alternative (in both cases, inside longer text) and
// for every fixture line.
func TestAllowMatcherAgreesWithGitleaks(t *testing.T) {
	r := redactorT(t)
	words := []string{"accessibility", "accessor", "access_id", "random_access", "api_id", "api-name", "apiversion",
		"rapid", "capital", "foo-api-bar:jar:", "author", "X-MS-Exchange-Organization-Auth", "Authentication-Results",
		"credentials_id", "withCredentials", "bucket_key", "publickey", "pub.key", "turkey", "key_alias", "keypressed",
		"key-vault-id", "keyVaultToStoreSecrets", "keystore_file", "keytab-path", "issuerkeyhash", "Monkey", "DONKEY", "keying",
		"secret_length", "UserSecretsId", "csrf_token", "io.jsonwebtoken : jjwt-api", "api_endpoint", "token-uri",
		"public_token", "key_file", "A_B=\nC_D=\n", "a.b=\nc.d=\nx", "--mount=type=secret,id=x", "import { a, b } from 'c'",
		`LICENSE = "MIT"`, `LIC_FILES_CHKSUM = "file://x"`, `SRC_URI = "abc123"`, "true", "false", "null", "aaaa", "$1", "${2}",
		"$HOME", "${HOME}", "{{ .Values.x }}", "${{ secrets.TOKEN }}", "%PATH%", "%s", "{0}", "@VAR@", "/Users/bob/x y",
		"/home/bob/x", "EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "api_key = hunter2hunter2", "password", "s.abcdefghijklmnopqrstuvwx",
		"<x>:<y>", "$(a):$(b)", "user:changeme", "abcdefghijklmnopqrstuvwxyz", "014df517-39d1-4453-b7b3-9930c563627c"}
	var targets []string
	for _, w := range words {
		targets = append(targets, w, strings.ToUpper(w), strings.ToLower(w), "my "+w+" = v", "x"+w+"y")
	}
	for _, f := range loadFixtures(t) {
		targets = append(targets, strings.Split(f.TP, "\n")...)
	}
	lists := append([]*config.Allowlist{}, r.global...)
	for _, rule := range r.rules {
		lists = append(lists, rule.allowlists...)
	}
	checked, allowed := 0, 0
	for _, a := range lists {
		if len(a.Regexes) == 0 {
			continue
		}
		m := r.allow[a]
		for _, tg := range targets {
			want := a.RegexAllowed(tg)
			if got := m.MatchString(tg); got != want {
				t.Errorf("allowlist %q: MatchString(%q) = %v, gitleaks says %v", a.Regexes, tg, got, want)
			}
			checked++
			if want {
				allowed++
			}
		}
	}
	t.Logf("%d checks, %d allowed", checked, allowed)
	if allowed < 100 {
		t.Errorf("only %d targets were allowed: the corpus no longer exercises the allowlists", allowed)
	}
}
