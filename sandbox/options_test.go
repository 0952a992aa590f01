package sandbox

import (
	"errors"
	"slices"
	"testing"
)

// TestEgressValidate: network proxy needs a clean absolute socket path, a seccomp profile with
// sockets and room for the forwarder; an egress never goes with network none.
func TestEgressValidate(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		ok   bool
	}{
		{"none", nil, true},
		{"proxy", []Option{WithEgress("/run/airlock/egress.sock")}, true},
		{"proxy unconfined", []Option{WithEgress("/run/airlock/egress.sock"), WithSeccomp(SeccompUnconfined)}, true},
		{"proxy relative socket", []Option{WithEgress("egress.sock")}, false},
		{"proxy unclean socket", []Option{WithEgress("/run/../tmp/egress.sock")}, false},
		{"proxy empty socket", []Option{WithEgress("")}, false},
		{"proxy with the files profile", []Option{WithEgress("/run/airlock/egress.sock"), WithSeccomp(SeccompFiles)}, false},
		{"proxy with too few pids", []Option{WithEgress("/run/airlock/egress.sock"), WithPids(MinPids)}, false},
		{"proxy without egress", []Option{func(s *Spec) error { s.Network = NetworkProxy; return nil }}, false},
		{"egress with none", []Option{WithEgress("/s"), func(s *Spec) error { s.Network = NetworkNone; return nil }}, false},
		{"unknown network", []Option{func(s *Spec) error { s.Network = "host"; return nil }}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(append([]Option{WithArgv("true")}, tt.opts...)...)
			if (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error does not wrap ErrInvalidSpec: %v", err)
			}
			if err == nil && s.Network == NetworkProxy && !slices.Contains(s.Loosened, "network:proxy") {
				t.Errorf("Loosened %v lacks network:proxy", s.Loosened)
			}
		})
	}
}

func TestExitCodeOf(t *testing.T) {
	for _, tc := range []struct {
		code                         int
		timedOut, cancelled, oomKill bool
		want                         int
	}{
		{3, false, false, false, 3},
		{0, false, false, false, 0},
		{0, true, false, false, ExitTimeout},
		{137, true, true, true, ExitTimeout},
		{0, false, true, false, ExitKilled},
		{0, false, false, true, ExitKilled},
		{1, false, false, true, 1},
	} {
		if got := ExitCodeOf(tc.code, tc.timedOut, tc.cancelled, tc.oomKill); got != tc.want {
			t.Errorf("ExitCodeOf(%d, timedOut %v, cancelled %v, oom %v) = %d, want %d", tc.code, tc.timedOut, tc.cancelled, tc.oomKill, got, tc.want)
		}
	}
}
