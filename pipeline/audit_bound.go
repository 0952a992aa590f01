package pipeline

import (
	"fmt"
	"unicode/utf8"
)

// Bounds on the parts of an audit record a client controls. A record is written for every
// call and fsynced, so without them one call with 11,000 long argument keys wrote a 2.4 MB
// line (its keys, then a schema error per key in the message): a client could fill the audit
// disk, which refuses every later call, and make `audit tail` and log collectors choke.
//
// The bounds are on a string as the record encodes it, quotes excluded: a key of 128 control
// characters is 768 bytes of \u0001 escapes on disk, so counting the decoded bytes would let
// a record grow six times past its bound.
const (
	// MaxRecordArgKeys is how many argument keys a record lists (the first in sorted
	// order); arg_key_count says how many there were.
	MaxRecordArgKeys = 64
	// MaxRecordKeyBytes bounds one argument key, in arg_keys and in error messages.
	MaxRecordKeyBytes = 128
	// MaxRecordMessageBytes bounds the message.
	MaxRecordMessageBytes = 2 << 10
	// MaxRecordNameBytes bounds the tool name, session id, grant and rule (and an egress
	// host, which the sandboxed command chose).
	MaxRecordNameBytes = 256
	// MaxRecordEgress is how many egress connections a record lists (the first ones);
	// egress_count says how many there were.
	MaxRecordEgress = 64
)

// bound caps rec's client-controlled fields; every record goes through it before it is
// written (AuditLog.append), so no path to the log can skip it. It is idempotent. A cut string
// keeps its first bytes (whole characters) and ends in a marker saying how much was cut; with
// the marker it fits its bound.
func (r *Record) bound() {
	if r.ArgKeyCount < len(r.ArgKeys) {
		r.ArgKeyCount = len(r.ArgKeys)
	}
	if len(r.ArgKeys) > MaxRecordArgKeys {
		r.ArgKeys = r.ArgKeys[:MaxRecordArgKeys:MaxRecordArgKeys]
	}
	for i, k := range r.ArgKeys {
		r.ArgKeys[i] = cutString(k, MaxRecordKeyBytes)
	}
	r.Message = cutString(r.Message, MaxRecordMessageBytes)
	for _, s := range []*string{&r.Tool, &r.Session, &r.Grant, &r.Rule} {
		*s = cutString(*s, MaxRecordNameBytes)
	}
	if r.EgressCount < len(r.Egress) {
		r.EgressCount = len(r.Egress)
	}
	if len(r.Egress) > MaxRecordEgress {
		r.Egress = r.Egress[:MaxRecordEgress:MaxRecordEgress]
	}
	// Tool names and labels come from the config and the policy, but a record is bounded
	// whatever produced it.
	for _, list := range []*[]string{&r.SessionTaintedBy, &r.Labels} {
		if len(*list) > MaxRecordSessionNames {
			*list = (*list)[:MaxRecordSessionNames:MaxRecordSessionNames]
		}
		for i, s := range *list {
			(*list)[i] = cutString(s, MaxRecordNameBytes)
		}
	}
	for i := range r.Egress {
		r.Egress[i].Host = cutString(r.Egress[i].Host, MaxRecordNameBytes)
		r.Egress[i].Code = cutString(r.Egress[i].Code, MaxRecordNameBytes)
	}
}

// cutMarker ends a string cut by cutString.
const cutMarker = "…[cut %d bytes]"

// cutString returns s if its JSON encoding (quotes excluded) is at most limit bytes, else
// its longest prefix of whole characters that, followed by a marker with the number of bytes
// cut, encodes in at most limit bytes. Cutting the result again changes nothing.
func cutString(s string, limit int) string {
	if len(s) <= limit/6 || jsonLen(s) <= limit { // no character encodes in more than 6 bytes
		return s
	}
	// The marker encodes as itself, at its longest when it counts len(s) bytes.
	budget := limit - len(fmt.Sprintf(cutMarker, len(s)))
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if budget -= jsonRuneLen(r, size); budget < 0 {
			break
		}
		n += size
	}
	return s[:n] + fmt.Sprintf(cutMarker, len(s)-n)
}

// jsonLen is the length of s as encoding/json writes it, without the quotes.
func jsonLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		n += jsonRuneLen(r, size)
		i += size
	}
	return n
}

// jsonRuneLen is how many bytes encoding/json writes for r, decoded from size bytes: a
// two-byte escape for " \ \n \r \t; a six-byte \u escape for other controls, for the HTML
// characters < > & and for U+2028 and U+2029, and for a byte that is not UTF-8 (\ufffd).
func jsonRuneLen(r rune, size int) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
		return 6
	case r == utf8.RuneError && size == 1:
		return 6
	}
	return size
}
