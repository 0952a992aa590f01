package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func int80(nr uintptr) uintptr

// compat reports what an i386 getpid (20) made through int $0x80 gets, as {"compat": ...}:
//
//	"answered N"  the call reached the kernel's 32-bit table (no filter, or Docker's x86
//	              sub-architecture)
//	"no answer"   the filter's bad-arch action killed the calling thread (Airlock: x86_64 only)
//	"SIGSEGV ..." the kernel has no 32-bit syscalls at all (CONFIG_IA32_EMULATION off or
//	              ia32_emulation=0): int $0x80 is a general protection fault
//
// The call runs in a child process (compatChild) so that the last case is reported instead
// of crashing the probe: the Go runtime cannot recover from that fault.
func compat() {
	report := func(s string) { _ = json.NewEncoder(os.Stdout).Encode(map[string]string{"compat": s}) }
	cmd := exec.Command("/proc/self/exe", "compat-child")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var got struct{ Compat string }
	if err == nil && json.Unmarshal(stdout.Bytes(), &got) == nil && got.Compat != "" {
		report(got.Compat)
		return
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		ws, _ := exit.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled() && ws.Signal() == syscall.SIGSEGV,
			ws.Exited() && strings.Contains(stderr.String(), "signal SIGSEGV"):
			report(fmt.Sprintf("SIGSEGV: int $0x80 faults (%s)", firstLine(stderr.String())))
			return
		case ws.Signaled():
			report(fmt.Sprintf("no answer: the child was killed by %v", ws.Signal()))
			return
		}
	}
	report(fmt.Sprintf("error: compat child: %v: stdout %q stderr %q", err, stdout.String(), firstLine(stderr.String())))
}

// compatChild makes the call on a locked thread. A thread the filter kills takes only itself
// (and its P) with it, so main still reports "no answer" after a second.
func compatChild() {
	runtime.GOMAXPROCS(4) // the killed thread takes its P with it; keep others for main
	done := make(chan uintptr, 1)
	go func() {
		runtime.LockOSThread()
		done <- int80(20)
	}()
	select {
	case r := <-done:
		fmt.Printf("{\"compat\":\"answered %d\"}\n", int64(r))
	case <-time.After(time.Second):
		fmt.Println(`{"compat":"no answer"}`)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
