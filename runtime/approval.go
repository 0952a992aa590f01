package runtime

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
)

// Approval asks the human through MCP elicitation. For clients on 2026-07-28 or later it uses
// the input-request flow (SEP-2322): a tools/call whose policy verdict is "approve" first
// returns an input-required result holding one elicitation and a signed RequestState; the
// client asks the human and repeats the call with the answer, and the pipeline runs with an
// Approver that reports that answer. Older clients are asked with elicitation/create from the
// pipeline's Approver during the call. Either way the decision, the rollback of reserved units
// and the audit record stay in the pipeline.

// approvalKey names the elicitation in InputRequests / InputResponses.
const approvalKey = "airlock_approval"

// approvalTTL bounds how long a human may take to answer.
const approvalTTL = 10 * time.Minute

// approvalSchema asks for an explicit yes. Accepting the form without ticking approve denies.
var approvalSchema = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"approve": map[string]any{"type": "boolean", "title": "Approve this tool call", "default": false},
	},
	"required": []any{"approve"},
}

// approvals mints and checks RequestState tokens. The token binds the answer to one session,
// grant, tool and argument set, expires, and is single-use, so a client cannot replay an
// approval or attach it to a different call: the RequestState travels through the client, and
// the spec requires servers to sign and verify it.
type approvals struct {
	key  []byte
	mu   sync.Mutex
	used map[string]time.Time // nonce -> expiry
	now  func() time.Time     // guarded by mu; tests move it past approvalTTL
}

func (a *approvals) clock() time.Time {
	a.mu.Lock()
	now := a.now
	a.mu.Unlock()
	return now()
}

func newApprovals() (*approvals, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("approval key: %w", err)
	}
	return &approvals{key: key, used: map[string]time.Time{}, now: time.Now}, nil
}

type approvalState struct {
	Session string `json:"s"`
	Grant   string `json:"g"`
	Tool    string `json:"t"`
	Args    string `json:"a"` // sha256 of the canonical arguments
	Nonce   string `json:"n"`
	Expires int64  `json:"e"`
}

func (a *approvals) mint(session, grant, tool, argsHash string) (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	st := approvalState{Session: session, Grant: grant, Tool: tool, Args: argsHash,
		Nonce: hex.EncodeToString(nonce), Expires: a.clock().Add(approvalTTL).Unix()}
	body, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding.EncodeToString(body)
	return b64 + "." + base64.RawURLEncoding.EncodeToString(a.sign(b64)), nil
}

func (a *approvals) sign(b64 string) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte("airlock-approval-v1\x00" + b64))
	return m.Sum(nil)
}

// redeem checks a token against the call it claims to approve and spends it.
func (a *approvals) redeem(token, session, grant, tool, argsHash string) error {
	b64, sig, ok := strings.Cut(token, ".")
	if !ok {
		return errors.New("malformed approval state")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, a.sign(b64)) {
		return errors.New("approval state was not issued by this server")
	}
	body, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return errors.New("malformed approval state")
	}
	var st approvalState
	if err := json.Unmarshal(body, &st); err != nil {
		return errors.New("malformed approval state")
	}
	now := a.clock()
	switch {
	case now.Unix() > st.Expires:
		return errors.New("the approval request expired; call the tool again")
	case st.Session != session || st.Grant != grant:
		return errors.New("the approval was issued to another session")
	case st.Tool != tool || st.Args != argsHash:
		return errors.New("the approval was issued for a different call (tool or arguments changed)")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for n, exp := range a.used {
		if now.Unix() > exp.Unix() {
			delete(a.used, n)
		}
	}
	if _, spent := a.used[st.Nonce]; spent {
		return errors.New("this approval was already used; call the tool again")
	}
	a.used[st.Nonce] = time.Unix(st.Expires, 0)
	return nil
}

// canonicalArgs decodes arguments leniently (the pipeline's strict decoder runs later and has
// the last word) and hashes their canonical JSON: encoding/json sorts map keys, so the same
// arguments resent with different spacing or key order hash the same.
func canonicalArgs(raw json.RawMessage) (map[string]any, string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return nil, "", false
	}
	canon, err := json.Marshal(m)
	if err != nil {
		return nil, "", false
	}
	sum := sha256.Sum256(canon)
	return m, hex.EncodeToString(sum[:]), true
}

// fixedApprover answers with a decision already taken (the human's answer from the retry).
type fixedApprover struct {
	ok  bool
	err error
}

func (f fixedApprover) Approve(context.Context, pipeline.ApprovalRequest) (bool, error) {
	return f.ok, f.err
}

// errNoElicitation denies an approve_if call from a client that cannot ask its user.
var errNoElicitation = errors.New("approval required, but this MCP client cannot ask its user (no elicitation support)")

// sessionApprover asks through elicitation/create during the call: the way for clients before
// 2026-07-28 that declared elicitation. Any other client is denied (fail closed), as is a call
// the input-request pre-check did not foresee on a newer client.
type sessionApprover struct {
	ss *mcp.ServerSession
	// noElicit asks when the client cannot: the console, or a refusal.
	noElicit pipeline.Approver
}

func (s sessionApprover) Approve(ctx context.Context, req pipeline.ApprovalRequest) (bool, error) {
	if s.ss == nil || !canElicit(s.ss) {
		if s.noElicit != nil {
			return s.noElicit.Approve(ctx, req)
		}
		return false, errNoElicitation
	}
	params, err := approvalParams(req.Tool, req.Args, req.Decision)
	if err != nil {
		return false, err
	}
	res, err := s.ss.Elicit(ctx, params)
	if err != nil {
		return false, fmt.Errorf("asking for approval: %w", err)
	}
	return approved(res), nil
}

// nativeInputRequests reports whether the client speaks 2026-07-28 or later, where input
// requests are part of tools/call. No initialize handshake means such a client, as the SDK
// itself assumes.
func nativeInputRequests(ss *mcp.ServerSession) bool {
	ip := ss.InitializeParams()
	return ip == nil || ip.ProtocolVersion >= "2026-07-28"
}

// canElicit reports whether an older client declared elicitation.
func canElicit(ss *mcp.ServerSession) bool {
	ip := ss.InitializeParams()
	if ip == nil {
		return false
	}
	return ip.Capabilities != nil && ip.Capabilities.Elicitation != nil
}

func approved(res *mcp.ElicitResult) bool {
	if res == nil || res.Action != "accept" {
		return false
	}
	v, _ := res.Content["approve"].(bool)
	return v
}

// approvalParams is the form shown to the human: tool, arguments and the rule that asked. It
// refuses (*unshowableError) a call whose arguments the form cannot show in full.
func approvalParams(tool string, args map[string]any, d policies.Decision) (*mcp.ElicitParams, error) {
	shown, err := showArgs(args)
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("Airlock: approve the call to %s?\n\n%s\n\nArguments (every byte of them):\n%s\n\nRule: %s. Declining denies the call.",
		tool, stripControl(d.Message), shown, d.Rule)
	return &mcp.ElicitParams{Mode: "form", Message: msg, RequestedSchema: approvalSchema}, nil
}

// maxShownArgs caps the arguments an approval prompt shows, rendered. A human approves what
// the prompt shows, so it shows every argument in full; a call beyond this is refused rather
// than shown in part (about 400 lines of code is what a person can still review).
const maxShownArgs = 16 << 10

// unshowableError refuses an approval for arguments the prompt cannot show in full.
type unshowableError struct {
	shown, largest int
	key            string
}

func (e *unshowableError) Error() string {
	return fmt.Sprintf("the approval prompt shows every argument in full, and this call's arguments take %d bytes there, "+
		"over its %d-byte limit (%s alone takes %d): a human cannot review it, so it was not asked. "+
		"Make the change in smaller calls (for write_file: smaller files, since each call replaces the whole file), "+
		"or ask the user to make it themselves", e.shown, maxShownArgs, e.key, e.largest)
}

// showArgs renders the arguments for a human: every key on its own line, shortest values first,
// every value in full. Cutting values (a 2 KiB window of a 5 KiB write_file content) let
// injected text hide after harmless lines, and cutting one JSON document (encoding/json orders
// "content" before "path") hid which file a write goes to; so nothing is cut, and arguments that
// do not fit the prompt are refused with an *unshowableError. Multi-line strings are shown as
// lines; control, invisible and bidirectional formatting characters as \uXXXX escapes and
// invalid UTF-8 as \xNN, so neither a terminal nor a path can display as something else.
func showArgs(args map[string]any) (string, error) {
	type kv struct{ k, v string }
	var items []kv
	for k, v := range args {
		items = append(items, kv{k: escapeInvisible(k), v: showValue(v)})
	}
	sort.Slice(items, func(i, j int) bool {
		if len(items[i].v) != len(items[j].v) {
			return len(items[i].v) < len(items[j].v)
		}
		return items[i].k < items[j].k
	})
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "  %s: %s\n", it.k, it.v)
	}
	if len(items) == 0 {
		b.WriteString("  (none)\n")
	}
	if b.Len() > maxShownArgs {
		last := items[len(items)-1]
		return "", &unshowableError{shown: b.Len(), largest: len(last.v), key: last.k}
	}
	return strings.TrimRight(b.String(), "\n"), nil
}

// showValue renders one argument value. A string with a newline becomes a block of lines under
// a header that gives its size (and says when it does not end in a newline); any other value
// is its JSON.
func showValue(v any) string {
	if s, ok := v.(string); ok && strings.Contains(s, "\n") {
		lines := strings.Split(s, "\n")
		tail := ""
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		} else {
			tail = ", no newline at the end"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d bytes, %d lines%s:", len(s), len(lines), tail)
		for _, l := range lines {
			b.WriteString("\n    | ")
			b.WriteString(escapeInvisible(l))
		}
		return b.String()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return escapeInvisible(fmt.Sprintf("%v", v))
	}
	return escapeInvisible(strings.TrimSuffix(buf.String(), "\n"))
}

// ShowArgs is showArgs for approvers outside this package (the CLI's terminal prompt).
func ShowArgs(args map[string]any) (string, error) { return showArgs(args) }

// escapeInvisible writes every rune that would not show as itself as an escape: control
// characters (ESC, CR, C1; tab stays), Unicode format characters (bidi overrides, zero-width
// spaces), line and paragraph separators, the tag block, and invalid UTF-8 bytes.
func escapeInvisible(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\t':
			b.WriteRune(r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
