package pipeline

import (
	"strings"
	"testing"
)

// Credentials real workspaces hold that gitleaks' default rules miss, each in the syntax of the
// file that holds it. Values are split so this file does not itself trip secret scanners.
func TestExtraRules(t *testing.T) {
	r := redactorT(t)
	cases := []struct {
		name, in, secret, rule string
	}{
		{"clone URL with a password", "\turl = https://ci-bot:" + "Gh7pQ2xZ" + "r9LmW4v@git.example.com/org/repo.git",
			"Gh7pQ2xZr9LmW4v", "url-userinfo"},
		{"git-credentials token", "https://x-access-token:" + "ghs_" + "16C7e42F292c6912E7710c838347Ae178B4a@github.com",
			"ghs_16C7e42F292c6912E7710c838347Ae178B4a", ""},
		{"database URL", "DATABASE_URL=postgres://app:" + "s3cr3t-Pa55" + "@db.internal:5432/app", "s3cr3t-Pa55", "url-userinfo"},
		{"redis URL without a user", "redis://:" + "Tq9vX2mB" + "@cache:6379/0", "Tq9vX2mB", "url-userinfo"},
		{"password with an unencoded @", "https://bob:" + "p@ss" + "W0rd99" + "@host.example/x", "p@ssW0rd99", "url-userinfo"},
		{"HTTP Basic header", "Authorization: Basic " + "dXNlcjpTM2Ny" + "ZXRQYXNzIQ==", "dXNlcjpTM2NyZXRQYXNzIQ==", "authorization-header"},
		{"Bearer header in curl", `curl -H "Authorization: Bearer ` + "abcDEF123456" + `ghiJKL" https://api.example.com`,
			"abcDEF123456ghiJKL", "authorization-header"},
		{"header in JSON", `{"Authorization": "token ` + "0123456789abcdef" + `"}`, "0123456789abcdef", "authorization-header"},
		{"proxy header", "Proxy-Authorization: Basic " + "cHJveHk6c2Vj" + "cmV0", "cHJveHk6c2VjcmV0", "authorization-header"},
		{"CI checkout extraheader in .git/config", "[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic " +
			"eC1hY2Nlc3MtdG9rZW46" + "Z2hzXzEyMzQ1Njc4OTA=", "eC1hY2Nlc3MtdG9rZW46Z2hzXzEyMzQ1Njc4OTA=", "authorization-header"},
		{"other extraheader", "\textraheader = PRIVATE-TOKEN: " + "glpat_likeButNot" + "Quite123", "glpat_likeButNotQuite123", "git-extraheader"},
		{".npmrc _authToken", "//registry.example.com/:_authToken=" + "3f9a1c2b7d8e" + "4f5a6b7c8d9e", "3f9a1c2b7d8e4f5a6b7c8d9e", "npmrc-auth"},
		{".npmrc _auth", "//npm.pkg.github.com/:_auth=" + "dXNlcjpwYXNz" + "d29yZDEyMw==", "dXNlcjpwYXNzd29yZDEyMw==", "npmrc-auth"},
		{".npmrc _password", "_password=" + "c2VjcmV0UGFz" + "cw==", "c2VjcmV0UGFzcw==", "npmrc-auth"},
		{".yarnrc.yml", "npmAuthToken: \"" + "aa11bb22cc33" + "dd44\"", "aa11bb22cc33dd44", "yarnrc-auth"},
		{"Docker config.json auths", `{"auths": {"ghcr.io": {"auth": "` + "dXNlcjpw" + `YXNz"}}}`, "dXNlcjpwYXNz", "docker-config-auth"},
		{"Docker identity token", `"identitytoken": "` + "eyJhbGciOiJ" + `SUzI1NiJ9abc"`, "eyJhbGciOiJSUzI1NiJ9abc", "docker-config-auth"},
		{"quoted password with symbols", `DB_PASSWORD="` + "Xk9#mQ2v" + `@Lp8"`, "Xk9#mQ2v@Lp8", "quoted-password"},
		// A random value with one of gitleaks' stop words in it ("tir", "gaf"...), which its
		// generic rule lets through.
		{"client_secret with a stop word", `"client_secret": "` + "JrEtCKBGWRg2gaf2MMD3" + `aNGLo0u9tiR2zZBOymd5"`,
			"JrEtCKBGWRg2gaf2MMD3aNGLo0u9tiR2zZBOymd5", "secret-assignment"},
		{"unquoted export", "export SECRET_KEY=" + "q8Zr2LmW9xTv4Kp7" + "Ns1Bc6Fd", "q8Zr2LmW9xTv4Kp7Ns1Bc6Fd", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, red, err := r.Redact(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, c.secret) {
				t.Errorf("Redact(%q) = %q: secret left", c.in, out)
			}
			if c.rule != "" && red[c.rule] == 0 {
				t.Errorf("Redact(%q) = %q %v, want rule %s", c.in, out, red, c.rule)
			}
		})
	}
}

// What the rules must leave alone: references to secrets, and look-alikes.
func TestExtraRulesLeavePlaceholders(t *testing.T) {
	r := redactorT(t)
	for _, in := range []string{
		"//registry.npmjs.org/:_authToken=${NPM_TOKEN}",
		"https://user:${PASSWORD}@host.example.com",
		"https://user:$PASS@host.example.com",
		"Authorization: Bearer $TOKEN",
		"Authorization: Bearer ${{ secrets.TOKEN }}",
		`req.Header.Set("Authorization", "Bearer "+token)`,
		"http://localhost:8080/path@v1",
		"git@github.com:org/repo.git",
		"ssh://git@github.com:22/org/repo",
		`password: "${DB_PASSWORD}"`,
		`password_hint = "a short phrase"`,
		`secretName: my-service-account-secret-name`,
		`TOKEN_ENV_VAR = "GITHUB_TOKEN_FOR_RELEASES"`,
		`access_key_path = "/var/run/secrets/aws/credentials"`,
		"-H \"Authorization: Basic CHANGE-ME\"",
	} {
		if out, red, _ := r.Redact(in); out != in {
			t.Errorf("Redact(%q) = %q %v, want it unchanged", in, out, red)
		}
	}
}
