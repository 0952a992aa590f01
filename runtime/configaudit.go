package runtime

import (
	"fmt"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
)

// AuditRotateConfig is audit.rotate: when the writer moves the audit log aside and starts a
// new file whose first record follows the last one of the file before (docs/audit.md).
type AuditRotateConfig struct {
	// MaxSize rotates once the log holds this many bytes (e.g. 100Mi); empty: no limit.
	MaxSize string `yaml:"max_size"`
	// Daily rotates before the first record of a new UTC day.
	Daily bool `yaml:"daily"`
	// Keep is how many rotated files are kept; older ones are removed. 0 keeps all.
	Keep int `yaml:"keep"`

	resolved pipeline.RotateConfig
}

// minAuditRotateSize keeps max_size from rotating at every record: a record is up to a few
// KiB, so anything below this only multiplies files.
const minAuditRotateSize = 1 << 20

func (c *Config) validateAuditRotate() error {
	r := &c.Audit.Rotate
	r.resolved = pipeline.RotateConfig{Daily: r.Daily, Keep: r.Keep}
	if r.MaxSize != "" {
		n, err := sandbox.ParseBytes(r.MaxSize)
		if err != nil || n < minAuditRotateSize {
			return c.errAt(fmt.Sprintf("max_size %q: want a size of at least 1Mi, such as 100Mi (a number with Ki, Mi or Gi)", r.MaxSize), "audit", "rotate", "max_size")
		}
		r.resolved.MaxSize = n
	}
	switch {
	case r.Keep < 0:
		return c.errAt(fmt.Sprintf("keep %d: want the number of rotated files to keep, such as 30, or 0 to keep them all", r.Keep), "audit", "rotate", "keep")
	case r.Keep > 0 && !r.resolved.Daily && r.resolved.MaxSize == 0:
		return c.errAt("keep is set but nothing rotates the log: set max_size (such as 100Mi) or daily: true", "audit", "rotate", "keep")
	}
	return nil
}
