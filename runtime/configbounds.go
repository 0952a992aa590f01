package runtime

import (
	"fmt"
	"time"
)

// Bounds of profile values that can work. A value outside them would pass the config and then
// fail every call of every tool on the profile (or, for a timeout of days, hold a container
// that long), so it is refused when the config is loaded, with the reason and the bound.
const (
	// minMemory is sandbox.Spec.Validate's floor: below it runc cannot start the container.
	minMemory = 4 << 20
	// minPids: the sandbox's init (a Go program with several threads) and a shell take about
	// six; fewer and even `true` fails to start with EAGAIN.
	minPids = 8
	// minCPUs is the kernel's smallest CFS quota (1 ms per 100 ms period).
	minCPUs = 0.01
	maxCPUs = 1024
	// minTimeout: starting and removing a container alone takes tens of milliseconds.
	minTimeout = time.Second
	// maxTimeout: a call holds its container, its cgroup and the agent's request this long.
	maxTimeout = 24 * time.Hour
	// minTmpfs and minOutput: less and /tmp or an error message no longer fits.
	minTmpfs  = 1 << 20
	minOutput = 1 << 10
)

// checkBounds refuses the profile values set in the file that cannot work. Values left out
// keep the built-in defaults, which are within bounds.
func (c *Config) checkBounds(name string, p *Profile) error {
	set := func(key string) bool { return c.has("profiles", name, key) }
	at := func(key, format string, a ...any) error {
		return c.errAt(fmt.Sprintf(format, a...), "profiles", name, key)
	}
	sizes := []struct {
		key, text, why string
		v, min         int64
	}{
		{"memory", p.Memory, "runc and the sandbox's init need that much to start", p.limits.memory, minMemory},
		{"tmpfs", p.Tmpfs, "tools write temporary files and caches to /tmp", p.limits.tmpfs, minTmpfs},
		{"stdout", p.Stdout, "the agent would not see even a short answer", p.limits.stdout, minOutput},
		{"stderr", p.Stderr, "the agent would not see even a short error message", p.limits.stderr, minOutput},
	}
	for _, s := range sizes {
		if set(s.key) && s.v < s.min {
			return at(s.key, "%q is below the minimum of %s: %s", s.text, bytesText(s.min), s.why)
		}
	}
	if set("cpus") && (p.CPUs < minCPUs || p.CPUs > maxCPUs) {
		return at("cpus", "%v is outside %v..%d cores (the kernel's smallest quota is a hundredth of a core; 0.5 is half a core)", p.CPUs, minCPUs, maxCPUs)
	}
	if set("pids") && p.Pids < minPids {
		return at("pids", "%d is below the minimum of %d: the sandbox's init and a shell need about 6 processes and threads before the command starts", p.Pids, minPids)
	}
	if d := time.Duration(p.Timeout); set("timeout") && (d < minTimeout || d > maxTimeout) {
		return at("timeout", "%s is outside %s..%s: a shorter one kills the command while its container starts, a longer one holds the container and the agent's call that long", d, minTimeout, maxTimeout)
	}
	return nil
}

// bytesText writes a size the way configs do (4Mi, 1Ki).
func bytesText(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return fmt.Sprint(n)
}
