package runc

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/seccomp"
)

func TestOwnCgroupProcs(t *testing.T) {
	v1 := cgroups{roots: []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"}, memory: "/sys/fs/cgroup/memory"}
	combined := cgroups{memory: "/sys/fs/cgroup/memory,cpuset"}
	v2 := cgroups{v2: true, roots: []string{cgroupRoot}, memory: cgroupRoot}
	for _, c := range []struct {
		name, procSelf string
		cg             cgroups
		want           string // "" = error
	}{
		{"v1 hybrid", "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n0::/\n", v1, "/sys/fs/cgroup/memory/process_api/abc/cgroup.procs"},
		{"v1 root cgroup", "4:memory:/\n", v1, "/sys/fs/cgroup/memory/cgroup.procs"},
		{"v1 combined controllers", "3:cpuset,memory:/user.slice\n", combined, "/sys/fs/cgroup/memory,cpuset/user.slice/cgroup.procs"},
		{"v2", "0::/system.slice/airlock.service\n", v2, "/sys/fs/cgroup/system.slice/airlock.service/cgroup.procs"},
		{"v2 ignores v1 lines", "1:name=systemd:/x\n0::/y\n", v2, "/sys/fs/cgroup/y/cgroup.procs"},
		{"v1 without memory line", "8:pids:/\n0::/\n", v1, ""},
		{"v1 without memory root", "4:memory:/a\n", cgroups{}, ""},
		{"dot-dots stay under the root", "4:memory:/../../etc\n", v1, "/sys/fs/cgroup/memory/etc/cgroup.procs"},
		{"relative path ignored", "4:memory:a/b\n", v1, ""},
		{"empty", "", v2, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ownCgroupProcs(c.procSelf, c.cg)
			if c.want == "" {
				if err == nil {
					t.Fatalf("ownCgroupProcs = %q; want an error", got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ownCgroupProcs = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestMigrateSelfOnlyWhereListed: the pid is written only to a cgroup.procs that already
// lists it, so priming can never move the process.
func TestMigrateSelfOnlyWhereListed(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("1\n22\n333\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := migrateSelf(other, 33); err == nil {
		t.Fatal("migrateSelf wrote to a cgroup.procs that does not list the pid")
	}
	if b, _ := os.ReadFile(other); string(b) != "1\n22\n333\n" {
		t.Fatalf("unlisted cgroup.procs was written: %q", b)
	}
	own := filepath.Join(dir, "own")
	if err := os.WriteFile(own, []byte("1\n22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := migrateSelf(own, 22); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(own); string(b)[:2] != "22" {
		t.Fatalf("listed cgroup.procs not written: %q", b)
	}
}

// TestPrimingMovesNothing: on this host the priming write succeeds and leaves the process in
// exactly the cgroups it was in.
func TestPrimingMovesNothing(t *testing.T) {
	testenv.Runc(t) // root
	cg, err := detectCgroups(cgroupRoot)
	if err != nil {
		testenv.Unavailable(t, "usable cgroups at %s: %v", cgroupRoot, err)
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	target, err := ownCgroupProcs(string(before), cg)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateSelf(target, os.Getpid()); err != nil {
		t.Fatalf("priming %s: %v", target, err)
	}
	after, _ := os.ReadFile("/proc/self/cgroup")
	if string(after) != string(before) {
		t.Fatalf("priming moved the process:\nbefore %s\nafter  %s", before, after)
	}
	if err := migrateSelf(target, 1<<30); err == nil {
		t.Fatalf("wrote pid %s, not listed in %s", strconv.Itoa(1<<30), target)
	}
}

// TestPrewarm: after Prewarm the default filter is compiled and cached (Run gets the same
// shared value), and the OCI configuration encodes.
func TestPrewarm(t *testing.T) {
	Prewarm()
	sc, err := seccomp.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	if err != nil || sc == nil || len(sc.Syscalls) == 0 {
		t.Fatalf("default filter after Prewarm: %v, %v", sc, err)
	}
	again, _ := seccomp.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	if again != sc {
		t.Fatal("Prewarm did not leave the compiled filter cached")
	}
}
