package state_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/state"
	"github.com/airlock-mcp/airlock/state/statetest"
)

func TestFileStore(t *testing.T) {
	statetest.Run(t, func(t *testing.T) func() state.Store {
		dir := filepath.Join(t.TempDir(), "state")
		return func() state.Store {
			s, err := state.OpenFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

// A damaged file fails closed: it is not read as "no kill switches" or "budgets unused".
func TestFileStoreDamaged(t *testing.T) {
	dir := t.TempDir()
	s, err := state.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := time.Now().UTC().Truncate(time.Hour)
	k := policies.CounterKey{Counter: "c", Scope: "policy", Window: w, End: w.Add(time.Hour)}
	if ok, err := s.Reserve(k, 1, 1); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "counters.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reserve(k, 1, 5); ok || err == nil || !strings.Contains(err.Error(), "counters.json is damaged") {
		t.Fatalf("reserve with damaged counters: %v %v", ok, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "control.json"), []byte("[]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Control(t.Context()); err == nil || !strings.Contains(err.Error(), "control.json is damaged") {
		t.Fatalf("control with a damaged file: %v", err)
	}
	if _, err := state.OpenFile(dir); err == nil {
		t.Fatal("OpenFile accepted a damaged control.json")
	}
}

// Budgets outlive the process: a new handle (a restarted server) sees the units spent.
func TestFileStoreCountersPersist(t *testing.T) {
	dir := t.TempDir()
	s, _ := state.OpenFile(dir)
	w := time.Now().UTC().Truncate(time.Hour)
	k := policies.CounterKey{Counter: "c", Scope: "grant", Subject: "a", Window: w, End: w.Add(time.Hour)}
	if ok, _ := s.Reserve(k, 2, 2); !ok {
		t.Fatal("first reservation refused")
	}
	s2, _ := state.OpenFile(dir)
	if ok, err := s2.Reserve(k, 1, 2); ok || err != nil {
		t.Fatalf("after a restart the spent budget was given again: %v %v", ok, err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state directory mode %v; want 0700", st.Mode().Perm())
	}
}
