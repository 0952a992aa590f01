package runtime

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/state"
)

// flakyStore is a file store that stops answering when down is set: an outage of a shared
// store, caused on purpose. docsDown fails only its documents (the gateway's pins).
type flakyStore struct {
	state.Store
	down, docsDown atomic.Bool
}

func (f *flakyStore) ReadDoc(ctx context.Context, kind, name string) ([]byte, error) {
	if f.down.Load() || f.docsDown.Load() {
		return nil, errOutage
	}
	return f.Store.ReadDoc(ctx, kind, name)
}

func (f *flakyStore) UpdateDoc(ctx context.Context, kind, name string, fn func([]byte) ([]byte, bool, error)) error {
	if f.down.Load() || f.docsDown.Load() {
		return errOutage
	}
	return f.Store.UpdateDoc(ctx, kind, name, fn)
}

var errOutage = errors.New("connection refused")

func (f *flakyStore) Reserve(k policies.CounterKey, n, max int64) (bool, error) {
	if f.down.Load() {
		return false, errOutage
	}
	return f.Store.Reserve(k, n, max)
}

func (f *flakyStore) Version(ctx context.Context) (string, error) {
	if f.down.Load() {
		return "", errOutage
	}
	return f.Store.Version(ctx)
}

func (f *flakyStore) Control(ctx context.Context) (state.Control, error) {
	if f.down.Load() {
		return state.Control{}, errOutage
	}
	return f.Store.Control(ctx)
}

func withStore(s state.Store) func(*Options) { return func(o *Options) { o.State = s } }

// TestStateDownFailsClosed: while the state store does not answer, no call runs (it may hide a
// kill switch) and no grant token is accepted; when it answers again, calls run.
func TestStateDownFailsClosed(t *testing.T) {
	fs, err := state.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{Store: fs}
	sum := tokenSum("alk_grant-token-for-the-test")
	if err := fs.AddGrant(context.Background(), state.Grant{Name: "alice", TokenSHA256: hex.EncodeToString(sum[:]), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{}
	rt := newTestRuntimeTB(t, "", `{"version": "1", "default": "allow"}`, fb, withStore(store))
	call := pipeline.Call{Tool: "run_command", Args: json.RawMessage(`{"command":"true"}`), Grant: rt.Grant()}
	if res := rt.Run(context.Background(), call); res.IsError {
		t.Fatalf("call with the store up: %+v", res)
	}

	endpoint, _ := serveFront(t, rt)
	withToken := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	if resp := post(t, endpoint, withToken("alk_grant-token-for-the-test")); resp.StatusCode != http.StatusOK {
		t.Fatalf("grant token with the store up: %d", resp.StatusCode)
	}

	store.down.Store(true)
	res := rt.Run(context.Background(), call)
	if !res.Denied || !strings.Contains(res.Text, "(rule /kill)") || !strings.Contains(res.Text, "connection refused") {
		t.Fatalf("call with the store down: %+v; want denied by /kill naming the outage", res)
	}
	if resp := post(t, endpoint, withToken("alk_grant-token-for-the-test")); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("grant token with the store down: %d; want 503", resp.StatusCode)
	}
	store.down.Store(false)
	if res := rt.Run(context.Background(), call); res.IsError {
		t.Fatalf("call with the store back: %+v", res)
	}
	if n := len(fb.runs()); n != 2 {
		t.Fatalf("%d sandbox runs; want 2 (none while the store was down)", n)
	}
}

// TestGrantTokens: a grant's token is its grant; a revoked or expired one, a token of no grant
// and a config token all answer as they should, and revocation holds from the next request.
func TestGrantTokens(t *testing.T) {
	const cfgToken = "0123456789abcdef0123456789abcdef"
	t.Setenv("AIRLOCK_TEST_TOKEN", cfgToken)
	fs, err := state.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	add := func(name, tok string, mutate func(*state.Grant)) {
		sum := tokenSum(tok)
		g := state.Grant{Name: name, TokenSHA256: hex.EncodeToString(sum[:]), Labels: map[string]string{"team": name}, Created: time.Now()}
		if mutate != nil {
			mutate(&g)
		}
		if err := fs.AddGrant(context.Background(), g); err != nil {
			t.Fatal(err)
		}
	}
	add("alice", "alk_alice", nil)
	add("old", "alk_old", func(g *state.Grant) { g.Expires = time.Now().Add(-time.Minute) })
	rt := newTestRuntimeTB(t, "http:\n  tokens:\n    - {token_env: AIRLOCK_TEST_TOKEN, grant: ci}\n", "", &fakeBackend{}, withStore(fs))
	f, err := rt.newHTTPFront("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		header, grant, err string
	}{
		{"Bearer alk_alice", "alice", ""},
		{"Bearer " + cfgToken, "ci", ""},
		{"Bearer alk_old", "", "grant old is expired"},
		{"Bearer alk_nobody", "", "no grant matches the bearer token"},
		{"", "", "send Authorization"},
		{"Basic alk_alice", "", "send Authorization"},
	} {
		g, err := f.authenticate(ctx, tc.header)
		if tc.err == "" && (err != nil || g.ID != tc.grant || g.Labels["team"] != map[string]string{"alice": "alice"}[tc.grant]) {
			t.Errorf("%q: %+v %v; want grant %s", tc.header, g, err, tc.grant)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %+v %v; want an error with %q", tc.header, g, err, tc.err)
		}
	}
	if _, err := fs.RevokeGrant(ctx, "alice", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.authenticate(ctx, "Bearer alk_alice"); err == nil || !strings.Contains(err.Error(), "grant alice is revoked") {
		t.Fatalf("alice's token right after revoke: %v", err)
	}
}

// TestStateDocsDir: the default state directory keeps documents (pins) where they always were,
// $AIRLOCK_STATE_DIR/pins; a directory the config names keeps its own.
func TestStateDocsDir(t *testing.T) {
	base, sd := t.TempDir(), t.TempDir()
	for _, tc := range []struct{ state, want string }{
		{"", filepath.Join(sd, "pins", "u.json")},
		{filepath.Join(sd, "state"), filepath.Join(sd, "pins", "u.json")},
		{filepath.Join(sd, "state") + "/", filepath.Join(sd, "pins", "u.json")},
		{filepath.Join(sd, "other"), filepath.Join(sd, "other", "pins", "u.json")},
		{"state", filepath.Join(base, "state", "pins", "u.json")},
	} {
		c := &Config{State: tc.state}
		if err := c.resolveState(base, sd); err != nil {
			t.Fatal(err)
		}
		st, err := c.OpenState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := st.DocLocation("pins", "u"); got != tc.want {
			t.Errorf("state %q: pins of u at %s, want %s", tc.state, got, tc.want)
		}
		st.Close()
	}
	c := &Config{State: "redis://127.0.0.1:6379/0"}
	if err := c.resolveState(base, sd); err != nil || c.docsDir != "" {
		t.Errorf("redis: documents in %q, %v", c.docsDir, err)
	}
}
