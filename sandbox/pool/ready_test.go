package pool

import "testing"

// TestResultReady checks Result.Ready tells a run in a sandbox the pool kept ready (a hit)
// from one in a sandbox the call prestarted itself (a miss): metrics count the first as a
// warm start and the second as a cold one.
func TestResultReady(t *testing.T) {
	b := &fakeBackend{}
	p := newPool(t, b, Config{Size: 1})
	spec := newSpec(t)
	if res := run(t, p, spec); !res.Warm || res.Ready {
		t.Fatalf("first run (a miss) = Warm %v Ready %v, want a prestarted sandbox that was not kept ready", res.Warm, res.Ready)
	}
	eventually(t, "the filler fills the shape", readyIs(p, 1))
	if res := run(t, p, spec); !res.Warm || !res.Ready {
		t.Fatalf("second run (a hit) = Warm %v Ready %v, want a sandbox kept ready", res.Warm, res.Ready)
	}
	if st := p.Stats(); st.Hits != 1 || st.Misses != 1 {
		t.Errorf("Stats = %+v, want one hit and one miss", st)
	}
}
