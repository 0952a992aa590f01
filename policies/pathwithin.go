package policies

import (
	"fmt"
	"path"
	"strings"
)

// path_within decides whether a file path names something under one of the listed
// workspace-relative roots. It is lexical: the path is cleaned (".", "..", duplicate slashes)
// and compared segment-wise, so "src" covers "src/a.go" and "src" itself but not "srcfoo/x".
//
// Refused (a mismatch: require denies, deny_if fires):
//   - the empty path, which tools commonly read as "the workspace root";
//   - a NUL byte, which C-based tools truncate at, so "src/ok\x00/../../etc" would validate one
//     path and open another;
//   - a backslash, a separator for Windows-hosted MCP servers that the lexical check cannot see;
//   - a relative path whose cleaned form escapes with "..": "src/../../etc/passwd" is
//     "../etc/passwd" once cleaned, so prefix checks on the raw string are not enough;
//   - an absolute path, unless the engine knows the workspace (WithWorkspace) and the path lies
//     inside it; then it is judged by its workspace-relative remainder.
//
// Symlinks are not resolved (the decision is pure); the sandbox's read-only mounts of exactly
// the workspace are the second wall against a link planted inside it.
func pathWithin(p string, roots []string, workspace string) outcome {
	if p == "" || strings.IndexByte(p, 0) >= 0 || strings.IndexByte(p, '\\') >= 0 {
		return badType
	}
	var rel string
	if p[0] == '/' {
		if workspace == "" {
			return badType
		}
		abs := path.Clean(p)
		switch {
		case abs == workspace:
			rel = "."
		case workspace == "/":
			rel = abs[1:]
		case strings.HasPrefix(abs, workspace) && abs[len(workspace)] == '/':
			rel = abs[len(workspace)+1:]
		default:
			return badType
		}
	} else {
		rel = path.Clean(p)
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return badType
		}
	}
	for _, r := range roots {
		if r == "." || rel == r || (len(rel) > len(r) && strings.HasPrefix(rel, r) && rel[len(r)] == '/') {
			return holds
		}
	}
	return fails
}

// compileRoot normalises one path_within root: relative, clean, no escape. "src/" is "src";
// "." (or "./") is the whole workspace.
func compileRoot(r string) (string, error) {
	switch {
	case r == "":
		return "", fmt.Errorf("empty root; use \".\" for the whole workspace")
	case strings.IndexByte(r, 0) >= 0 || strings.IndexByte(r, '\\') >= 0:
		return "", fmt.Errorf("root %q contains a NUL byte or a backslash", r)
	case strings.HasPrefix(r, "/"):
		return "", fmt.Errorf("root %q is absolute; roots are relative to the workspace (e.g. \"src/\")", r)
	}
	c := path.Clean(r)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("root %q escapes the workspace", r)
	}
	return c, nil
}

// cleanWorkspace normalises the workspace directory given to WithWorkspace.
func cleanWorkspace(dir string) string {
	if dir == "" || !strings.HasPrefix(dir, "/") {
		return ""
	}
	return path.Clean(dir)
}
