package pipeline

import (
	"fmt"
	"unicode/utf8"
)

// Bounds on the parts of an audit record a client controls. A record is written for every
// call and fsynced, so without them one call with 11,000 long argument keys wrote a 2.4 MB
// line (its keys, then a schema error per key in the message): a client could fill the audit
// disk, which refuses every later call, and make `audit tail` and log collectors choke.
const (
	// MaxRecordArgKeys is how many argument keys a record lists (the first in sorted
	// order); arg_key_count says how many there were.
	MaxRecordArgKeys = 64
	// MaxRecordKeyBytes bounds one argument key, in arg_keys and in error messages.
	MaxRecordKeyBytes = 128
	// MaxRecordMessageBytes bounds the message.
	MaxRecordMessageBytes = 2 << 10
	// MaxRecordNameBytes bounds the tool name, session id, grant and rule.
	MaxRecordNameBytes = 256
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
}

// cutMarker ends a string cut by cutString.
const cutMarker = "…[cut %d bytes]"

// cutString returns s if it is at most limit bytes, else its longest prefix that ends on a
// character boundary and, followed by a marker with the number of bytes cut, fits in limit
// bytes. The result is at most limit bytes, so cutting it again changes nothing.
func cutString(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	// The marker is at its longest when it counts len(s) bytes.
	n := max(limit-len(fmt.Sprintf(cutMarker, len(s))), 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf(cutMarker, len(s)-n)
}
