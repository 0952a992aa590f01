package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func manyKeys(n, width int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%0*d", width-1, i)
	}
	return keys
}

func TestRecordBound(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes, two per character
	cases := []struct {
		name      string
		in        Record
		wantKeys  []string
		wantCount int
		check     func(t *testing.T, r Record)
	}{
		{name: "small record unchanged", in: Record{Tool: "echo", Session: "s1", ArgKeys: []string{"a", "b"}, Message: "ok"},
			wantKeys: []string{"a", "b"}, wantCount: 2},
		{name: "no keys, no count", in: Record{ArgKeys: []string{}}, wantKeys: []string{}, wantCount: 0},
		{name: "keys at the cap", in: Record{ArgKeys: manyKeys(MaxRecordArgKeys, 6)},
			wantKeys: manyKeys(MaxRecordArgKeys, 6), wantCount: MaxRecordArgKeys},
		{name: "11,000 keys keep the first 64 and the count", in: Record{ArgKeys: manyKeys(11000, 6)},
			wantKeys: manyKeys(11000, 6)[:MaxRecordArgKeys], wantCount: 11000},
		{name: "count already set is kept", in: Record{ArgKeys: manyKeys(3, 2), ArgKeyCount: 500},
			wantKeys: manyKeys(3, 2), wantCount: 500},
		{name: "long key cut with a marker", in: Record{ArgKeys: []string{strings.Repeat("k", 100000)}}, wantCount: 1,
			check: func(t *testing.T, r Record) {
				k := r.ArgKeys[0]
				if len(k) > MaxRecordKeyBytes || !strings.HasPrefix(k, "kkkk") || !strings.HasSuffix(k, "bytes]") {
					t.Errorf("key = %q (%d bytes), want a prefix of at most %d bytes ending in the cut marker", k, len(k), MaxRecordKeyBytes)
				}
			}},
		{name: "long message cut on a character boundary", in: Record{Message: long},
			check: func(t *testing.T, r Record) {
				if len(r.Message) > MaxRecordMessageBytes || !utf8.ValidString(r.Message) || !strings.HasPrefix(r.Message, "éé") {
					t.Errorf("message = %d bytes, valid UTF-8 %v, want at most %d bytes of whole characters", len(r.Message), utf8.ValidString(r.Message), MaxRecordMessageBytes)
				}
				if cut := len(long) - strings.Index(r.Message, "…"); !strings.HasSuffix(r.Message, fmt.Sprintf("[cut %d bytes]", cut)) {
					t.Errorf("message ends %q, want it to say %d bytes were cut", r.Message[len(r.Message)-30:], cut)
				}
			}},
		{name: "tool, session, grant and rule cut", in: Record{Tool: long, Session: long, Grant: long, Rule: long},
			check: func(t *testing.T, r Record) {
				for name, s := range map[string]string{"tool": r.Tool, "session": r.Session, "grant": r.Grant, "rule": r.Rule} {
					if len(s) > MaxRecordNameBytes || !strings.Contains(s, "[cut ") {
						t.Errorf("%s = %d bytes, want at most %d with the cut marker", name, len(s), MaxRecordNameBytes)
					}
				}
			}},
		{name: "server fields untouched", in: Record{Image: long, ContainerID: long},
			check: func(t *testing.T, r Record) {
				if r.Image != long || r.ContainerID != long {
					t.Error("bound cut a field Airlock itself sets")
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.in
			r.ArgKeys = slices.Clone(tc.in.ArgKeys)
			r.bound()
			if tc.wantKeys != nil && !slices.Equal(r.ArgKeys, tc.wantKeys) {
				t.Errorf("arg_keys = %d keys %.80q, want %d %.80q", len(r.ArgKeys), r.ArgKeys, len(tc.wantKeys), tc.wantKeys)
			}
			if r.ArgKeyCount != tc.wantCount {
				t.Errorf("arg_key_count = %d, want %d", r.ArgKeyCount, tc.wantCount)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			again := r
			again.ArgKeys = slices.Clone(r.ArgKeys)
			again.bound()
			a, _ := json.Marshal(r)
			b, _ := json.Marshal(again)
			if !bytes.Equal(a, b) {
				t.Errorf("bound is not idempotent:\n%s\n%s", a, b)
			}
		})
	}
}

func TestCutString(t *testing.T) {
	inputs := []string{"", "short", strings.Repeat("x", 200), strings.Repeat("€", 100), "a" + strings.Repeat("\U0001F600", 50),
		strings.Repeat("\x01<", 100), strings.Repeat(`"\`, 100), strings.Repeat("\u2028\n&", 50), "ok" + strings.Repeat("\xff", 100)}
	for _, s := range inputs {
		enc, _ := json.Marshal(s)
		if got, want := jsonLen(s), len(enc)-2; got != want {
			t.Errorf("jsonLen(%.40q) = %d, encoding/json writes %d", s, got, want)
		}
		for _, limit := range []int{0, 1, 5, 20, 21, 22, 64, 128} {
			got := cutString(s, limit)
			prefix, _, cut := strings.Cut(got, "…[cut ")
			genc, _ := json.Marshal(got)
			switch {
			case jsonLen(s) <= limit && got != s:
				t.Errorf("cutString(%.40q, %d) = %q, want it unchanged", s, limit, got)
			case jsonLen(s) > limit && (!cut || !strings.HasPrefix(s, prefix)):
				t.Errorf("cutString(%.40q, %d) = %q, want a prefix and the marker", s, limit, got)
			case jsonLen(s) > limit && limit >= len(fmt.Sprintf(cutMarker, len(s))) && len(genc)-2 > limit:
				t.Errorf("cutString(%.40q, %d) encodes in %d bytes, over the limit", s, limit, len(genc)-2)
			case utf8.ValidString(s) && !utf8.ValidString(got):
				t.Errorf("cutString(%.40q, %d) = %q splits a character", s, limit, got)
			case cutString(got, limit) != got && limit >= len(fmt.Sprintf(cutMarker, len(s))):
				t.Errorf("cutString(cutString(%.40q, %d)) cut again", s, limit)
			}
		}
	}
}

// A record written before arg_key_count existed has no such field; it must still verify, and
// so must a new record with the field, next to it in one chain.
func TestAuditOldRecordsWithoutArgKeyCountVerify(t *testing.T) {
	old := testRecord(0)
	old.PrevHash = GenesisHash
	canon, err := old.canonical()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(canon, []byte("arg_key_count")) {
		t.Fatalf("a record without a count encodes one: %s", canon)
	}
	old.Hash = chainHash(GenesisHash, canon)
	line, _ := json.Marshal(old)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, append(line, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatalf("a log of old records refused: %v", err)
	}
	if err := l.Append(testRecord(1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, _ := os.ReadFile(path)
	if got := bytes.Count(b, []byte(`"arg_key_count":1,`)); got != 1 {
		t.Errorf("arg_key_count written %d times, want once (new record only):\n%s", got, b)
	}
	if rep := verifyFile(t, path); !rep.Intact() || rep.Records != 2 {
		t.Fatalf("old record followed by a new one: %+v", rep)
	}
}

func manyKeyArgs(n int, key func(i int) string) string {
	var b strings.Builder
	b.WriteString(`{"text":"a"`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `,"%s":1`, key(i))
	}
	b.WriteString("}")
	return b.String()
}

// TestRunRecordBoundedForManyKeys: one call with 11,000 long keys (935 KB of arguments, under
// the 1 MiB cap) wrote a 2.4 MB record before records were bounded. The bounds count encoded
// bytes, so keys whose every character becomes a six-byte escape stay small too.
func TestRunRecordBoundedForManyKeys(t *testing.T) {
	cases := []struct {
		name     string
		args     string
		wantKeys int
		wantKey0 string
	}{
		{name: "11,000 long keys", args: manyKeyArgs(11000, func(i int) string { return fmt.Sprintf("key-%05d-%s", i, strings.Repeat("x", 70)) }),
			wantKeys: 11001, wantKey0: "key-00000-" + strings.Repeat("x", 70)},
		{name: "keys of escapes", args: manyKeyArgs(2000, func(i int) string { return fmt.Sprintf("%05d%s", i, strings.Repeat(`\u0001<`, 60)) }),
			wantKeys: 2001, wantKey0: "00000\x01<\x01<"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			res := e.run("echo", tc.args)
			if !res.IsError || !strings.Contains(res.Text, "property is not allowed") {
				t.Fatalf("Run = %.300s, want the extra keys refused", res.Text)
			}
			fi, err := os.Stat(e.audit)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("arguments %d bytes; audit record %d bytes; agent text %d bytes", len(tc.args), fi.Size(), len(res.Text))
			if fi.Size() > 16<<10 {
				t.Errorf("audit record is %d bytes, want at most 16 KiB whatever the client sends", fi.Size())
			}
			if len(res.Text) > 16<<10 {
				t.Errorf("agent text is %d bytes, want the list of errors bounded", len(res.Text))
			}
			rec := e.last(t)
			if rec.ArgKeyCount != tc.wantKeys || len(rec.ArgKeys) != MaxRecordArgKeys || !strings.HasPrefix(rec.ArgKeys[0], tc.wantKey0) {
				t.Errorf("arg_key_count %d, %d arg_keys starting %q; want %d and the first %d in order", rec.ArgKeyCount, len(rec.ArgKeys), rec.ArgKeys[0], tc.wantKeys, MaxRecordArgKeys)
			}
		})
	}
}
