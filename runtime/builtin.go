package runtime

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
)

// BuiltinNames lists the built-in tools in the order they are served.
func BuiltinNames() []string {
	return []string{"read_file", "list_directory", "search_files", "write_file", "run_command",
		"git_status", "git_diff", "git_log", "run_tests", "http_fetch"}
}

// builtinSpec is a built-in tool before it is bound to a name, profile and workspace.
type builtinSpec struct {
	title, description string
	schema             string
	profile            string
	annotations        Annotations
	argv               func(args map[string]any) ([]string, []byte, error)
	render             func(pipeline.Output) pipeline.Rendered
	env                []string // set whatever the profile says
	envDefaults        []string // set where the profile's env does not
	progress           bool
	// network: the tool does nothing without hosts in its profile's network.allow, so a call
	// under a profile without any is refused at stage 4, saying what to configure.
	network bool
	// untrusted: what the tool returns comes from outside the operator's control (the web),
	// so its calls taint the session unless a config says trust: trusted.
	untrusted bool

	// fields are the JSON Schemas of the structuredContent fields render adds.
	fields map[string]json.RawMessage

	// result is the JSON Schema of what the tool prints as its one JSON object on stdout
	// (the toolbox's file tools), which stage 6 decodes; empty for a tool that prints text.
	result string
}

func ptr[T any](v T) *T { return &v }

var (
	readOnlyHints    = Annotations{ReadOnly: true, Destructive: ptr(false), Idempotent: true, OpenWorld: ptr(false)}
	destructiveHints = Annotations{ReadOnly: false, Destructive: ptr(true), Idempotent: true, OpenWorld: ptr(false)}
)

// gitArgv starts every git command. The workspace is attacker-controllable, including
// .git/config, so the settings that make git run programs (fsmonitor, hooks, external diff,
// textconv, pager, signature verification through gpg.program, transports that lazy fetches of
// a partial clone would start, submodule recursion) are switched off on the command line, which
// takes precedence over the repository's config. Filter drivers (filter.NAME.clean, smudge,
// process) cannot be named in advance, so gitFilterGuard first lists those the repository
// defines and blanks each one. safe.directory=* because the sandbox user does not own the
// workspace.
func gitArgv(sub ...string) []string {
	base := []string{"/bin/sh", "-c", gitFilterGuard, "airlock-git",
		"git", "-c", "safe.directory=*", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
		"-c", "core.pager=cat", "-c", "color.ui=false", "-c", "log.showSignature=false",
		"-c", "diff.ignoreSubmodules=all", "-c", "status.submoduleSummary=false", "-c", "protocol.allow=never"}
	for _, proto := range []string{"file", "ext", "ssh", "git", "http", "https", "ftp", "ftps"} {
		base = append(base, "-c", "protocol."+proto+".allow=never")
	}
	// --literal-pathspecs: a path is that file or directory, never a glob or ":(magic)" that
	// would reach files a policy rule on args.path did not name.
	base = append(base, "--no-pager", "--literal-pathspecs")
	return append(base, sub...)
}

// gitFilterGuard runs its arguments (a git command line) with every filter driver that the
// repository's config defines set to the empty command, which git treats as no filter: a
// .gitattributes line "* filter=x" with filter.x.clean = /workspace/evil.sh in .git/config
// otherwise runs evil.sh from git diff and git status. The keys go through GIT_CONFIG_KEY_n /
// GIT_CONFIG_VALUE_n, not -c, because -c splits at the first '=' and a driver may be named
// "a=b". Config keys cannot contain a newline, so one key per line is unambiguous.
const gitFilterGuard = `n=0
while IFS= read -r k; do
  case "$k" in
  filter.*.clean|filter.*.smudge|filter.*.process)
    export "GIT_CONFIG_KEY_$n=$k" "GIT_CONFIG_VALUE_$n="
    n=$((n+1)) ;;
  esac
done <<AIRLOCK_EOF
$(git -c safe.directory='*' config --name-only --get-regexp '^filter\.' 2>/dev/null)
AIRLOCK_EOF
export GIT_CONFIG_COUNT=$n
exec "$@"`

var gitEnv = []string{"HOME=/tmp", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "GIT_PAGER=cat"}

// gitSafeWorkspace lets the git of run_command and run_tests work in /workspace, which belongs
// to the workspace's owner and not to the sandbox user, so git refuses it ("dubious
// ownership"), and so does go build's VCS stamping. It is the environment form of the git
// tools' -c safe.directory (command-line scope, which git honours for this key), naming
// /workspace only: another repository the workspace holds stays refused. The check guards
// against config and hooks planted by another user running code as you; inside the sandbox
// the command already runs whatever it likes, with no more rights than before.
var gitSafeWorkspace = []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=" + sandbox.WorkspaceTarget}

// canonicalPath refuses a path that path.Clean would change: policy rules other than
// path_within compare the raw string, so "secret.env/" must not pass a suffix ".env" rule and
// still name the file. The toolbox applies the same rule to the file tools.
func canonicalPath(p string) error {
	if c := path.Clean(p); c != p {
		return fmt.Errorf("path %q is not in canonical form (trailing slash, \"//\" or \".\" segment); use %q", p, c)
	}
	return nil
}

// toolboxArgv runs the toolbox with the JSON arguments; write_file's content goes through
// stdin because one argv string is limited to 128 KiB.
func toolboxArgv(tool string, viaStdin bool) func(map[string]any) ([]string, []byte, error) {
	return func(args map[string]any) ([]string, []byte, error) {
		raw, err := json.Marshal(args)
		if err != nil {
			return nil, nil, err
		}
		if viaStdin {
			return []string{images.ToolboxPath, tool, "-"}, raw, nil
		}
		return []string{images.ToolboxPath, tool, string(raw)}, nil, nil
	}
}

func builtinSpecs() map[string]builtinSpec {
	return map[string]builtinSpec{
		"http_fetch": {
			title:       "Fetch URL",
			description: "Make one HTTP request (GET by default) to a host the operator allowed, from a sandbox whose only way out is Airlock's egress proxy, and return the status, a few headers and the body (text, at most 512 KiB). Redirects are followed up to 5 times, each through the proxy; a host that is not allowed is refused, and the result says which.",
			schema: `{"type":"object","properties":{
				"url":{"type":"string","minLength":1,"maxLength":8192,"description":"http:// or https:// URL."},
				"method":{"enum":["GET","HEAD","POST","PUT","PATCH","DELETE"],"description":"Default GET."},
				"headers":{"type":"object","maxProperties":32,"additionalProperties":{"type":"string","maxLength":8192},"description":"Request headers."},
				"body":{"type":"string","maxLength":1048576,"description":"Request body."}},
				"required":["url"],"additionalProperties":false}`,
			profile: "fetch", annotations: Annotations{ReadOnly: false, Destructive: ptr(false), OpenWorld: ptr(true)}, network: true, untrusted: true,
			argv: toolboxArgv("http_fetch", true), render: renderToolbox(renderFetch), result: toolboxResult(fetchResult),
		},
		"read_file": {
			title:       "Read file",
			description: "Read a text file in the workspace. Paths are relative to the workspace root. Returns up to `limit` lines (default 2000) starting at line `offset` (0-based), at most 160 KiB; when more remain, the result says which offset to continue from. Binary files are reported, not returned. Links are not followed: a symlink in the path, or a file with several hard links, is refused with an error naming the path to ask for instead.",
			schema: `{"type":"object","properties":{
				"path":{"type":"string","description":"File path relative to the workspace root.","minLength":1,"maxLength":4096},
				"offset":{"type":"integer","minimum":0,"description":"First line to return, 0-based (default 0)."},
				"limit":{"type":"integer","minimum":1,"maximum":20000,"description":"Number of lines to return (default 2000)."}},
				"required":["path"],"additionalProperties":false}`,
			profile: "files", annotations: readOnlyHints,
			argv: toolboxArgv("read_file", false), render: renderToolbox(renderRead), result: toolboxResult(readResult),
		},
		"list_directory": {
			title:       "List directory",
			description: "List the entries of a directory in the workspace (name, type file/dir/symlink/other, size, a symlink's target). Path is relative to the workspace root; omit it for the root.",
			schema: `{"type":"object","properties":{
				"path":{"type":"string","description":"Directory relative to the workspace root (default: the root).","maxLength":4096}},
				"additionalProperties":false}`,
			profile: "files", annotations: readOnlyHints,
			argv: toolboxArgv("list_directory", false), render: renderToolbox(renderList), result: toolboxResult(listResult),
		},
		"search_files": {
			title:       "Search files",
			description: "Search the workspace's text files for a regular expression (RE2 syntax) and return matching lines as path:line: text. `glob` filters files: without a slash it matches file names (\"*.go\"), with one the path (\"src/**/*.ts\"). Skips .git, binary files and files over 4 MiB; never reads symlinks or hard-linked files, and lists those it skipped.",
			schema: `{"type":"object","properties":{
				"pattern":{"type":"string","minLength":1,"maxLength":1000,"description":"RE2 regular expression matched against each line."},
				"glob":{"type":"string","maxLength":500,"description":"Only search files matching this glob."},
				"path":{"type":"string","maxLength":4096,"description":"Directory to search, relative to the workspace root (default: the root)."},
				"max_results":{"type":"integer","minimum":1,"maximum":1000,"description":"Maximum matches to return (default 100)."}},
				"required":["pattern"],"additionalProperties":false}`,
			profile: "files", annotations: readOnlyHints,
			argv: toolboxArgv("search_files", false), render: renderToolbox(renderSearch), result: toolboxResult(searchResult),
		},
		"write_file": {
			title:       "Write file",
			description: "Write a text file in the workspace, replacing it if it exists and creating missing parent directories. Path is relative to the workspace root. Refuses to write through symlinks. The policy may ask a human to approve the write first.",
			schema: `{"type":"object","properties":{
				"path":{"type":"string","minLength":1,"maxLength":4096,"description":"File path relative to the workspace root."},
				"content":{"type":"string","maxLength":4194304,"description":"The complete new content of the file."}},
				"required":["path","content"],"additionalProperties":false}`,
			profile: "files-write", annotations: destructiveHints,
			argv: toolboxArgv("write_file", true), render: renderToolbox(renderWrite), result: toolboxResult(writeResult),
		},
		"run_command": {
			title:       "Run command",
			description: "Run a command in a fresh, throwaway sandbox with the workspace mounted read-only at /workspace (the working directory), no network and a time limit. Give either `command`, a string run by /bin/sh -c, or `argv`, an array run directly without a shell. Reports progress while it runs; returns stdout, stderr and the exit code.",
			schema: `{"type":"object","properties":{
				"command":{"type":"string","minLength":1,"maxLength":16384,"description":"Shell command line, run by /bin/sh -c."},
				"argv":{"type":"array","minItems":1,"maxItems":1024,"items":{"type":"string","maxLength":16384},"description":"Program and arguments, run without a shell."}},
				"oneOf":[{"required":["command"]},{"required":["argv"]}],
				"additionalProperties":false}`,
			profile: "command", annotations: Annotations{ReadOnly: true, Destructive: ptr(false), OpenWorld: ptr(false)}, progress: true,
			argv: func(args map[string]any) ([]string, []byte, error) {
				if c, ok := args["command"].(string); ok {
					return []string{"/bin/sh", "-c", c}, nil, nil
				}
				items, _ := args["argv"].([]any)
				var argv []string
				for i, it := range items {
					s, ok := it.(string)
					if !ok {
						return nil, nil, fmt.Errorf("argv[%d] is not a string", i)
					}
					argv = append(argv, s)
				}
				if len(argv) == 0 || argv[0] == "" {
					return nil, nil, fmt.Errorf("give command or a non-empty argv")
				}
				return argv, nil, nil
			},
			envDefaults: append([]string{"PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, gitSafeWorkspace...),
		},
		"git_status": {
			title:       "Git status",
			description: "Show the workspace's git status (short format, with the branch).",
			schema:      `{"type":"object","properties":{},"additionalProperties":false}`,
			profile:     "git", annotations: readOnlyHints, env: gitEnv,
			argv: func(map[string]any) ([]string, []byte, error) {
				return gitArgv("status", "--short", "--branch", "--ignore-submodules=all"), nil, nil
			},
		},
		"git_diff": {
			title:       "Git diff",
			description: "Show the workspace's uncommitted changes as a unified diff: unstaged by default, staged with `staged: true`, or against `ref` (a commit, branch or tag). `path` limits the diff to a file or directory.",
			schema: `{"type":"object","properties":{
				"staged":{"type":"boolean","description":"Show staged (cached) changes."},
				"ref":{"type":"string","pattern":"^[A-Za-z0-9_][A-Za-z0-9_./@^~{}-]{0,199}$","description":"Compare against this commit, branch or tag."},
				"path":{"type":"string","minLength":1,"maxLength":4096,"description":"Limit to this path, relative to the workspace root."}},
				"additionalProperties":false}`,
			profile: "git", annotations: readOnlyHints, env: gitEnv,
			argv: func(args map[string]any) ([]string, []byte, error) {
				argv := gitArgv("diff", "--no-ext-diff", "--no-textconv", "--no-color", "--ignore-submodules=all")
				if s, _ := args["staged"].(bool); s {
					argv = append(argv, "--cached")
				}
				if r, ok := args["ref"].(string); ok {
					// The schema's pattern already forbids a leading "-"; checked again because an
					// option here (--output=FILE) would make diff write files.
					if strings.HasPrefix(r, "-") {
						return nil, nil, fmt.Errorf("ref must not start with '-'")
					}
					argv = append(argv, r)
				}
				argv = append(argv, "--")
				argv, err := appendPathArg(argv, args)
				return argv, nil, err
			},
		},
		"git_log": {
			title:       "Git log",
			description: "Show recent commits (hash, date, author, subject), newest first. `max_count` defaults to 20; `path` limits the log to commits touching a file or directory.",
			schema: `{"type":"object","properties":{
				"max_count":{"type":"integer","minimum":1,"maximum":500,"description":"Number of commits (default 20)."},
				"path":{"type":"string","minLength":1,"maxLength":4096,"description":"Only commits touching this path, relative to the workspace root."}},
				"additionalProperties":false}`,
			profile: "git", annotations: readOnlyHints, env: gitEnv,
			argv: func(args map[string]any) ([]string, []byte, error) {
				n := "20"
				if v, ok := args["max_count"]; ok {
					s, err := scalar(v)
					if err != nil {
						return nil, nil, fmt.Errorf("max_count: %w", err)
					}
					n = s
				}
				argv := gitArgv("log", "--no-color", "--no-show-signature", "--date=short", "--format=%h %ad %an %s", "-n", n, "--")
				argv, err := appendPathArg(argv, args)
				return argv, nil, err
			},
		},
		"run_tests": {
			title:       "Run tests",
			description: "Run the project's configured test command on a throwaway copy-on-write copy of the workspace (tests may write files; the workspace is not changed), with no network and a long time limit. Reports progress while it runs. When the output is a test report Airlock reads (go test -json, JUnit XML, TAP, pytest, jest), returns a summary: passed, failed and skipped counts and each failure's name, file, line and message (also in structuredContent.tests); otherwise the test output and exit code.",
			schema:      `{"type":"object","properties":{},"additionalProperties":false}`,
			profile:     "tests", annotations: readOnlyHints, progress: true,
			render: renderTests, fields: map[string]json.RawMessage{"tests": json.RawMessage(testsField)},
			envDefaults: append([]string{"PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
				"GOCACHE=/tmp/go-cache", "GOPATH=/tmp/go", "GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local",
				"CI=1", "npm_config_cache=/tmp/npm-cache"}, gitSafeWorkspace...),
			// argv is bound at registry time from the tests config.
		},
	}
}

// appendPathArg appends the optional args.path of a git tool, after the "--" that ends its
// options, once it is known to be canonical (the path git reads is the path the policy saw).
func appendPathArg(argv []string, args map[string]any) ([]string, error) {
	p, ok := args["path"].(string)
	if !ok {
		return argv, nil
	}
	if err := canonicalPath(p); err != nil {
		return nil, err
	}
	return append(argv, p), nil
}

// The toolbox's JSON results (cmd/airlock-toolbox), as structuredContent.result shows them.
const (
	readResult = `{"type":"object","properties":{
		"path":{"type":"string"},
		"content":{"type":"string","description":"The lines read, each with its newline."},
		"offset":{"type":"integer","description":"The first line returned, 0-based."},
		"lines":{"type":"integer","description":"How many lines were returned."},
		"next_offset":{"type":"integer","description":"Where to continue when truncated."},
		"truncated":{"type":"boolean","description":"More lines follow."},
		"size":{"type":"integer","description":"The file's size in bytes."},
		"binary":{"type":"boolean","description":"The file is binary; no content is returned."}},
		"required":["path","offset","lines","truncated","size"],"additionalProperties":false}`
	listResult = `{"type":"object","properties":{
		"path":{"type":"string"},
		"entries":{"type":"array","items":{"type":"object","properties":{
			"name":{"type":"string"},
			"type":{"enum":["file","dir","symlink","other"]},
			"size":{"type":"integer"},
			"target":{"type":"string","description":"A symlink's target, as stored."},
			"links":{"type":"integer","description":"A file's hard link count, when more than one."}},
			"required":["name","type"],"additionalProperties":false}},
		"truncated":{"type":"boolean","description":"More entries exist than are shown."}},
		"required":["path","truncated"],"additionalProperties":false}`
	searchResult = `{"type":"object","properties":{
		"matches":{"type":"array","items":{"type":"object","properties":{
			"path":{"type":"string"},"line":{"type":"integer","description":"1-based."},"text":{"type":"string"}},
			"required":["path","line","text"],"additionalProperties":false}},
		"truncated":{"type":"boolean","description":"More matches exist than are shown."},
		"files_scanned":{"type":"integer"}},
		"required":["truncated","files_scanned"],"additionalProperties":false}`
	fetchResult = `{"type":"object","properties":{
		"status":{"type":"integer"},"status_text":{"type":"string"},
		"headers":{"type":"object","additionalProperties":{"type":"string"}},
		"body":{"type":"string"},"body_bytes":{"type":"integer"},
		"body_truncated":{"type":"boolean"},"body_binary":{"type":"boolean"},
		"final_url":{"type":"string"},"redirects":{"type":["array","null"],"items":{"type":"string"}}},
		"required":["status"],"additionalProperties":false}`
	writeResult = `{"type":"object","properties":{
		"path":{"type":"string"},"bytes":{"type":"integer"},"created":{"type":"boolean"}},
		"required":["path","bytes","created"],"additionalProperties":false}`
)

// toolboxResult is a file tool's result schema: its own result, or the toolbox's refusal.
func toolboxResult(result string) string {
	return `{"anyOf":[` + result + `,{"type":"object","properties":{"error":{"type":"string"}},"required":["error"],"additionalProperties":false}]}`
}

// renderToolbox hands the toolbox's JSON object, which stage 6 decoded and sanitised string by
// string (pipeline.JSONOutput), to view. structuredContent.result holds that object, once; the
// text block is view's rendering of it.
func renderToolbox(view func(m map[string]any) string) func(pipeline.Output) pipeline.Rendered {
	return func(out pipeline.Output) pipeline.Rendered {
		m := out.Result
		if m == nil {
			r := renderCommand(out)
			r.IsError = true
			if out.TimedOut || out.OOMKilled {
				return r
			}
			r.Text = "file tool failed without a result: " + r.Text
			return r
		}
		if e, ok := m["error"].(string); ok {
			return pipeline.Rendered{Text: e, IsError: true}
		}
		return pipeline.Rendered{Text: view(m)}
	}
}

func renderFetch(m map[string]any) string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d %s\n", num(m, "status"), str(m, "status_text"))
	if u := str(m, "final_url"); u != "" {
		fmt.Fprintf(&b, "URL: %s\n", u)
	}
	if h, ok := m["headers"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(h)) {
			fmt.Fprintf(&b, "%s: %v\n", k, h[k])
		}
	}
	b.WriteString("\n")
	switch bin, _ := m["body_binary"].(bool); {
	case bin:
		fmt.Fprintf(&b, "[binary body, %d bytes; not shown]", num(m, "body_bytes"))
	default:
		b.WriteString(str(m, "body"))
	}
	if t, _ := m["body_truncated"].(bool); t {
		fmt.Fprintf(&b, "\n[body cut at %d bytes]", len(str(m, "body")))
	}
	return b.String()
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func num(m map[string]any, k string) int64 {
	f, _ := m[k].(float64)
	return int64(f)
}

func renderRead(m map[string]any) string {
	if b, _ := m["binary"].(bool); b {
		return fmt.Sprintf("%s is a binary file (%d bytes); not shown.", str(m, "path"), num(m, "size"))
	}
	text := str(m, "content")
	if t, _ := m["truncated"].(bool); t {
		text += fmt.Sprintf("\n[more lines follow: call read_file with offset %d]", num(m, "next_offset"))
	}
	if text == "" {
		return fmt.Sprintf("(%s: no lines at offset %d)", str(m, "path"), num(m, "offset"))
	}
	return text
}

func renderList(m map[string]any) string {
	var b strings.Builder
	entries, _ := m["entries"].([]any)
	for _, e := range entries {
		em, _ := e.(map[string]any)
		name := str(em, "name")
		switch str(em, "type") {
		case "dir":
			name += "/"
		case "symlink":
			name += "@"
			if t := str(em, "target"); t != "" {
				name += " -> " + t
			}
		}
		if str(em, "type") == "file" {
			fmt.Fprintf(&b, "%s\t%d", name, num(em, "size"))
			if n := num(em, "links"); n > 1 {
				fmt.Fprintf(&b, "\t%d hard links", n)
			}
			b.WriteString("\n")
		} else {
			b.WriteString(name + "\n")
		}
	}
	if len(entries) == 0 {
		b.WriteString("(empty directory)\n")
	}
	if t, _ := m["truncated"].(bool); t {
		b.WriteString("[more entries not shown]\n")
	}
	return b.String()
}

func renderSearch(m map[string]any) string {
	var b strings.Builder
	matches, _ := m["matches"].([]any)
	for _, x := range matches {
		mm, _ := x.(map[string]any)
		fmt.Fprintf(&b, "%s:%d: %s\n", str(mm, "path"), num(mm, "line"), str(mm, "text"))
	}
	if len(matches) == 0 {
		fmt.Fprintf(&b, "no matches (%d files searched)\n", num(m, "files_scanned"))
	}
	if t, _ := m["truncated"].(bool); t {
		b.WriteString("[more matches not shown: raise max_results or narrow the search]\n")
	}
	// Links are not searched: the policy judged the names searched, not a link's target.
	for _, x := range anyList(m["skipped_links"]) {
		l, _ := x.(map[string]any)
		if t := str(l, "target"); t != "" {
			fmt.Fprintf(&b, "[skipped symlink %s -> %s: search its target by name]\n", str(l, "path"), t)
		} else {
			fmt.Fprintf(&b, "[skipped %s: %d hard links]\n", str(l, "path"), num(l, "links"))
		}
	}
	if n := num(m, "skipped_links_more"); n > 0 {
		fmt.Fprintf(&b, "[%d more links skipped]\n", n)
	}
	return b.String()
}

func anyList(v any) []any { l, _ := v.([]any); return l }

func renderWrite(m map[string]any) string {
	verb := "updated"
	if c, _ := m["created"].(bool); c {
		verb = "created"
	}
	return fmt.Sprintf("%s %s (%d bytes)", verb, str(m, "path"), num(m, "bytes"))
}

// stripControl removes terminal escape sequences and control bytes other than tab and newline.
func stripControl(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			// Skip ESC and a CSI/OSC sequence after it.
			if i+1 < len(s) && s[i+1] == '[' {
				j := i + 2
				for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
					j++
				}
				i = j
			} else if i+1 < len(s) && s[i+1] == ']' {
				j := i + 2
				for j < len(s) && s[j] != 0x07 && !(s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\') {
					j++
				}
				if j < len(s) && s[j] == 0x1b {
					j++
				}
				i = j
			}
		case c == '\t' || c == '\n':
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
