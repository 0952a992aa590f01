package runc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Cold cgroup migrations. runc puts the container's init into its cgroups by writing the pid
// to cgroup.procs, and the kernel does every such migration under cgroup_threadgroup_rwsem,
// taken for writing. Unless the cgroup hierarchies are mounted with favordynmods, the first
// write after a quiet spell waits for a whole RCU grace period (percpu_down_write ->
// rcu_sync_enter -> synchronize_rcu: about 10 ms on a small VM); writes that come within about
// a grace period of another skip the wait. runc reaches that write some 6 ms after it starts,
// so a lone run, such as every `airlock exec`, would sit through the full grace period there.
//
// Run therefore starts the grace period itself, in the background, as it begins: it writes
// this process's own pid to the cgroup.procs of the cgroup the process is already in, a
// migration that moves nothing, and the grace period elapses while Run writes the bundle and
// runc starts. The write happens only after the file is seen to list this process, so it can
// never move Airlock anywhere; any failure just leaves runc to wait as before.

// startPriming starts the no-op migration in the background unless one is already under way,
// and returns the function that waits for it. Run calls it as it begins and waits before it
// returns, so Close (which waits for runs) also waits for it.
func (b *Backend) startPriming() (wait func()) {
	if !b.priming.CompareAndSwap(false, true) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer b.priming.Store(false)
		procs, err := os.ReadFile("/proc/self/cgroup")
		if err == nil {
			var target string
			if target, err = ownCgroupProcs(string(procs), b.cg); err == nil {
				err = migrateSelf(target, os.Getpid())
			}
		}
		if err != nil {
			b.log.Debug().Err(err).Msg("cgroup migration not primed; runc may wait for an RCU grace period")
		}
	}()
	return func() { <-done }
}

// ownCgroupProcs is the cgroup.procs file of the cgroup this process is in, from the contents
// of /proc/self/cgroup: the v2 cgroup, or on v1 the memory hierarchy's (always mounted; see
// detectCgroups).
func ownCgroupProcs(procSelfCgroup string, cg cgroups) (string, error) {
	for _, line := range strings.Split(procSelfCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		var root string
		switch {
		case cg.v2 && parts[0] == "0" && parts[1] == "":
			root = cgroupRoot
		case !cg.v2 && slices.Contains(strings.Split(parts[1], ","), "memory"):
			root = cg.memory
		}
		if root == "" {
			continue
		}
		p := filepath.Join(root, filepath.Clean(parts[2]), "cgroup.procs")
		if !strings.HasPrefix(p, root+"/") {
			return "", fmt.Errorf("cgroup path %q leaves %s", parts[2], root)
		}
		return p, nil
	}
	return "", errors.New("no memory (v1) or unified (v2) cgroup in /proc/self/cgroup")
}

// migrateSelf writes pid to the cgroup.procs file target, but only if target already lists
// pid: moving a process into the cgroup it is in changes nothing but takes the kernel's
// migration lock.
func migrateSelf(target string, pid int) error {
	f, err := os.Open(target)
	if err != nil {
		return err
	}
	want := strconv.Itoa(pid)
	listed := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() == want {
			listed = true
			break
		}
	}
	err = sc.Err()
	f.Close()
	if err != nil {
		return err
	}
	if !listed {
		return fmt.Errorf("%s does not list this process; not writing to it", target)
	}
	w, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = w.WriteString(want)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}
