package main

import (
	"os"
	"path/filepath"
)

// stateDir is where Airlock keeps images, run bundles and the audit log:
// $AIRLOCK_STATE_DIR, or /var/lib/airlock.
func stateDir() string {
	if d := os.Getenv("AIRLOCK_STATE_DIR"); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return d
	}
	return "/var/lib/airlock"
}
