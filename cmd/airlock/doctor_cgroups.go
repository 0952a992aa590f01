package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cgroupMode is how cgroups are mounted.
type cgroupMode string

const (
	cgroupNone    cgroupMode = "none"
	cgroupV1      cgroupMode = "v1"
	cgroupHybrid  cgroupMode = "hybrid" // v1 controllers plus a cgroup2 tree without them
	cgroupUnified cgroupMode = "v2"
)

// cgroupMount is one cgroup or cgroup2 file system in /proc/self/mountinfo.
type cgroupMount struct {
	Point    string
	V2       bool
	Options  []string // super-block options; for v1 they name the controllers
	ReadOnly bool
}

// cgroupLayout is what parseCgroupMounts found.
type cgroupLayout struct {
	Mode   cgroupMode
	Mounts []cgroupMount
}

// parseCgroupMounts reads /proc/self/mountinfo text. Each line is
// "ID PARENT MAJ:MIN ROOT MOUNTPOINT MOUNTOPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS".
func parseCgroupMounts(mountinfo string) cgroupLayout {
	var l cgroupLayout
	var v1, v2, v2AtRoot bool
	for line := range strings.SplitSeq(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			continue
		}
		var m cgroupMount
		switch g[0] {
		case "cgroup":
			v1 = true
		case "cgroup2":
			v2, m.V2 = true, true
			if f[4] == "/sys/fs/cgroup" {
				v2AtRoot = true
			}
		default:
			continue
		}
		m.Point = unescapeMountinfo(f[4])
		m.Options = strings.Split(g[2], ",")
		m.ReadOnly = slices.Contains(strings.Split(f[5], ","), "ro") || slices.Contains(m.Options, "ro")
		l.Mounts = append(l.Mounts, m)
	}
	switch {
	case v2AtRoot || (v2 && !v1):
		l.Mode = cgroupUnified
	case v1 && v2:
		l.Mode = cgroupHybrid
	case v1:
		l.Mode = cgroupV1
	default:
		l.Mode = cgroupNone
	}
	return l
}

// unescapeMountinfo undoes the octal escapes (\040 for a space...) of mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// neededControllers are the cgroup controllers the runc backend sets limits with.
func neededControllers() []string { return []string{"memory", "pids", "cpu"} }

// controllerMount finds where a v1 controller is mounted, or the v2 mount when the layout is
// unified and controllers lists it (the root's cgroup.controllers).
func controllerMount(l cgroupLayout, controller string, v2Controllers []string) (cgroupMount, bool) {
	for _, m := range l.Mounts {
		if l.Mode == cgroupUnified {
			if m.V2 && slices.Contains(v2Controllers, controller) {
				return m, true
			}
			continue
		}
		if !m.V2 && slices.Contains(m.Options, controller) {
			return m, true
		}
	}
	return cgroupMount{}, false
}

func checkCgroups(env doctorEnv) []checkRow {
	info, err := os.ReadFile(filepath.Join(env.procRoot, "self", "mountinfo"))
	if err != nil {
		return []checkRow{{"cgroups", statusFail, fmt.Sprintf("reading mountinfo: %v", err)}}
	}
	l := parseCgroupMounts(string(info))
	var v2Controllers []string
	row := checkRow{"cgroups", statusOK, ""}
	switch l.Mode {
	case cgroupNone:
		return []checkRow{{"cgroups", statusFail, "no cgroup file system mounted: mount cgroup2 on /sys/fs/cgroup (or boot with systemd)"}}
	case cgroupUnified:
		root := l.Mounts[slices.IndexFunc(l.Mounts, func(m cgroupMount) bool { return m.V2 })].Point
		data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			return []checkRow{{"cgroups", statusFail, fmt.Sprintf("v2 at %s but cgroup.controllers is unreadable: %v", root, err)}}
		}
		v2Controllers = strings.Fields(string(data))
		row.Detail = "v2 (unified) at " + root
	case cgroupV1:
		row.Detail = "v1 (legacy)"
	case cgroupHybrid:
		row.Detail = "hybrid: v1 controllers plus a cgroup2 tree without controllers; runc uses v1"
	}
	rows := []checkRow{row}
	for _, c := range neededControllers() {
		name := "cgroup " + c
		m, ok := controllerMount(l, c, v2Controllers)
		switch {
		case !ok:
			rows = append(rows, checkRow{name, statusFail, fmt.Sprintf("the %s controller is not mounted/enabled: Airlock's %s limit cannot be set; enable it (cgroup_enable=%s on the kernel command line, or mount it)", c, c, c)})
		case m.ReadOnly || !env.writable(m.Point):
			rows = append(rows, checkRow{name, statusFail, fmt.Sprintf("%s is not writable (a read-only cgroup mount, e.g. inside a container): run airlock where it can create cgroups (docker run --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw, or on the host)", m.Point)})
		default:
			rows = append(rows, checkRow{name, statusOK, "mounted and writable at " + m.Point})
		}
	}
	// Memory limits set swap equal to memory (no extra swap); on v1 that needs swap
	// accounting, without which the swap limit cannot be enforced.
	if l.Mode != cgroupUnified {
		if m, ok := controllerMount(l, "memory", nil); ok {
			if _, err := os.Stat(filepath.Join(m.Point, "memory.memsw.limit_in_bytes")); err != nil {
				rows = append(rows, checkRow{"cgroup swap accounting", statusWarn, "memory.memsw.* missing: a sandbox could use swap beyond its memory limit; boot with swapaccount=1"})
			} else {
				rows = append(rows, checkRow{"cgroup swap accounting", statusOK, "memory.memsw.limit_in_bytes present"})
			}
		}
	}
	return rows
}
