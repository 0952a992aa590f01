package pipeline

// An extraRule is one of Airlock's own secret rules, for credentials that real workspaces hold
// in places gitleaks' default rules do not look: they are plain configuration syntax with no
// recognisable token format, and gitleaks' generic rule either needs an entropy the value does
// not have (a short password, a base64 "user:pass") or an assignment operator the syntax does
// not use (a header, a URL).
type extraRule struct {
	id          string
	regex       string
	keywords    []string
	secretGroup int
	entropy     float64
	// allow matches values that are placeholders, not secrets ("${NPM_TOKEN}").
	allow string
}

// placeholder is a value that names a secret instead of holding one: a shell, Make or
// template variable, asterisks, or the words documentation and templates use.
const placeholder = `^(?:\$\{?[\w.-]+\}?|\$\([^)]*\)|%\w+%|\{\{.*\}\}|\*+|(?i:change[_-]?me|changeit|x{3,}|redacted|placeholder))$`

// extraRules are tested in redact_extra_test.go, one table row per form.
var extraRules = []extraRule{
	{
		// https://user:password@host, postgres://app:pw@db/x, redis://:pw@cache — and
		// https://x-access-token:ghs_...@github.com in a clone URL or .git-credentials. The
		// password is the secret; it may contain an unencoded "@", so it runs to the last "@"
		// before the host. The match starts at "://", its keyword, so each occurrence costs one
		// anchored attempt that stops at the first "/" of an ordinary URL.
		id:       "url-userinfo",
		regex:    `://[^\s:/?#@'"\x60<>\\]*:([^\s/?#'"\x60<>\\]+)@[\w\[.-]`,
		keywords: []string{"://"},
		allow:    placeholder,
	},
	{
		// Authorization: Basic dXNlcjpwYXNz / Bearer ... / token ..., as an HTTP header, a
		// curl -H argument, a JSON or YAML key, or git's http.<url>.extraheader that CI
		// checkouts write into .git/config ("AUTHORIZATION: basic ...").
		id:       "authorization-header",
		regex:    `(?i)\b(?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?(?:basic|bearer|token)[ \t]+([a-z0-9._~+/-]{6,}=*)`,
		keywords: []string{"authorization", "proxy-authorization"},
		allow:    placeholder,
	},
	{
		// Any other header git sends on every request: http.extraheader = PRIVATE-TOKEN: ...
		id:       "git-extraheader",
		regex:    `(?i)\bextraheader[ \t]*=[ \t]*"?[a-z0-9-]+:[ \t]*(?:(?:basic|bearer|token)[ \t]+)?([^\s"$][^\s"]{5,})`,
		keywords: []string{"extraheader"},
		allow:    placeholder,
	},
	{
		// .npmrc: //registry.npmjs.org/:_authToken=..., //registry/:_auth=base64(user:pass),
		// _password=base64(password). "${NPM_TOKEN}" is a reference, not a token.
		id:       "npmrc-auth",
		regex:    `(?i)\b_(?:authToken|auth|password)[ \t]*=[ \t]*["']?([^\s'"$][^\s'"]{5,})`,
		keywords: []string{"_auth", "_password"},
		allow:    placeholder,
	},
	{
		// .yarnrc.yml: npmAuthToken: ... and npmAuthIdent: user:password.
		id:       "yarnrc-auth",
		regex:    `(?i)\bnpmAuth(?:Token|Ident)[ \t]*:[ \t]*["']?([^\s'"$][^\s'"]{5,})`,
		keywords: []string{"npmauth"},
		allow:    placeholder,
	},
	{
		// A quoted password with characters gitleaks' generic rule stops at
		// (DB_PASSWORD="Xk9#mQ2v@Lp8"): its secret is [\w.=-] only, so "#" or "@" ends it.
		id:          "quoted-password",
		regex:       `(?i)[\w.-]{0,40}?passw(?:or)?d[\w.-]{0,20}["']?[ \t]*(?:=|:|:=|=>)[ \t]*["']([^"'\s$]{6,200})["']`,
		keywords:    []string{"password", "passwd"},
		secretGroup: 1,
		allow:       placeholder,
	},
	{
		// A random value assigned to a secret-like name, quoted or not
		// ("client_secret": "...", export SECRET_KEY=..., token: ...). gitleaks' generic rule
		// finds most, but lets through any value that contains one of its ~1,500 stop words,
		// and a 40-character random token often does. This rule asks for more instead: 16
		// characters at least, the entropy of a random string, and not an identifier or a path.
		id: "secret-assignment",
		regex: `(?i)[\w.-]{0,40}?(?:secret|token|passw(?:or)?d|api[_.-]?key|access[_.-]?key|private[_.-]?key|credential)` +
			`[\w.-]{0,20}["']?[ \t]*(?:=|:|:=|=>)[ \t]*["']?([a-z0-9+_~][a-z0-9+/_.~=-]{15,200})(?:["'\s;,]|$)`,
		keywords: []string{"secret", "token", "password", "passwd", "api", "access", "private", "credential"},
		entropy:  3.5,
		allow:    `^[a-z]+(?:[-_.][a-z0-9]+)*$|^[A-Z]+(?:[_.][A-Z0-9]+)*$`,
	},
	{
		// Docker's config.json: "auths": {"registry": {"auth": "base64(user:pass)"}}, and the
		// identity and registry tokens a credential helper leaves there.
		id:       "docker-config-auth",
		regex:    `(?i)"(?:auth|identitytoken|registrytoken)"[ \t]*:[ \t]*"([a-z0-9+/=_.~-]{8,})`,
		keywords: []string{`"auth"`, `"identitytoken"`, `"registrytoken"`},
	},
}
