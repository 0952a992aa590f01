package policies

import (
	"bytes"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// shellWordsAccepted are command lines whose words the string alone determines, with the words
// sh passes to the program.
var shellWordsAccepted = []struct {
	in   string
	want []string
}{
	{"go test ./...", []string{"go", "test", "./..."}},
	{"  go\ttest  ", []string{"go", "test"}},
	{"", nil},
	{`git diff "--output=/tmp/x" HEAD`, []string{"git", "diff", "--output=/tmp/x", "HEAD"}},
	{`go build '-o' x`, []string{"go", "build", "-o", "x"}},
	{`git diff --ou""tput=x`, []string{"git", "diff", "--output=x"}},
	{`git diff --ou''tput=x`, []string{"git", "diff", "--output=x"}},
	{`git diff \-\-output=x`, []string{"git", "diff", "--output=x"}},
	{`go b\uild -\o x`, []string{"go", "build", "-o", "x"}},
	{`go test -run 'Test(A|B)$'`, []string{"go", "test", "-run", "Test(A|B)$"}},
	{`echo "a b" c`, []string{"echo", "a b", "c"}},
	{`echo "" ''`, []string{"echo", "", ""}},
	{`echo "\$HOME" '$HOME' \$HOME`, []string{"echo", "$HOME", "$HOME", "$HOME"}},
	{`echo "a\"b" "a\\b" "a\b"`, []string{"echo", `a"b`, `a\b`, `a\b`}},
	{`echo 'a\b' "it's"`, []string{"echo", `a\b`, "it's"}},
	{`echo '*' "?" \[ '~' "#" '!' '{}' ';' '|' '&' '<>' '()'`, []string{"echo", "*", "?", "[", "~", "#", "!", "{}", ";", "|", "&", "<>", "()"}},
	{`echo a=b x]`, []string{"echo", "a=b", "x]"}},
	{`'FOO'=bar`, []string{"FOO=bar"}},
	{`"if" x`, []string{"if", "x"}},
	{"echo 'tab\tinside'", []string{"echo", "tab\tinside"}},
	{"echo héllo ✓", []string{"echo", "héllo", "✓"}},
}

// shellWordsRefused need expansion, are more than one simple command, or do not parse.
var shellWordsRefused = []struct {
	in, why string
}{
	{"go test $IFS./...", "$ starts an expansion"},
	{"go${IFS}test", "$ starts an expansion"},
	{"go test ${x}", "$ starts an expansion"},
	{`go test "$x"`, "$ inside double quotes"},
	{"go test $(id)", "$ starts an expansion"},
	{"go test $((1+1))", "$ starts an expansion"},
	{"echo $'\\x41'", "$ starts an expansion"},
	{"go test `id`", "backtick"},
	{"go test \"`id`\"", "backtick inside double quotes"},
	{"ls *.go", "glob"},
	{"ls a?", "glob"},
	{"ls [ab]", "glob"},
	{"ls ~", "home directory"},
	{"ls ~root/x", "home directory"},
	{"echo a{b,c}", "brace"},
	{"{ go test; }", "brace"},
	{"go test # comment", "comment"},
	{"! go test", "negates"},
	{"go test; rm -rf /", "shell operator"},
	{"go test && rm", "shell operator"},
	{"go test || rm", "shell operator"},
	{"go test | sh", "shell operator"},
	{"go test & rm", "shell operator"},
	{"git diff > /etc/x", "shell operator"},
	{"git diff >/etc/x", "shell operator"},
	{"cat < /etc/passwd", "shell operator"},
	{"cat <<EOF", "shell operator"},
	{"(go test)", "shell operator"},
	{"diff <(ls) x", "shell operator"},
	{"go test\nrm -rf /", "newline"},
	{"go test\rrm", "carriage return"},
	{"go test \\\nrm", "escaped control"},
	{"go 'test\nx'", "control character"},
	{"go \"test\nx\"", "control character"},
	{"go test\x00rm", "control character"},
	{"go test\x1b[2J", "control character"},
	{"go 'test", "unterminated single quote"},
	{`go "test`, "unterminated double quote"},
	{`go "test\"`, "unterminated double quote"},
	{`go test \`, "backslash at the end"},
	{"FOO=bar go test", "assignment"},
	{"GIT_EXTERNAL_DIFF=/tmp/x git diff", "assignment"},
	{"PATH=. go", "assignment"},
	{"if x", "keyword"},
	{"while x", "keyword"},
	{"time go test", "keyword"},
	{"]] x", "keyword"},
}

func TestShellWords(t *testing.T) {
	for _, tc := range shellWordsAccepted {
		t.Run(tc.in, func(t *testing.T) {
			got, err := shellWords(tc.in)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("words %q, want %q", got, tc.want)
			}
		})
	}
	for _, tc := range shellWordsRefused {
		t.Run(tc.in, func(t *testing.T) {
			got, err := shellWords(tc.in)
			if err == nil {
				t.Fatalf("accepted as %q; want a refusal (%s)", got, tc.why)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("refusal %q does not say %q", err, tc.why)
			}
		})
	}
}

// TestShellWordsAgreeWithShells runs every accepted command line through the real shells
// (dash as /bin/sh, and bash, which expands braces even in POSIX mode) and compares the
// arguments they pass with the words the policy judges.
func TestShellWordsAgreeWithShells(t *testing.T) {
	var shells []string
	for _, sh := range []string{"/bin/sh", "/bin/dash", "/bin/bash"} {
		if _, err := exec.LookPath(sh); err == nil {
			shells = append(shells, sh)
		}
	}
	if len(shells) == 0 {
		t.Skip("no shell on this machine to compare with")
	}
	for _, sh := range shells {
		for _, tc := range shellWordsAccepted {
			words, err := shellWords(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := shellArgv(t, sh, tc.in); !reflect.DeepEqual(got, words) {
				t.Errorf("%s: %q: the shell passes %q, the policy judges %q", sh, tc.in, got, words)
			}
		}
	}
}

// shellArgv asks sh for the words of line: "set --" turns them into the positional
// parameters, printed NUL-separated. The words are never run.
func shellArgv(t testing.TB, sh, line string) []string {
	t.Helper()
	cmd := exec.Command(sh, "-c", "set -- "+line+"\nfor w; do printf '%s\\0' \"$w\"; done")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -c %q: %v", sh, line, err)
	}
	if len(out) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimSuffix(out, []byte{0})), "\x00")
}

// FuzzShellWords: whatever shellWords accepts, the shell splits into the same words.
func FuzzShellWords(f *testing.F) {
	for _, tc := range shellWordsAccepted {
		f.Add(tc.in)
	}
	for _, tc := range shellWordsRefused {
		f.Add(tc.in)
	}
	sh, err := exec.LookPath("/bin/sh")
	f.Fuzz(func(t *testing.T, s string) {
		words, werr := shellWords(s)
		again, _ := shellWords(s)
		if !reflect.DeepEqual(words, again) {
			t.Fatalf("not deterministic: %q", s)
		}
		if werr != nil || err != nil || len(words) == 0 {
			return
		}
		// "set --" would read a leading reserved word or assignment differently; both are
		// refused, which is checked above.
		if got := shellArgv(t, sh, s); !reflect.DeepEqual(got, words) {
			t.Fatalf("%q: the shell passes %q, the policy judges %q", s, got, words)
		}
	})
}

// TestWordsPaths: conditions on |words and on "*" paths, in every section. A command the words
// transform refuses is a mismatch: require denies, deny_if fires, and the generated messages
// say why.
func TestWordsPaths(t *testing.T) {
	p, err := Parse("words.json", []byte(`{"tools":{"run_command":{
		"require":[{"conditions":[{"path":"args.command|words.0","op":"in","value":["go","git"]}]}],
		"deny_if":[{"conditions":[{"path":"args.command|words.*","op":"regex","value":"^--?(o|output)(=|$)"}]},
		           {"conditions":[{"path":"args.argv.*","op":"prefix","value":"--output"}]}],
		"approve_if":[{"conditions":[{"path":"args.command|words","op":"len_gte","value":4}]}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    map[string]any
		verdict Verdict
		rule    string
		msg     string
	}{
		{"allowed", map[string]any{"command": "go test ./..."}, Allow, "/tools/run_command", ""},
		{"argv0 not allowed", map[string]any{"command": "rm -rf x"}, Deny, "/tools/run_command/require/args.command|words.0-in", "requires args.command|words.0 in"},
		{"quoted argv0 is the word", map[string]any{"command": `"go" test`}, Allow, "/tools/run_command", ""},
		{"argv0 look-alike", map[string]any{"command": `go\  test`}, Deny, "/tools/run_command/require/args.command|words.0-in", ""},
		{"empty command has no argv0", map[string]any{"command": "  "}, Deny, "/tools/run_command/require/args.command|words.0-in", "is missing"},
		{"expansion denied by require with the reason", map[string]any{"command": "go test $IFS"}, Deny,
			"/tools/run_command/require/args.command|words.0-in", "is not one simple shell command with literal words (requires args.command|words.0 in [\"go\",\"git\"]) (args.command|words.0: byte 8: $ starts an expansion"},
		{"not a string", map[string]any{"command": []any{"go"}}, Deny, "/tools/run_command/require/args.command|words.0-in", "not a string"},
		{"quoted option", map[string]any{"command": `git diff "--output=/tmp/x" HEAD`}, Deny, "/tools/run_command/deny_if/args.command|words.*-regex", ""},
		{"split option", map[string]any{"command": `git diff --ou""tput=x`}, Deny, "/tools/run_command/deny_if/args.command|words.*-regex", ""},
		{"quoted short option", map[string]any{"command": `go build '-o' x`}, Deny, "/tools/run_command/deny_if/args.command|words.*-regex", ""},
		{"argv element", map[string]any{"command": "go vet", "argv": []any{"git", "diff", "--output=x"}}, Deny, "/tools/run_command/deny_if/args.argv.*-prefix", ""},
		{"argv element of another type fires", map[string]any{"command": "go vet", "argv": []any{"git", 5}}, Deny, "/tools/run_command/deny_if/args.argv.*-prefix", ""},
		{"empty argv is missing", map[string]any{"command": "go vet", "argv": []any{}}, Allow, "/tools/run_command", ""},
		{"argv not an array fires", map[string]any{"command": "go vet", "argv": "--output"}, Deny, "/tools/run_command/deny_if/args.argv.*-prefix", ""},
		{"four words ask a human", map[string]any{"command": "go test -run X"}, Approve, "/tools/run_command/approve_if/args.command|words-len_gte", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Evaluate(Request{Tool: "run_command", Args: tc.args})
			if d.Verdict != tc.verdict || d.Rule != tc.rule || !strings.Contains(d.Message, tc.msg) {
				t.Fatalf("got %s %s %q; want %s %s %q", d.Verdict, d.Rule, d.Message, tc.verdict, tc.rule, tc.msg)
			}
		})
	}
	// A deny_if that fires on a refused command names the reason, after its generated or its
	// own message; so does a require's own message.
	p, err = Parse("words.json", []byte(`{"tools":{"run_command":{"deny_if":[{"conditions":[{"path":"args.command|words.*","op":"eq","value":"rm"}]}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate(Request{Tool: "run_command", Args: map[string]any{"command": "ls; rm x"}})
	if d.Verdict != Deny || !strings.Contains(d.Message, `(args.command|words.*: byte 2: ";" is a shell operator`) {
		t.Fatalf("got %s %q", d.Verdict, d.Message)
	}
	p, err = Parse("words.json", []byte(`{"tools":{"run_command":{"require":[{"conditions":[{"path":"args.command|words.0","op":"eq","value":"ls"}],"on_deny":"Only ls."}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	d = p.Evaluate(Request{Tool: "run_command", Args: map[string]any{"command": "ls ~"}})
	if d.Verdict != Deny || d.Message != "Only ls. (args.command|words.0: byte 3: ~ is expanded to a home directory; quote it for a literal ~)" {
		t.Fatalf("got %s %q", d.Verdict, d.Message)
	}
}
