package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a helper ended the test; like the real ones, its
// Fatalf and Skip stop the helper (by a panic that call recovers).
type recorder struct {
	testing.TB
	failed, skipped string
}

type stopped struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, a ...any) {
	r.failed = fmt.Sprintf(format, a...)
	panic(stopped{})
}
func (r *recorder) Skip(a ...any) { r.skipped = fmt.Sprint(a...); panic(stopped{}) }
func (r *recorder) Skipf(format string, a ...any) {
	r.skipped = fmt.Sprintf(format, a...)
	panic(stopped{})
}

func (r *recorder) call(helper func(testing.TB, string, ...any), format string, a ...any) {
	defer func() {
		if p := recover(); p != nil && p != (stopped{}) {
			panic(p)
		}
	}()
	helper(r, format, a...)
}

// TestMissingSandboxFailsMissingSurfaceSkips: under AIRLOCK_REQUIRE_SANDBOX=1 a capability the
// sandbox promises must fail when absent, while a host without the attacked surface stays a
// loud skip; without it both skip.
func TestMissingSandboxFailsMissingSurfaceSkips(t *testing.T) {
	cases := []struct {
		name, require string
		helper        func(testing.TB, string, ...any)
		wantFail      bool
		wantPrefix    string
	}{
		{"unavailable, required", "1", Unavailable, true, "AIRLOCK_REQUIRE_SANDBOX=1 but "},
		{"unavailable, not required", "", Unavailable, false, "SKIPPED, capability missing: "},
		{"not applicable, required", "1", NotApplicable, false, "NOT APPLICABLE: "},
		{"not applicable, not required", "", NotApplicable, false, "NOT APPLICABLE: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("AIRLOCK_REQUIRE_SANDBOX", c.require)
			r := &recorder{TB: t}
			r.call(c.helper, "no %s here", "thing")
			if r.failed == "" && r.skipped == "" {
				t.Fatal("the helper returned: the test would go on without what it needs")
			}
			got := r.skipped
			if c.wantFail {
				got = r.failed
				if r.skipped != "" {
					t.Errorf("also skipped: %q", r.skipped)
				}
			} else if r.failed != "" {
				t.Errorf("failed: %q, want a skip", r.failed)
			}
			if !strings.HasPrefix(got, c.wantPrefix) || !strings.HasSuffix(got, "no thing here") {
				t.Errorf("message %q, want %q + the reason", got, c.wantPrefix)
			}
		})
	}
}
