package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// CaseFile is a table of policy tests, the format `airlock policy test` runs:
//
//	workspace: /srv/repo          # optional: the engine's workspace (absolute), for path_within
//	now: 2026-01-01T09:00:00Z      # optional: the clock's start (default 2026-01-01T00:00:00Z)
//	cases:
//	  - name: go test is allowed
//	    tool: run_command
//	    args: {command: "go test ./..."}
//	    grant: alice                # optional grant ID
//	    labels: {team: platform}    # optional grant labels
//	    session: s1                 # optional session ID
//	    session_state:              # optional: the session's history (session.* paths)
//	      tainted: true
//	      tainted_by: [http_fetch]
//	      tools: [read_file]
//	      labels: [secret]
//	      calls: 12
//	      age: 90m
//	    advance: 1h                 # optional: move the clock forward first (Go duration)
//	    repeat: 30                  # optional: make the call N times; expect holds for each
//	    rollback: true              # optional: roll reservations back instead of committing
//	    expect: allow               # allow | deny | approve
//	    rule: /tools/run_command    # optional: the exact rule pointer
//	    message: budget             # optional: a substring of the message
//	    expect_labels: [secret]     # optional: the labels label_if gives ([] for none)
//
// A bare list of cases (without the header) is accepted too. Cases run in order against one
// engine with in-memory counters, so a sequence of cases can use up a budget and then show the
// deny. Args go through JSON with UseNumber, exactly as the pipeline hands them over.
type CaseFile struct {
	Workspace string `yaml:"workspace"`
	Now       string `yaml:"now"`
	Cases     []Case `yaml:"cases"`
}

// Case is one row of a CaseFile.
type Case struct {
	Name     string            `yaml:"name"`
	Tool     string            `yaml:"tool"`
	Args     map[string]any    `yaml:"args"`
	Grant    string            `yaml:"grant"`
	Labels   map[string]string `yaml:"labels"`
	Session  string            `yaml:"session"`
	State    *sessionInput     `yaml:"session_state"`
	Advance  string            `yaml:"advance"`
	Repeat   int               `yaml:"repeat"`
	Rollback bool              `yaml:"rollback"`
	Expect   Verdict           `yaml:"expect"`
	Rule     string            `yaml:"rule"`
	Message  string            `yaml:"message"`
	// ExpectLabels, when set, are the decision's labels exactly (an empty list: none).
	ExpectLabels *[]string `yaml:"expect_labels"`
}

// CaseResult is the outcome of one case; Failure is empty when it passed.
type CaseResult struct {
	Name    string
	Failure string
}

// LoadCases reads a cases file.
func LoadCases(path string) (*CaseFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cases: %w", err)
	}
	return ParseCases(path, data)
}

// ParseCases parses a cases file strictly: unknown keys are errors, so a misspelt "expect" does
// not turn a case into one that always passes.
func ParseCases(name string, data []byte) (*CaseFile, error) {
	var probe yaml.Node
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cf := &CaseFile{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var err error
	if len(probe.Content) == 1 && probe.Content[0].Kind == yaml.SequenceNode {
		err = dec.Decode(&cf.Cases)
	} else {
		err = dec.Decode(cf)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(cf.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", name)
	}
	var errs []error
	for i, c := range cf.Cases {
		where := fmt.Sprintf("%s: case %d (%q)", name, i+1, c.Name)
		if c.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name is required", where))
		}
		if c.Tool == "" {
			errs = append(errs, fmt.Errorf("%s: tool is required", where))
		}
		switch c.Expect {
		case Allow, Deny, Approve:
		default:
			errs = append(errs, fmt.Errorf("%s: expect must be allow, deny or approve, not %q", where, c.Expect))
		}
		if c.Repeat < 0 {
			errs = append(errs, fmt.Errorf("%s: repeat must not be negative", where))
		}
		if c.Advance != "" {
			if d, err := time.ParseDuration(c.Advance); err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("%s: advance %q is not a non-negative Go duration like 1h or 90s", where, c.Advance))
			}
		}
		if _, err := jsonArgs(c.Args); err != nil {
			errs = append(errs, fmt.Errorf("%s: args: %w", where, err))
		}
		if c.State != nil {
			if _, err := c.State.state(); err != nil {
				errs = append(errs, fmt.Errorf("%s: session_state: %w", where, err))
			}
		}
	}
	if cf.Now != "" {
		if _, err := time.Parse(time.RFC3339, cf.Now); err != nil {
			errs = append(errs, fmt.Errorf("%s: now: %w", name, err))
		}
	}
	if cf.Workspace != "" && !strings.HasPrefix(cf.Workspace, "/") {
		errs = append(errs, fmt.Errorf("%s: workspace must be an absolute path", name))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cf, nil
}

// jsonArgs round-trips YAML-decoded args through JSON with UseNumber, the form the pipeline
// passes to Decide.
func jsonArgs(a map[string]any) (map[string]any, error) {
	if a == nil {
		return nil, nil
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// defaultCaseTime is the clock's start for a cases file without "now".
func defaultCaseTime() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// RunCases runs every case of cf against p, in order, with one engine and in-memory counters.
func RunCases(p *Policy, cf *CaseFile) []CaseResult {
	now := defaultCaseTime()
	if cf.Now != "" {
		now, _ = time.Parse(time.RFC3339, cf.Now)
	}
	clock := func() time.Time { return now }
	e := NewEngine(p, NewMemoryCounters(), WithClock(clock), WithWorkspace(cf.Workspace))
	out := make([]CaseResult, 0, len(cf.Cases))
	for _, c := range cf.Cases {
		if c.Advance != "" {
			d, _ := time.ParseDuration(c.Advance)
			now = now.Add(d)
		}
		args, _ := jsonArgs(c.Args)
		req := Request{Tool: c.Tool, Args: args, Grant: Grant{ID: c.Grant, Labels: c.Labels}, Session: c.Session}
		if c.State != nil {
			req.State, _ = c.State.state()
		}
		n := max(c.Repeat, 1)
		res := CaseResult{Name: c.Name}
		for i := 0; i < n; i++ {
			d, r := e.Decide(req)
			if c.Rollback {
				r.Rollback()
			} else {
				r.Commit()
			}
			if f := checkCase(c, d); f != "" {
				if n > 1 {
					f = fmt.Sprintf("call %d of %d: %s", i+1, n, f)
				}
				res.Failure = f
				break
			}
		}
		out = append(out, res)
	}
	return out
}

func checkCase(c Case, d Decision) string {
	var probs []string
	if d.Verdict != c.Expect {
		probs = append(probs, fmt.Sprintf("verdict %s, want %s", d.Verdict, c.Expect))
	}
	if c.Rule != "" && d.Rule != c.Rule {
		probs = append(probs, fmt.Sprintf("rule %s, want %s", d.Rule, c.Rule))
	}
	if c.Message != "" && !strings.Contains(d.Message, c.Message) {
		probs = append(probs, fmt.Sprintf("message %q does not contain %q", d.Message, c.Message))
	}
	if c.ExpectLabels != nil && !slices.Equal(d.Labels, *c.ExpectLabels) {
		probs = append(probs, fmt.Sprintf("labels %q, want %q", d.Labels, *c.ExpectLabels))
	}
	if len(probs) == 0 {
		return ""
	}
	return strings.Join(probs, "; ") + fmt.Sprintf(" (got rule %s, message %q)", d.Rule, d.Message)
}
