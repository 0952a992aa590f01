package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// checkRunc reports the runc binary, its version and whether it was built with seccomp.
func checkRunc(ctx context.Context, env doctorEnv) []checkRow {
	path, err := env.runc()
	if err != nil {
		return []checkRow{
			{"runc", statusFail, err.Error()},
			{"runc seccomp", statusFail, "no runc to ask"},
		}
	}
	var rows []checkRow
	out, err := env.command(ctx, path, "--version")
	if err != nil {
		rows = append(rows, checkRow{"runc", statusFail, fmt.Sprintf("%s: %v", path, err)})
	} else if v, err := parseRuncVersion(string(out)); err != nil {
		rows = append(rows, checkRow{"runc", statusFail, fmt.Sprintf("%s: %v", path, err)})
	} else {
		st, why := runcVersionStatus(v)
		rows = append(rows, checkRow{"runc", st, fmt.Sprintf("%s %s: %s", path, v, why)})
	}
	out, err = env.command(ctx, path, "features")
	if err != nil {
		return append(rows, checkRow{"runc seccomp", statusFail, fmt.Sprintf("runc features: %v; Airlock needs runc 1.1+ built with libseccomp (make setup)", err)})
	}
	return append(rows, runcSeccompRow(out))
}

// runcFeatures is the part of `runc features` the doctor reads.
type runcFeatures struct {
	Linux struct {
		Seccomp *struct {
			Enabled *bool `json:"enabled"`
		} `json:"seccomp"`
	} `json:"linux"`
	Annotations map[string]string `json:"annotations"`
}

func runcSeccompRow(featuresJSON []byte) checkRow {
	var f runcFeatures
	if err := json.Unmarshal(featuresJSON, &f); err != nil {
		return checkRow{"runc seccomp", statusFail, fmt.Sprintf("runc features printed invalid JSON (%v)", err)}
	}
	if f.Linux.Seccomp == nil || f.Linux.Seccomp.Enabled == nil || !*f.Linux.Seccomp.Enabled {
		// Without seccomp support runc would refuse (or, older versions, ignore) the profile;
		// Airlock never runs a tool without its filter by accident.
		return checkRow{"runc seccomp", statusFail, "runc was built without seccomp: rebuild it with libseccomp (apt-get install libseccomp-dev; make setup)"}
	}
	lib := f.Annotations["io.github.seccomp.libseccomp.version"]
	if lib == "" {
		return checkRow{"runc seccomp", statusOK, "enabled"}
	}
	return checkRow{"runc seccomp", statusOK, "enabled, libseccomp " + lib}
}

// semver is a parsed runc version. pre is the pre-release ("rc.3"), empty for a release.
type semver struct {
	major, minor, patch int
	pre                 string
}

func (v semver) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch)
	if v.pre != "" {
		s += "-" + v.pre
	}
	return s
}

// compare orders versions; a pre-release sorts before its release, and "rc.N" pre-releases
// compare by N.
func (v semver) compare(o semver) int {
	for _, d := range []int{v.major - o.major, v.minor - o.minor, v.patch - o.patch} {
		if d != 0 {
			return d
		}
	}
	switch {
	case v.pre == o.pre:
		return 0
	case v.pre == "":
		return 1
	case o.pre == "":
		return -1
	}
	a, errA := strconv.Atoi(strings.TrimPrefix(v.pre, "rc."))
	b, errB := strconv.Atoi(strings.TrimPrefix(o.pre, "rc."))
	if errA == nil && errB == nil {
		return a - b
	}
	return strings.Compare(v.pre, o.pre)
}

// parseRuncVersion reads the first line of `runc --version`: "runc version 1.5.2" (possibly
// "1.2.8+dev" or "1.4.0-rc.3").
func parseRuncVersion(out string) (semver, error) {
	line, _, _ := strings.Cut(out, "\n")
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "runc version ")
	if !ok {
		return semver{}, fmt.Errorf("unexpected `runc --version` output %q", line)
	}
	return parseSemver(strings.TrimSpace(rest))
}

func parseSemver(s string) (semver, error) {
	core, _, _ := strings.Cut(s, "+") // build metadata does not order versions
	core, pre, _ := strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return semver{}, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return semver{}, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", s)
		}
		n[i] = v
	}
	return semver{n[0], n[1], n[2], pre}, nil
}

// runcVersionStatus judges a runc version against the November 2025 container-breakout fixes
// (CVE-2025-31133, CVE-2025-52565, CVE-2025-52881: races that redirect runc's writes to /proc
// and /dev via malicious mounts), released in 1.2.8, 1.3.3 and 1.4.0-rc.3. Anything before
// 1.2.8 fails: an image or a tool could take over the host. A 1.3.x or 1.4.0 pre-release
// without the fixes warns, so the operator upgrades.
func runcVersionStatus(v semver) (checkStatus, string) {
	const cves = "CVE-2025-31133, CVE-2025-52565, CVE-2025-52881"
	fixed128 := semver{1, 2, 8, ""}
	switch {
	case v.compare(semver{1, 1, 12, ""}) < 0:
		// CVE-2024-21626 ("Leaky Vessels"): a file descriptor to the host's cgroup directory leaks
		// into the container, and a workdir of /proc/self/fd/N gives the command the host's root.
		return statusFail, "older than 1.1.12, vulnerable to CVE-2024-21626 (host file system through a leaked descriptor) and to the 2025 breakouts (" + cves + "): upgrade to 1.2.8+, 1.3.3+ or later (make setup)"
	case v.compare(fixed128) < 0:
		return statusFail, "older than 1.2.8, vulnerable to container breakouts (" + cves + "): upgrade to 1.2.8+, 1.3.3+ or later (make setup)"
	case v.major == 1 && v.minor == 3 && v.compare(semver{1, 3, 3, ""}) < 0:
		return statusWarn, "1.3.x before 1.3.3 lacks the fixes for " + cves + ": upgrade to 1.3.3+ (make setup)"
	case v.major == 1 && v.minor == 4 && v.patch == 0 && v.pre != "" && v.compare(semver{1, 4, 0, "rc.3"}) < 0:
		return statusWarn, "1.4.0 pre-release before rc.3 lacks the fixes for " + cves + ": upgrade (make setup)"
	}
	return statusOK, "has the fixes for " + cves
}
