package integration

// Helpers of the escape suite: /proc and cgroup scans, the probe, tree hashes.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/backends"
	"github.com/airlock-mcp/airlock/sandbox/pool"
	"github.com/rs/zerolog"
)

// escCgroupDirs lists the per-controller directories of cgroup path rel (v1 hybrid and v2).
func escCgroupDirs(rel string) []string {
	var dirs []string
	if fi, err := os.Stat(filepath.Join("/sys/fs/cgroup", rel)); err == nil && fi.IsDir() {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", rel))
	}
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	for _, c := range ctrls {
		p := filepath.Join("/sys/fs/cgroup", c.Name(), rel)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			dirs = append(dirs, p)
		}
	}
	return dirs
}

// escPidsWith lists the pids of escProcessesWith.
func escPidsWith(marker string) []string {
	var pids []string
	for _, p := range escProcessesWith(marker) {
		pid, _, _ := strings.Cut(p, ":")
		pids = append(pids, pid)
	}
	return pids
}

// escProcessesWith lists host processes whose environment or command line contains marker.
func escProcessesWith(marker string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := strconv.Itoa(os.Getpid())
	var found []string
	for _, e := range ents {
		pid := e.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(filepath.Join("/proc", pid, f))
			if err == nil && bytes.Contains(b, []byte(marker)) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
				found = append(found, pid+":"+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return found
}

// escBuildProbe builds integration/probe statically into a fresh 0755 directory.
func escBuildProbe(t *testing.T) string {
	dir := t.TempDir()
	escChmod(t, dir, 0o755)
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "probe"), "./probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	return dir
}

// escProbeAttempt is one JSON line of the probe.
type escProbeAttempt struct {
	Op    string `json:"op"`
	OK    bool   `json:"ok"`
	Errno string `json:"errno"`
	Err   string `json:"err"`
}

func escProbeAttempts(t *testing.T, out []byte) map[string]escProbeAttempt {
	t.Helper()
	m := map[string]escProbeAttempt{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var a escProbeAttempt
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("probe line %q: %v", line, err)
		}
		m[a.Op] = a
	}
	return m
}

func escParseIDs(t *testing.T, out []byte) map[string]int {
	t.Helper()
	var ids map[string]int
	if err := json.Unmarshal(bytes.TrimSpace(out), &ids); err != nil {
		t.Fatalf("probe ids output %q: %v", out, err)
	}
	return ids
}

// escParseStatus reads "Key:\tvalue" lines of /proc/self/status.
func escParseStatus(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.ContainsAny(k, " =") {
			if _, seen := m[k]; !seen {
				m[k] = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// escHashTree maps every path under root to its type, mode, owner, size, content hash or link target.
func escHashTree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d %d", fi.Mode(), st.Uid, st.Gid, fi.Size())
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			desc += " " + hex.EncodeToString(h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("hashing %s: %v", root, err)
	}
	return m
}

func escAssertTreeUnchanged(t *testing.T, root string, before map[string]string) {
	t.Helper()
	after := escHashTree(t, root)
	for p, d := range before {
		if after[p] != d {
			t.Errorf("host %s changed: %q -> %q", filepath.Join(root, p), d, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("host %s appeared", filepath.Join(root, p))
		}
	}
}

func escRandomToken(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func escWriteFile(t *testing.T, p, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	escChmod(t, p, mode)
}

func escChmod(t *testing.T, p string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func escCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func escTruncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func escRegexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// escRegexpFind returns the first submatch of pattern in s, or "".
func escRegexpFind(pattern, s string) string {
	if m := regexp.MustCompile(pattern).FindStringSubmatch(s); len(m) > 1 {
		return m[1]
	}
	return ""
}

// escTCPListener listens on a free port of every IPv4 address of the host until the test
// ends. It returns where a connection could arrive (loopback first, then each other host
// address) and a function that stops the listener and returns the remote address of every
// connection it accepted.
func escTCPListener(t *testing.T) (targets []string, stop func() []string) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	targets = []string{net.JoinHostPort("127.0.0.1", port)}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				targets = append(targets, net.JoinHostPort(ipn.IP.String(), port))
			}
		}
	}
	var mu sync.Mutex
	var accepted []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c.RemoteAddr().String())
			mu.Unlock()
			c.Close()
		}
	}()
	var once sync.Once
	stop = func() []string {
		once.Do(func() {
			time.Sleep(200 * time.Millisecond) // let a queued connection reach Accept
			ln.Close()
			<-done
		})
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(accepted)
	}
	t.Cleanup(func() { stop() })
	return targets, stop
}

// forEachBackend runs fn as a subtest per registered backend (runc, docker, containerd), each
// with the backend opened on a run directory and cgroup parent of its own (named after label)
// and closed, its error reported, once the subtest and all its parallel cases are done, before
// the cleanups fn registered. A backend that cannot open here is unavailable: a skip, or a
// failure under AIRLOCK_REQUIRE_SANDBOX.
func forEachBackend(t *testing.T, label string, fn func(t *testing.T, name string, b sandbox.Backend, o sandbox.OpenOptions)) {
	forBackends(t, label, backends.Default().Names(), fn)
}

// poolVariant is one more backend for the escape suite: runc behind a pool (package pool), so
// that every case a prestarted sandbox can run runs in one, as `airlock serve` runs them.
const poolVariant = "runc-pool"

// registryName is the registry's name of a backend forBackends ran as name.
func registryName(name string) string {
	if name == poolVariant {
		return "runc"
	}
	return name
}

// forEachBackendAndPool is forEachBackend plus poolVariant.
func forEachBackendAndPool(t *testing.T, label string, fn func(t *testing.T, name string, b sandbox.Backend, o sandbox.OpenOptions)) {
	forBackends(t, label, append(backends.Default().Names(), poolVariant), fn)
}

func forBackends(t *testing.T, label string, names []string, fn func(t *testing.T, name string, b sandbox.Backend, o sandbox.OpenOptions)) {
	reg := backends.Default()
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			o := sandbox.OpenOptions{
				StateDir:     testenv.StateDir(),
				RunDir:       t.TempDir(),
				CgroupParent: fmt.Sprintf("airlock-%s-%d-%s", label, os.Getpid(), name),
				Logger:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			}
			b, closeBackend, err := reg.Open(context.Background(), registryName(name), o)
			if err != nil {
				testenv.Unavailable(t, "backend %s: %v", name, err)
			}
			if name == poolVariant {
				p := pool.New(b, pool.Config{Size: 2, Logger: o.Logger})
				closeRunc := closeBackend
				closeBackend = func() error {
					if err := p.Close(); err != nil {
						return err
					}
					return closeRunc()
				}
				b = p
			}
			// Registered after fn's own cleanups, so it runs before them: the suite's
			// leftover checks see the backend closed.
			defer t.Cleanup(func() {
				if err := closeBackend(); err != nil {
					t.Errorf("closing the backend: %v", err)
				}
			})
			fn(t, name, b, o)
		})
	}
}
