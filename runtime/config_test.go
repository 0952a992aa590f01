package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFullConfig(t *testing.T) {
	cfg, err := LoadConfig("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Grant.ID != "alice" || cfg.Grant.Labels["team"] != "platform" {
		t.Errorf("grant = %+v", cfg.Grant)
	}
	if len(cfg.HTTP.Tokens) != 2 || cfg.HTTP.Tokens[0].Grant != "ci" {
		t.Errorf("tokens = %+v", cfg.HTTP.Tokens)
	}
	p := cfg.Profiles["lint"]
	if p.limits.memory != 1<<30 || p.limits.stderr != 256<<10 || p.Timeout.String() != "2m0s" {
		t.Errorf("lint profile = %+v", p)
	}
	ws := t.TempDir()
	if err := cfg.Resolve(Overrides{Workspace: ws, StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	if cfg.Policy != filepath.Join(dir, "policy.json") || cfg.Audit.Path != filepath.Join(dir, "audit/audit.jsonl") {
		t.Errorf("paths not relative to the config file: policy %s audit %s", cfg.Policy, cfg.Audit.Path)
	}
	tools, err := BuildTools(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools {
		names = append(names, tl.Name())
	}
	if got, want := strings.Join(names, " "), "read_file list_directory search_files git_status run_tests go_vet cat_file"; got != want {
		t.Errorf("tools = %s, want %s", got, want)
	}
}

func (d Duration) String() string { return time.Duration(d).String() }

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring; "file:LINE:" included where the line matters
	}{
		{"unknown top-level key", "workspace: .\nworkspce: ro\n", "x.yaml:2: workspce: unknown key, did you mean workspace?"},
		{"unknown key without a near match", "wrkspc_dir: .\n", "x.yaml:1: wrkspc_dir: unknown key; the keys here are workspace, backend, policy, audit,"},
		{"unknown profile key", "profiles:\n  p:\n    image: host\n    memroy: 1Gi\n", "x.yaml:4: profiles.p.memroy: unknown key, did you mean memory?"},
		{"unknown tool key", "tools:\n  - name: x\n    argv: [ls]\n    descripton: d\n", "x.yaml:4: tools[0].descripton: unknown key, did you mean description?"},
		{"unknown mount key", "profiles:\n  p:\n    image: host\n    mounts:\n      - {source: /a, target: /b, acess: ro}\n", "x.yaml:5: profiles.p.mounts[0].acess: unknown key, did you mean access?"},
		{"pids not a number", "profiles:\n  lint:\n    image: host\n    pids: many\n", "x.yaml:4: profiles.lint.pids: want an integer, got \"many\""},
		{"cpus not a number", "profiles:\n  lint:\n    image: host\n    cpus: two\n", "x.yaml:4: profiles.lint.cpus: want a number, got \"two\""},
		{"record_args not a bool", "audit:\n  record_args: sometimes\n", "x.yaml:2: audit.record_args: want true or false, got \"sometimes\""},
		{"argv not a list", "tools:\n  - name: x\n    description: d\n    argv: ls -l\n", "x.yaml:4: tools[0].argv: want a list, got \"ls -l\""},
		{"profiles not a mapping", "profiles: [lint]\n", "x.yaml:1: profiles: want a mapping, got a list"},
		{"env item not a string", "profiles:\n  p:\n    image: host\n    env: [{A: b}]\n", "x.yaml:4: profiles.p.env[0]: want a string, got a mapping"},
		{"memory too small", "profiles:\n  p:\n    image: host\n    memory: 1Mi\n", "x.yaml:4: profiles.p.memory: \"1Mi\" is below the minimum of 4Mi"},
		{"memory zero", "profiles:\n  p:\n    image: host\n    memory: \"0\"\n", "x.yaml:4: profiles.p.memory: \"0\" is below the minimum of 4Mi"},
		{"tmpfs too small", "profiles:\n  p:\n    image: host\n    tmpfs: 64Ki\n", "x.yaml:4: profiles.p.tmpfs: \"64Ki\" is below the minimum of 1Mi"},
		{"stdout zero", "profiles:\n  p:\n    image: host\n    stdout: \"0\"\n", "x.yaml:4: profiles.p.stdout: \"0\" is below the minimum of 1Ki"},
		{"network allow with an IP", "profiles:\n  p:\n    image: host\n    network:\n      allow: [\"10.0.0.1\"]\n", "x.yaml:5: profiles.p.network.allow:"},
		{"network allow with a bad port", "profiles:\n  p:\n    image: host\n    network:\n      allow: [\"a.example:http\"]\n", "x.yaml:5: profiles.p.network.allow:"},
		{"network allow not a list", "profiles:\n  p:\n    image: host\n    network:\n      allow: a.example\n", "x.yaml:5: profiles.p.network.allow: want a list"},
		{"network allow under seccomp files", "profiles:\n  p:\n    image: busybox\n    seccomp: files\n    network:\n      allow: [a.example]\n", "x.yaml:6: profiles.p.network.allow: network.allow needs sockets, which seccomp files refuses"},
		{"network allow with few pids", "profiles:\n  p:\n    image: host\n    pids: 8\n    network:\n      allow: [a.example]\n", "x.yaml:4: profiles.p.pids: network.allow needs pids of at least 16"},
		{"egress allow_private not a CIDR", "egress:\n  allow_private: [\"10.0.0.0/33\"]\n", "x.yaml:2: egress.allow_private[0]: \"10.0.0.0/33\" is not a CIDR"},
		{"egress host not an address", "egress:\n  hosts:\n    reg.test: localhost\n", "x.yaml:3: egress.hosts.reg.test: host \"reg.test\": \"localhost\" is not an IP address"},
		{"egress max_bytes", "egress:\n  max_bytes: lots\n", "x.yaml:2: egress.max_bytes: max_bytes \"lots\": want a positive size"},
		{"egress unknown key", "egress:\n  allow_privat: []\n", "x.yaml:2: egress.allow_privat: unknown key, did you mean allow_private?"},
		{"pids zero", "profiles:\n  p:\n    image: host\n    pids: 0\n", "x.yaml:4: profiles.p.pids: 0 is below the minimum of 8"},
		{"pids negative", "profiles:\n  p:\n    image: host\n    pids: -1\n", "x.yaml:4: profiles.p.pids: -1 is below the minimum of 8"},
		{"cpus zero", "profiles:\n  p:\n    image: host\n    cpus: 0\n", "x.yaml:4: profiles.p.cpus: 0 is outside 0.01..1024 cores"},
		{"cpus negative", "profiles:\n  p:\n    image: host\n    cpus: -2\n", "x.yaml:4: profiles.p.cpus: -2 is outside 0.01..1024 cores"},
		{"timeout zero", "profiles:\n  p:\n    image: host\n    timeout: 0s\n", "x.yaml:4: profiles.p.timeout: want a positive Go duration such as 30s or 10m, got \"0s\""},
		{"timeout too short", "profiles:\n  p:\n    image: host\n    timeout: 5ms\n", "x.yaml:4: profiles.p.timeout: 5ms is outside 1s..24h0m0s"},
		{"timeout absurd", "profiles:\n  p:\n    image: host\n    timeout: 1000h\n", "x.yaml:4: profiles.p.timeout: 1000h0m0s is outside 1s..24h0m0s"},
		{"bad yaml", "tools: [\n", "x.yaml:"},
		{"bad duration", "profiles:\n  p:\n    image: host\n    timeout: soon\n", "x.yaml:4: profiles.p.timeout: want a positive Go duration such as 30s or 10m, got \"soon\""},
		{"bad image", "profiles:\n  p:\n    image: ubuntu\n", "x.yaml:3: profiles.p.image: image \"ubuntu\""},
		{"missing image", "profiles:\n  p:\n    memory: 1Gi\n", "x.yaml:2: profiles.p.image: image is required"},
		{"unconfined refused", "profiles:\n  p:\n    image: host\n    seccomp: unconfined\n", "x.yaml:4: profiles.p.seccomp: seccomp unconfined is not allowed"},
		{"bad size", "profiles:\n  p:\n    image: host\n    memory: lots\n", "x.yaml:4: profiles.p.memory: size \"lots\""},
		{"bad workspace access", "profiles:\n  p:\n    image: host\n    workspace: yes-please\n", "x.yaml:4: profiles.p.workspace"},
		{"relative mount", "profiles:\n  p:\n    image: host\n    mounts:\n      - {source: rel, target: /x}\n", "x.yaml:5: profiles.p.mounts[0]: source and target must be absolute"},
		{"mount over workspace", "profiles:\n  p:\n    image: host\n    mounts:\n      - {source: /tmp, target: /workspace}\n", "use workspace: instead"},
		{"token inline", "http:\n  tokens:\n    - grant: ci\n", "x.yaml:3: http.tokens[0]: set exactly one of token_env or token_file"},
		{"token without grant", "http:\n  tokens:\n    - token_env: T\n", "x.yaml:3: http.tokens[0]: grant is required"},
		{"unknown builtin in list", "builtins: [read_file, rm_rf]\n", "x.yaml:1: builtins[1]: unknown built-in tool \"rm_rf\""},
		{"tool without argv or builtin", "tools:\n  - name: x\n    description: d\n", "x.yaml:2: tools[0]: set argv"},
		{"tool both", "tools:\n  - name: x\n    builtin: read_file\n    argv: [ls]\n", "x.yaml:2: tools[0]: set either builtin or argv"},
		{"tool bad name", "tools:\n  - name: \"bad name\"\n    argv: [ls]\n    description: d\n", "x.yaml:2: tools[0].name"},
		{"tool duplicate", "tools:\n  - name: x\n    argv: [ls]\n    description: d\n  - name: x\n    argv: [ls]\n    description: d\n", "x.yaml:5: tools[1].name: tool \"x\" is already defined at tools[0]"},
		{"tool no description", "tools:\n  - name: x\n    argv: [ls]\n", "x.yaml:2: tools[0].description: description is required"},
		{"tool unknown profile", "tools:\n  - name: x\n    description: d\n    argv: [ls]\n    profile: nope\n", "x.yaml:5: tools[0].profile: unknown profile \"nope\""},
		{"tool spliced placeholder", "tools:\n  - name: x\n    description: d\n    argv: [ls, \"--dir={{args.d}}\"]\n", "x.yaml:4: tools[0].argv: argv[1] \"--dir={{args.d}}\": a placeholder must be the whole element"},
		{"tool placeholder program", "tools:\n  - name: x\n    description: d\n    argv: [\"{{args.prog}}\"]\n", "argv[0] must be a literal program"},
		{"tool schema not object", "tools:\n  - name: x\n    description: d\n    argv: [ls]\n    input_schema: {type: string}\n", "x.yaml:5: tools[0].input_schema: input_schema must have type: object"},
		{"builtin unknown", "tools:\n  - name: x\n    builtin: nope\n", "x.yaml:3: tools[0].builtin: unknown built-in tool \"nope\""},
		{"tool named like a built-in", "tools:\n  - name: run_command\n    description: d\n    argv: [ls]\n", "x.yaml:2: tools[0].name: \"run_command\" is the name of a built-in tool; add replaces: run_command"},
		{"alias named like its built-in", "tools:\n  - name: read_file\n    builtin: read_file\n    profile: command\n", "x.yaml:2: tools[0].name: \"read_file\" is the name of a built-in tool"},
		{"replaces another name", "tools:\n  - name: shell\n    replaces: run_command\n    description: d\n    argv: [ls]\n", "x.yaml:3: tools[0].replaces: replaces \"run_command\" must be this tool's own name \"shell\""},
		{"replaces nothing", "tools:\n  - name: shell\n    replaces: shell\n    description: d\n    argv: [ls]\n", "x.yaml:3: tools[0].replaces: \"shell\" is not a built-in tool, so there is nothing to replace"},
		{"builtin with schema", "tools:\n  - name: x\n    builtin: read_file\n    input_schema: {type: object}\n", "keeps its own input_schema"},
		{"tests unknown profile", "tests:\n  profile: nope\n", "x.yaml:2: tests.profile: unknown profile"},
		{"bad backend name", "backend: \"../x\"\n", "x.yaml:1: backend"},
		{"session cap zero", "http:\n  max_sessions: 0\n", "x.yaml:2: http.max_sessions: max_sessions is 0; want at least 1 (default 1024; there is no unlimited)"},
		{"session cap per grant negative", "http:\n  max_sessions_per_grant: -1\n", "x.yaml:2: http.max_sessions_per_grant: max_sessions_per_grant is -1; want at least 1"},
		{"session cap not a number", "http:\n  max_sessions: lots\n", "x.yaml:2: http.max_sessions: want an integer, got \"lots\""},
		{"idle timeout zero", "http:\n  session_idle_timeout: 0s\n", "x.yaml:2: http.session_idle_timeout: want a positive Go duration such as 30s or 10m, got \"0s\""},
		{"idle timeout bad", "http:\n  session_idle_timeout: 1 day\n", "x.yaml:2: http.session_idle_timeout: want a positive Go duration such as 30s or 10m, got \"1 day\""},
		{"unused longer than idle", "http:\n  session_idle_timeout: 1h\n  session_unused_timeout: 2h\n", "x.yaml:3: http.session_unused_timeout: session_unused_timeout 2h0m0s is longer than session_idle_timeout 1h0m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("x.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEmptyConfigIsDefault(t *testing.T) {
	cfg, err := ParseConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if err := cfg.Resolve(Overrides{Workspace: ws, StateDir: state}); err != nil {
		t.Fatal(err)
	}
	if cfg.Backend != "runc" || cfg.Grant.ID != "local" || cfg.HTTP.Addr != DefaultHTTPAddr {
		t.Errorf("defaults = backend %q grant %q addr %q", cfg.Backend, cfg.Grant.ID, cfg.HTTP.Addr)
	}
	if cfg.Audit.Path != filepath.Join(state, "audit", "audit.jsonl") {
		t.Errorf("audit path = %s", cfg.Audit.Path)
	}
	tools, err := BuildTools(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools) != len(BuiltinNames()) {
		t.Fatalf("%d tools, want every built-in", len(tools))
	}
	if _, err := cfg.LoadPolicy(); err != nil {
		t.Fatalf("embedded default policy: %v", err)
	}
}

func TestHTTPSessionLimitsConfig(t *testing.T) {
	tests := []struct {
		yaml string
		want sessionLimits
	}{
		{"", sessionLimits{maxTotal: 1024, maxPerGrant: 256, idle: 24 * time.Hour, unused: 5 * time.Minute}},
		{"http:\n  max_sessions: 10\n  session_idle_timeout: 168h\n  session_unused_timeout: 1m\n",
			sessionLimits{maxTotal: 10, maxPerGrant: 10, idle: 168 * time.Hour, unused: time.Minute}},
		{"http:\n  max_sessions_per_grant: 3\n  session_idle_timeout: 2m\n",
			sessionLimits{maxTotal: 1024, maxPerGrant: 3, idle: 2 * time.Minute, unused: 2 * time.Minute}},
	}
	for _, tc := range tests {
		cfg, err := ParseConfig("x.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := cfg.HTTP.sessionLimits(); got != tc.want {
			t.Errorf("%q: limits %+v, want %+v", tc.yaml, got, tc.want)
		}
	}
}
