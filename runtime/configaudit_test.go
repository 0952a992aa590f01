package runtime

import (
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/pipeline"
)

func TestConfigAuditRotate(t *testing.T) {
	cfg, err := ParseConfig("airlock.yaml", []byte("audit:\n  rotate:\n    max_size: 100Mi\n    daily: true\n    keep: 30\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Audit.Rotate.resolved, (pipeline.RotateConfig{MaxSize: 100 << 20, Daily: true, Keep: 30}); got != want {
		t.Fatalf("audit.rotate = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"audit:\n  rotate:\n    max_size: lots\n", `airlock.yaml:3: audit.rotate.max_size: max_size "lots": want a size of at least 1Mi, such as 100Mi`},
		{"audit:\n  rotate:\n    max_size: 10Ki\n", `audit.rotate.max_size: max_size "10Ki": want a size of at least 1Mi`},
		{"audit:\n  rotate:\n    daily: true\n    keep: -1\n", "airlock.yaml:4: audit.rotate.keep: keep -1: want the number of rotated files to keep, such as 30, or 0 to keep them all"},
		{"audit:\n  rotate:\n    keep: 3\n", "audit.rotate.keep: keep is set but nothing rotates the log: set max_size (such as 100Mi) or daily: true"},
		{"audit:\n  rotate:\n    max_sise: 1Gi\n", "audit.rotate.max_sise: unknown key, did you mean max_size?"},
		{"audit:\n  rotate:\n    daily: sometimes\n", "audit.rotate.daily: want"},
	} {
		_, err := ParseConfig("airlock.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
