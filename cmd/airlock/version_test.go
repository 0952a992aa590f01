package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/runtime"
)

func TestVersion(t *testing.T) {
	runcOut := "runc version 1.5.2\ncommit: v1.5.2-0-gabc\nspec: 1.3.0\ngo: go1.26.8\nlibseccomp: 2.5.4\n"
	found := func() (string, error) { return "/opt/runc", nil }
	answers := func(_ context.Context, name string, args ...string) ([]byte, error) {
		if name != "/opt/runc" || strings.Join(args, " ") != "--version" {
			t.Errorf("ran %s %v; want only /opt/runc --version", name, args)
		}
		return []byte(runcOut), nil
	}
	info := collectVersion(context.Background(), found, answers)
	if info.Version != runtime.Version || info.Go != goruntime.Version() || info.Runc != "/opt/runc" ||
		info.RuncVer != "1.5.2" || info.Seccomp != "2.5.4" || info.RuncError != "" {
		t.Errorf("info = %+v", info)
	}
	var b bytes.Buffer
	printVersion(&b, info)
	for _, want := range []string{"airlock " + runtime.Version, "go:      " + goruntime.Version(), "runc:    /opt/runc 1.5.2, libseccomp 2.5.4"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}

	missing := collectVersion(context.Background(), func() (string, error) { return "", errors.New("no runc binary (looked at PATH)") }, answers)
	b.Reset()
	printVersion(&b, missing)
	if !strings.Contains(b.String(), "runc:    not found: no runc binary (looked at PATH)") {
		t.Errorf("missing runc:\n%s", b.String())
	}
	broken := collectVersion(context.Background(), found, func(context.Context, string, ...string) ([]byte, error) {
		return nil, errors.New("exec format error")
	})
	b.Reset()
	printVersion(&b, broken)
	if !strings.Contains(b.String(), "runc:    /opt/runc (version unknown: exec format error)") {
		t.Errorf("broken runc:\n%s", b.String())
	}

	// The command itself, both spellings, and --json.
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "airlock "+runtime.Version) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("version --json: exit %d: %s", code, errb.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got["version"] != runtime.Version || got["go"] != goruntime.Version() {
		t.Errorf("version --json = %s (%v)", out.String(), err)
	}
	if code := run(context.Background(), []string{"version", "extra"}, &out, &errb); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
	errb.Reset()
	run(context.Background(), []string{"help"}, &out, &errb)
	if !strings.Contains(errb.String(), "version ") {
		t.Errorf("usage does not list version:\n%s", errb.String())
	}
}
