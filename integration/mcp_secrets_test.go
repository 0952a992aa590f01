package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// secretsPolicy allows every tool: the test is about what comes back, not what runs.
const secretsPolicy = `{"version":"1","default":"allow"}`

// workspaceSecrets are credentials the way a real workspace holds them, random each run (so no
// allowlist knows them): in .npmrc, Docker's config.json, .env, a settings file, a deploy
// script, and .git/config (a CI checkout's extraheader and a remote URL with a password).
type workspaceSecrets struct {
	npmToken, npmAuth, dockerAuth, dbPassword, dbURLPassword, yamlPassword, clientSecret,
	secretKey, basicAuth, bearer, extraheader, remotePassword string
}

func newWorkspaceSecrets(t testing.TB) workspaceSecrets {
	pick := func(n int) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = alphabet[int(b[i])%len(alphabet)]
		}
		return string(b)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return workspaceSecrets{
		npmToken:       pick(36),
		npmAuth:        b64("ci:" + pick(20)),
		dockerAuth:     b64("robot:" + pick(24)),
		dbPassword:     pick(12) + "#@" + pick(6),
		dbURLPassword:  pick(18),
		yamlPassword:   pick(20),
		clientSecret:   pick(40),
		secretKey:      pick(40),
		basicAuth:      b64("deploy:" + pick(16)),
		bearer:         pick(40),
		extraheader:    b64("x-access-token:ghs_" + pick(36)),
		remotePassword: pick(22),
	}
}

func (s workspaceSecrets) all() []string {
	return []string{s.npmToken, s.npmAuth, s.dockerAuth, s.dbPassword, s.dbURLPassword, s.yamlPassword, s.clientSecret,
		s.secretKey, s.basicAuth, s.bearer, s.extraheader, s.remotePassword}
}

// files are the workspace's files holding the secrets; placeholder stands for each secret in
// the committed version, so that git diff shows the real ones as added lines.
func (s workspaceSecrets) files(placeholder bool) map[string]string {
	v := func(secret string) string {
		if placeholder {
			return "CHANGE-ME"
		}
		return secret
	}
	return map[string]string{
		".npmrc": "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=" + v(s.npmToken) +
			"\n//npm.pkg.github.com/:_auth=" + v(s.npmAuth) + "\n",
		"docker/config.json": "{\n  \"auths\": {\n    \"ghcr.io\": {\n      \"auth\": \"" + v(s.dockerAuth) + "\"\n    }\n  }\n}\n",
		".env":               "DB_PASSWORD=\"" + v(s.dbPassword) + "\"\nDATABASE_URL=postgres://app:" + v(s.dbURLPassword) + "@db.internal:5432/app\n",
		"config/app.yaml":    "database:\n  user: app\n  password: \"" + v(s.yamlPassword) + "\"\n",
		"config/settings.json": "{\n  \"client_id\": \"shop-web\",\n  \"client_secret\": \"" + v(s.clientSecret) +
			"\",\n  \"headers\": {\"Authorization\": \"Bearer " + v(s.bearer) + "\"}\n}\n",
		"deploy.sh": "#!/bin/sh\nexport SECRET_KEY=\"" + v(s.secretKey) + "\"\ncurl -fsS -H \"Authorization: Basic " + v(s.basicAuth) +
			"\" https://api.example.com/deploy\n",
	}
}

// bytesStdio is a JSON-RPC client that keeps every response's bytes as airlock serve --stdio
// wrote them, so that nothing is hidden by an SDK's decoding.
type bytesStdio struct {
	in  io.WriteCloser
	out *bufio.Reader
	id  int
}

func startBytesStdio(t *testing.T, e *mcpEnv) *bytesStdio {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := e.command(ctx, append([]string{"serve", "--stdio"}, e.serveArgs(t)...)...)
	cmd.Stderr = e.logWriter(t, "airlock serve --stdio")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	c := &bytesStdio{in: in, out: bufio.NewReaderSize(out, 1<<20)}
	c.request(t, "initialize", map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "raw-jsonrpc", "version": "0"}})
	c.send(t, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	return c
}

func (c *bytesStdio) send(t *testing.T, msg any) {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("writing to airlock serve --stdio: %v", err)
	}
}

// request sends one request and returns the bytes of its response line.
func (c *bytesStdio) request(t *testing.T, method string, params any) []byte {
	t.Helper()
	c.id++
	c.send(t, map[string]any{"jsonrpc": "2.0", "id": c.id, "method": method, "params": params})
	for {
		line, err := c.out.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reading the response to %s: %v", method, err)
		}
		var head struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(line, &head) == nil && string(head.ID) == fmt.Sprint(c.id) {
			return line
		}
	}
}

// leakedForms returns, for each secret found in b, the form it was found in: as it is,
// JSON-escaped once or twice, or its middle half (a secret redacted only in part).
func leakedForms(b []byte, secrets []string) []string {
	var out []string
	for _, s := range secrets {
		esc, _ := json.Marshal(s)
		esc2, _ := json.Marshal(string(esc))
		forms := []string{s, string(esc[1 : len(esc)-1]), string(esc2[1 : len(esc2)-1])}
		if len(s) >= 16 {
			forms = append(forms, s[len(s)/4:len(s)*3/4])
		}
		for _, f := range forms {
			if strings.Contains(string(b), f) {
				out = append(out, fmt.Sprintf("%q (of %q)", f, s))
				break
			}
		}
	}
	return out
}

// TestWorkspaceSecretsNeverLeave plants credentials where real workspaces hold them and reads
// them back every way an agent can (read_file, search_files, run_command cat, git_diff on an
// uncommitted change), asserting on each whole JSON-RPC response that no secret appears in
// any form. It also reads the sandbox's own mount table, which names the workspace's host
// directory: that must come back as /workspace, in the escaped form the kernel writes
// (a space is \040) and, for a workspace on a file system of its own, relative to that
// file system's root.
func TestWorkspaceSecretsNeverLeave(t *testing.T) {
	for _, layout := range []string{"root file system", "own file system"} {
		t.Run(layout, func(t *testing.T) {
			e := newMCPEnv(t, secretsPolicy, nil)
			base := t.TempDir()
			if layout == "own file system" {
				if os.Geteuid() != 0 {
					testenv.Unavailable(t, "mounting a tmpfs for the workspace needs root")
				}
				if err := syscall.Mount("tmpfs", base, "tmpfs", 0, "size=64m"); err != nil {
					testenv.Unavailable(t, "mounting a tmpfs for the workspace: %v", err)
				}
				t.Cleanup(func() { _ = syscall.Unmount(base, syscall.MNT_DETACH) })
			}
			e.workspace = filepath.Join(base, "team space", "My Project")
			if err := os.MkdirAll(e.workspace, 0o755); err != nil {
				t.Fatal(err)
			}
			s := newWorkspaceSecrets(t)
			write := func(files map[string]string) {
				for name, content := range files {
					p := filepath.Join(e.workspace, filepath.FromSlash(name))
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			git := func(args ...string) {
				cmd := exec.Command("git", append([]string{"-C", e.workspace, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
			}
			write(s.files(true))
			git("init", "-q")
			git("add", ".")
			git("commit", "-q", "-m", "config without secrets")
			write(s.files(false)) // the uncommitted change git_diff shows
			git("config", "http.https://github.com/.extraheader", "AUTHORIZATION: basic "+s.extraheader)
			git("remote", "add", "origin", "https://ci-bot:"+s.remotePassword+"@git.example.com/org/repo.git")

			c := startBytesStdio(t, e)
			calls := []struct {
				tool string
				args map[string]any
			}{
				{"read_file", map[string]any{"path": ".npmrc"}},
				{"read_file", map[string]any{"path": "docker/config.json"}},
				{"read_file", map[string]any{"path": ".env"}},
				{"read_file", map[string]any{"path": "config/app.yaml"}},
				{"read_file", map[string]any{"path": "config/settings.json"}},
				{"read_file", map[string]any{"path": "deploy.sh"}},
				{"read_file", map[string]any{"path": ".git/config"}},
				{"search_files", map[string]any{"pattern": "auth|pass|secret|SECRET|Bearer|://"}},
				{"run_command", map[string]any{"command": "cat .npmrc docker/config.json .env config/app.yaml config/settings.json deploy.sh .git/config"}},
				{"run_command", map[string]any{"argv": []any{"git", "-c", "safe.directory=*", "config", "--list"}}},
				{"git_diff", map[string]any{}},
			}
			for _, call := range calls {
				resp := c.request(t, "tools/call", map[string]any{"name": call.tool, "arguments": call.args})
				label := fmt.Sprintf("%s %v", call.tool, call.args)
				if l := leakedForms(resp, s.all()); len(l) > 0 {
					t.Errorf("%s: the response carries secrets %s:\n%s", label, strings.Join(l, ", "), resp)
				}
				if !strings.Contains(string(resp), "[REDACTED:") {
					t.Errorf("%s: nothing redacted; did the call read anything?\n%.2000s", label, resp)
				}
			}

			// The mount table names the workspace's host directory, escaped.
			resp := c.request(t, "tools/call", map[string]any{"name": "run_command",
				"arguments": map[string]any{"command": "cat /proc/self/mountinfo"}})
			if !strings.Contains(string(resp), "/workspace") {
				t.Fatalf("mountinfo: no /workspace mount in %s", resp)
			}
			host := []string{e.workspace, strings.ReplaceAll(e.workspace, " ", `\040`),
				"/team space/My Project", `/team\040space/My\040Project`}
			if layout == "own file system" {
				t.Logf("the sandbox sees the workspace as %q on its tmpfs", `/team\040space/My\040Project`)
			}
			for _, h := range host {
				if strings.Contains(string(resp), h) || strings.Contains(string(resp), strings.ReplaceAll(h, `\`, `\\`)) {
					t.Errorf("mountinfo: the response names the host workspace as %q:\n%s", h, resp)
				}
			}
		})
	}
}
