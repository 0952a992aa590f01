package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Caps keep every answer well below the pipeline's output cap (256 KiB after sanitising), so
// the JSON is never cut. Budgets count JSON-encoded bytes: an invalid UTF-8 byte or a control
// byte grows to six ("\ufffd"), so raw byte counts would not bound the output.
const (
	outputBudget     = 160 << 10
	readDefaultLines = 2000
	readMaxLines     = 20000
	listMaxEntries   = 2000
	searchDefault    = 100
	searchMaxResults = 1000
	searchMaxFile    = 4 << 20
	searchMaxLine    = 400
	searchMaxPattern = 1000
	binarySniffBytes = 8000
)

func dispatch(root, tool string, raw []byte) (any, error) {
	switch tool {
	case "read_file":
		var a readArgs
		if err := decode(raw, &a); err != nil {
			return nil, err
		}
		return readFile(root, a)
	case "list_directory":
		var a listArgs
		if err := decode(raw, &a); err != nil {
			return nil, err
		}
		return listDirectory(root, a)
	case "search_files":
		var a searchArgs
		if err := decode(raw, &a); err != nil {
			return nil, err
		}
		return searchFiles(root, a)
	case "write_file":
		var a writeArgs
		if err := decode(raw, &a); err != nil {
			return nil, err
		}
		return writeFile(root, a)
	case "http_fetch":
		var a fetchArgs
		if err := decode(raw, &a); err != nil {
			return nil, err
		}
		return httpFetch(a, nil)
	default:
		return nil, fmt.Errorf("unknown tool %q: want read_file, list_directory, search_files, write_file or http_fetch", tool)
	}
}

// decode is strict: the pipeline already validated the arguments against the tool's schema,
// so anything unexpected here means the two disagree and the call must not proceed.
func decode(raw []byte, v any) error {
	if err := exactKeys(raw, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("arguments: %w", err)
	}
	if dec.More() {
		return errors.New("arguments: trailing data after the JSON object")
	}
	return nil
}

// relPath maps a tool path to a clean path relative to the workspace root. It refuses any ".."
// component, even one that would stay inside: the policy's path_within check reasons about the
// lexical path, so the path that runs must be the path that was checked. Absolute paths are
// accepted only under /workspace, the mount point the agent sees.
func relPath(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", errors.New("path contains a NUL byte")
	}
	if p == "" {
		return ".", nil
	}
	if path.IsAbs(p) {
		switch {
		case p == workspaceRoot || p == workspaceRoot+"/":
			return ".", nil
		case strings.HasPrefix(p, workspaceRoot+"/"):
			p = strings.TrimPrefix(p, workspaceRoot+"/")
		default:
			return "", fmt.Errorf("path %q is outside %s; use a path relative to the workspace", p, workspaceRoot)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("path %q contains \"..\"; use a path relative to the workspace without \"..\"", p)
		}
	}
	// Only canonical paths: a policy rule that is not path_within (suffix ".env", eq
	// "secrets.txt", a glob "**/*.go") sees the raw string, so ".env/", "./secrets.txt" or
	// "src//main.go" would pass it while path.Clean made the tool open the very file it names.
	if c := path.Clean(p); c != p {
		return "", fmt.Errorf("path %q is not in canonical form (trailing slash, \"//\" or \".\" segment); use %q", p, c)
	}
	return p, nil
}

// display is how a path is reported back: relative to the workspace.
func display(rel string) string { return rel }

type readArgs struct {
	Path   string `json:"path"`
	Offset int    `json:"offset"` // first line to return, 0-based
	Limit  int    `json:"limit"`  // number of lines; 0 means the default
}

type readResult struct {
	Path       string `json:"path"`
	Content    string `json:"content,omitempty"`
	Offset     int    `json:"offset"`
	Lines      int    `json:"lines"`
	NextOffset int    `json:"next_offset,omitempty"` // set when more lines follow
	Truncated  bool   `json:"truncated"`
	Size       int64  `json:"size"`
	Binary     bool   `json:"binary,omitempty"`
}

// readFile returns lines [offset, offset+limit) of a text file, at most outputBudget of them
// once JSON-encoded.
func readFile(root string, a readArgs) (any, error) {
	rel, err := relPath(a.Path)
	if err != nil {
		return nil, err
	}
	if a.Offset < 0 || a.Limit < 0 {
		return nil, errors.New("offset and limit must not be negative")
	}
	limit := a.Limit
	if limit == 0 {
		limit = readDefaultLines
	}
	limit = min(limit, readMaxLines)
	ws, err := openWorkspace(root)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	f, st, err := openFileNoLinks(ws, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := readResult{Path: display(rel), Offset: a.Offset, Size: st.Size}
	br := bufio.NewReaderSize(f, 64<<10)
	if head, _ := br.Peek(binarySniffBytes); bytes.IndexByte(head, 0) >= 0 {
		res.Binary = true
		return res, nil
	}
	var out strings.Builder
	line, budget := 0, outputBudget
	for {
		text, err := br.ReadString('\n')
		if text != "" {
			if line >= a.Offset {
				cost := jsonLen(text)
				if res.Lines == limit || cost > budget {
					res.NextOffset = line
					res.Truncated = true
					break
				}
				out.WriteString(text)
				budget -= cost
				res.Lines++
			}
			line++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", display(rel), errnoText(err))
		}
	}
	res.Content = out.String()
	return res, nil
}

type listArgs struct {
	Path string `json:"path"`
}

type entry struct {
	Name string `json:"name"`
	Type string `json:"type"` // file, dir, symlink, other
	Size int64  `json:"size,omitempty"`
	// Target is a symlink's target as stored. The file tools do not follow links, so the
	// agent asks for the target by name and the policy judges that name.
	Target string `json:"target,omitempty"`
	// Links is a regular file's hard link count when it is more than one: such a file is
	// refused by read_file and write_file, and skipped by search_files.
	Links uint64 `json:"links,omitempty"`
}

type listResult struct {
	Path      string  `json:"path"`
	Entries   []entry `json:"entries"`
	Truncated bool    `json:"truncated"`
}

func listDirectory(root string, a listArgs) (any, error) {
	rel, err := relPath(a.Path)
	if err != nil {
		return nil, err
	}
	ws, err := openWorkspace(root)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	d, err := walkDirs(ws, rel, false)
	if nd := (*notDirError)(nil); errors.As(err, &nd) && nd.path == rel {
		return nil, fmt.Errorf("%s is not a directory; use read_file", display(rel))
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := readDirNames(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", display(rel), errnoText(err))
	}
	sort.Strings(names)
	res := listResult{Path: display(rel), Entries: []entry{}}
	budget := outputBudget
	for _, name := range names {
		e := entry{Name: name, Type: "other"}
		if st, err := fstatAtNoFollow(int(d.Fd()), name); err == nil {
			e.Type = typeName(st.Mode)
			switch e.Type {
			case "file":
				e.Size = st.Size
				if st.Nlink > 1 {
					e.Links = uint64(st.Nlink)
				}
			case "symlink":
				e.Target = readLinkAt(int(d.Fd()), name)
			}
		}
		cost := jsonLen(e.Name) + jsonLen(e.Target) + 64
		if len(res.Entries) == listMaxEntries || cost > budget {
			res.Truncated = true
			break
		}
		budget -= cost
		res.Entries = append(res.Entries, e)
	}
	return res, nil
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFREG:
		return "file"
	default:
		return "other"
	}
}

type searchArgs struct {
	Pattern    string `json:"pattern"`
	Glob       string `json:"glob"`
	Path       string `json:"path"`
	MaxResults int    `json:"max_results"`
}

type match struct {
	Path string `json:"path"`
	Line int    `json:"line"` // 1-based
	Text string `json:"text"`
}

type searchResult struct {
	Matches      []match `json:"matches"`
	Truncated    bool    `json:"truncated"`
	FilesScanned int     `json:"files_scanned"`
	// SkippedLinks are the symlinks and hard-linked files the search met and did not follow or
	// read (at most searchMaxSkipped, then SkippedLinksMore counts the rest): the file tools
	// never read a file under a name other than the one a policy judged.
	SkippedLinks     []skippedLink `json:"skipped_links,omitempty"`
	SkippedLinksMore int           `json:"skipped_links_more,omitempty"`
}

type skippedLink struct {
	Path   string `json:"path"`
	Target string `json:"target,omitempty"` // a symlink's target as stored
	Links  uint64 `json:"links,omitempty"`  // a hard-linked file's link count
}

const searchMaxSkipped = 50

// searchFiles greps regular files under path for an RE2 pattern. It never follows a symlink
// and never reads a hard-linked file (both are reported in skipped_links), and skips .git,
// binary files and files over searchMaxFile bytes.
func searchFiles(root string, a searchArgs) (any, error) {
	if a.Pattern == "" || len(a.Pattern) > searchMaxPattern {
		return nil, fmt.Errorf("pattern must be 1 to %d bytes", searchMaxPattern)
	}
	re, err := regexp.Compile(a.Pattern)
	if err != nil {
		return nil, fmt.Errorf("pattern: %w", err)
	}
	s := &searcher{re: re, globText: a.Glob, budget: outputBudget, res: searchResult{Matches: []match{}}}
	if a.Glob != "" {
		if s.glob, err = globRegexp(a.Glob); err != nil {
			return nil, err
		}
	}
	rel, err := relPath(a.Path)
	if err != nil {
		return nil, err
	}
	s.max = a.MaxResults
	if s.max <= 0 {
		s.max = searchDefault
	}
	s.max = min(s.max, searchMaxResults)
	ws, err := openWorkspace(root)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	dir, name := ws, "."
	if rel != "." {
		if dir, err = walkDirs(ws, path.Dir(rel), false); err != nil {
			return nil, err
		}
		defer dir.Close()
		name = path.Base(rel)
	}
	if err := s.visit(int(dir.Fd()), name, rel, true); err != nil && !errors.Is(err, errStopSearch) {
		return nil, err
	}
	return s.res, nil
}

// searcher walks directories by file descriptor, each entry opened with O_NOFOLLOW from the
// directory that listed it, so a symlink swapped in mid-walk is refused rather than followed.
type searcher struct {
	re, glob *regexp.Regexp
	globText string
	max      int
	budget   int
	res      searchResult
}

var errStopSearch = errors.New("stop")

// visit searches name in dirfd, reported as p. Errors on the starting path (top) are the
// call's; below it an unreadable entry is skipped, not fatal.
func (s *searcher) visit(dirfd int, name, p string, top bool) error {
	st, err := fstatAtNoFollow(dirfd, name)
	if err != nil {
		if top {
			return componentErr(dirfd, name, p, err)
		}
		return nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target := readLinkAt(dirfd, name)
		if top {
			return &linkError{path: p, target: target}
		}
		s.skip(skippedLink{Path: p, Target: target})
	case unix.S_IFDIR:
		if name == ".git" && !top {
			return nil
		}
		fd, err := openAtNoFollow(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			if top {
				return componentErr(dirfd, name, p, err)
			}
			return nil
		}
		d := os.NewFile(uintptr(fd), name)
		defer d.Close()
		names, err := readDirNames(d)
		if err != nil {
			if top {
				return fmt.Errorf("%s: %w", display(p), errnoText(err))
			}
			return nil
		}
		sort.Strings(names)
		for _, n := range names {
			child := n
			if p != "." {
				child = p + "/" + n
			}
			if err := s.visit(fd, n, child, false); err != nil {
				return err
			}
		}
	case unix.S_IFREG:
		if s.glob != nil && !matchGlob(s.glob, s.globText, p) {
			return nil
		}
		if st.Nlink > 1 {
			s.skip(skippedLink{Path: p, Links: uint64(st.Nlink)})
			return nil
		}
		found, stop := grepFile(dirfd, name, p, s.re, s.max-len(s.res.Matches), &s.budget)
		s.res.FilesScanned++
		s.res.Matches = append(s.res.Matches, found...)
		if stop {
			s.res.Truncated = true
			return errStopSearch
		}
	}
	return nil
}

// skip reports a link the search did not follow, when the glob would have searched it.
func (s *searcher) skip(l skippedLink) {
	if s.glob != nil && !matchGlob(s.glob, s.globText, l.Path) {
		return
	}
	cost := jsonLen(l.Path) + jsonLen(l.Target) + 48
	if len(s.res.SkippedLinks) == searchMaxSkipped || cost > s.budget {
		s.res.SkippedLinksMore++
		return
	}
	s.budget -= cost
	s.res.SkippedLinks = append(s.res.SkippedLinks, l)
}

// grepFile returns up to max matches within the output budget; stop reports that either ran
// out with matching lines left.
func grepFile(dirfd int, name, p string, re *regexp.Regexp, max int, budget *int) (found []match, stop bool) {
	f, st, err := openRegularAt(dirfd, name, p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if st.Size > searchMaxFile {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, searchMaxFile))
	if err != nil || bytes.IndexByte(data[:min(len(data), binarySniffBytes)], 0) >= 0 {
		return nil, false
	}
	line := 0
	for len(data) > 0 {
		line++
		text := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			text, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if !re.Match(text) {
			continue
		}
		if len(found) == max {
			return found, true
		}
		t := strings.TrimRight(string(text), "\r")
		if len(t) > searchMaxLine {
			t = strings.ToValidUTF8(t[:searchMaxLine], "") + "…"
		}
		cost := jsonLen(p) + jsonLen(t) + 40
		if cost > *budget {
			return found, true
		}
		*budget -= cost
		found = append(found, match{Path: p, Line: line, Text: t})
	}
	return found, false
}

// globRegexp compiles a glob: "*" and "?" stay within one path segment, "**" spans segments.
func globRegexp(g string) (*regexp.Regexp, error) {
	if len(g) > 500 || strings.IndexByte(g, 0) >= 0 {
		return nil, errors.New("glob: at most 500 bytes, no NUL")
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case strings.HasPrefix(g[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("glob %q: %w", g, err)
	}
	return re, nil
}

// matchGlob matches a glob without "/" against the file name ("*.go" finds every Go file) and
// one with "/" against the path relative to the workspace ("src/**/*.ts").
func matchGlob(re *regexp.Regexp, glob, p string) bool {
	if !strings.Contains(glob, "/") {
		return re.MatchString(path.Base(p))
	}
	return re.MatchString(p)
}

type writeArgs struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

type writeResult struct {
	Path    string `json:"path"`
	Bytes   int    `json:"bytes"`
	Created bool   `json:"created"`
}

// writeFile writes content to path, creating missing parent directories (mode 0755). No
// component of the path may be a symlink, not even one that stays inside the workspace: the
// policy checks the lexical path (write_file's default policy refuses ".git/"), so a symlink
// planted by the repository (g -> .git) would otherwise let "g/config" rewrite .git/config,
// whose core.fsmonitor or hooks the host's git later runs outside any sandbox. The path that is
// written must be the path that was checked.
func writeFile(root string, a writeArgs) (any, error) {
	rel, err := relPath(a.Path)
	if err != nil {
		return nil, err
	}
	if rel == "." {
		return nil, errors.New("path names the workspace itself; give a file path")
	}
	ws, err := openWorkspace(root)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	parent, base := path.Dir(rel), path.Base(rel)
	dir, err := walkDirs(ws, parent, true)
	if err != nil {
		return nil, withRest(err, base)
	}
	defer dir.Close()
	created := false
	if _, err := fstatAtNoFollow(int(dir.Fd()), base); errors.Is(err, unix.ENOENT) {
		created = true
	}
	// O_NONBLOCK: opening a FIFO for writing fails (ENXIO) instead of blocking.
	fd, err := unix.Openat(int(dir.Fd()), base, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o644)
	if err != nil {
		switch {
		case errors.Is(err, unix.ELOOP):
			return nil, &linkError{path: rel, target: readLinkAt(int(dir.Fd()), base)}
		case errors.Is(err, unix.EISDIR):
			return nil, fmt.Errorf("%s is a directory", display(rel))
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("%s: permission denied", display(rel))
		case errors.Is(err, unix.EROFS):
			return nil, fmt.Errorf("%s: the workspace is mounted read-only for this tool", display(rel))
		}
		return nil, fmt.Errorf("%s: %w", display(rel), err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", display(rel), errnoText(err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", display(rel))
	}
	// A hard link writes every other name of the file too: notes.txt linked to .git/config
	// would rewrite .git/config, which the policy refuses by name.
	if st.Nlink > 1 {
		return nil, &linkError{path: rel, links: uint64(st.Nlink)}
	}
	// Truncate only after the checks above, so refusing never destroys the old content.
	if err := f.Truncate(0); err != nil {
		return nil, fmt.Errorf("%s: truncate: %w", display(rel), err)
	}
	n, err := f.Write([]byte(a.Content))
	if err != nil {
		return nil, fmt.Errorf("%s: write: %w", display(rel), err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("%s: sync: %w", display(rel), err)
	}
	return writeResult{Path: display(rel), Bytes: n, Created: created}, nil
}

// exactKeys rejects top-level keys that are duplicated or that match a field only when case is
// ignored: encoding/json matches keys case-insensitively and keeps the last duplicate, so
// {"path":"a","Path":"/etc"} could be checked as one value and executed as the other.
func exactKeys(raw []byte, v any) error {
	allowed := map[string]bool{}
	rt := reflect.TypeOf(v).Elem()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		allowed[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("arguments: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("arguments: want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("arguments: %w", err)
		}
		key, _ := tok.(string)
		if !allowed[key] {
			return fmt.Errorf("arguments: unknown field %q", key)
		}
		if seen[key] {
			return fmt.Errorf("arguments: duplicate field %q", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("arguments: %w", err)
		}
	}
	return nil
}

// jsonLen is the length of s once encoded as a JSON string, without the quotes.
func jsonLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6 // \ufffd
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}
