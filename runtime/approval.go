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
	now  func() time.Time
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
		Nonce: hex.EncodeToString(nonce), Expires: a.now().Add(approvalTTL).Unix()}
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
	now := a.now()
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
}

func (s sessionApprover) Approve(ctx context.Context, req pipeline.ApprovalRequest) (bool, error) {
	if s.ss == nil || !canElicit(s.ss) {
		return false, errNoElicitation
	}
	res, err := s.ss.Elicit(ctx, approvalParams(req.Tool, req.Args, req.Decision))
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

// approvalParams is the form shown to the human: tool, arguments and the rule that asked.
func approvalParams(tool string, args map[string]any, d policies.Decision) *mcp.ElicitParams {
	msg := fmt.Sprintf("Airlock: approve the call to %s?\n\n%s\n\nArguments:\n%s\n\nRule: %s. Declining denies the call.",
		tool, stripControl(d.Message), showArgs(args), d.Rule)
	return &mcp.ElicitParams{Mode: "form", Message: msg, RequestedSchema: approvalSchema}
}

// Caps on what the approval form shows of the arguments.
const (
	maxShownValue = 2 << 10
	maxShownTotal = 8 << 10
)

// showArgs renders the arguments for a human, every key on its own line, shortest values first.
// Cutting one JSON document at a byte count (as encoding/json orders keys, "content" before
// "path") let a write_file with 4 KiB of padding hide which file it writes: the human approved
// a path never shown. Each value is capped on its own and says how much was left out, and the
// short ones (paths, flags) come first so they are always on screen. Invisible and
// bidirectional formatting characters are shown as escapes, so a path cannot display as
// another.
func showArgs(args map[string]any) string {
	type kv struct{ k, v string }
	var items []kv
	for k, v := range args {
		b, err := json.Marshal(v)
		if err != nil {
			b = []byte(fmt.Sprintf("%v", v))
		}
		items = append(items, kv{k: visible(k), v: visible(string(b))})
	}
	sort.Slice(items, func(i, j int) bool {
		if len(items[i].v) != len(items[j].v) {
			return len(items[i].v) < len(items[j].v)
		}
		return items[i].k < items[j].k
	})
	var b strings.Builder
	for i, it := range items {
		v := it.v
		if len(v) > maxShownValue {
			v = strings.ToValidUTF8(v[:maxShownValue], "") + fmt.Sprintf(" … (%d of %d bytes shown)", maxShownValue, len(it.v))
		}
		line := fmt.Sprintf("  %s: %s\n", it.k, v)
		if b.Len()+len(line) > maxShownTotal {
			var rest []string
			for _, r := range items[i:] {
				rest = append(rest, r.k)
			}
			fmt.Fprintf(&b, "  … not shown (too long): %s\n", strings.Join(rest, ", "))
			break
		}
		b.WriteString(line)
	}
	if len(items) == 0 {
		b.WriteString("  (none)\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// ShowArgs is showArgs for approvers outside this package (the CLI's terminal prompt).
func ShowArgs(args map[string]any) string { return showArgs(args) }

// visible strips terminal control bytes and writes Unicode format characters (bidi overrides,
// zero-width joiners and spaces) and line separators as \uXXXX escapes.
func visible(s string) string {
	s = stripControl(s)
	var b strings.Builder
	for _, r := range s {
		if unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) || (unicode.IsControl(r) && r != '\t' && r != '\n') {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
