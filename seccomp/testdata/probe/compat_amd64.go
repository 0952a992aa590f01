package main

import (
	"fmt"
	"runtime"
	"time"
)

func int80(nr uintptr) uintptr

// compat makes the i386 getpid (20) through int $0x80 on a locked thread. Airlock's filter
// lists only x86_64, so the kernel's bad-arch action kills that thread and no answer comes;
// without a filter (or with Docker's x86 sub-architecture) getpid answers.
func compat() {
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
