// Package flock takes advisory file locks (flock(2)) that survive signals: a lock request
// interrupted by a signal (EINTR, which Go's runtime delivers often) is retried rather than
// reported as a failure to lock.
package flock

import (
	"os"

	"golang.org/x/sys/unix"
)

// Apply applies how (unix.LOCK_EX, LOCK_SH, LOCK_UN, optionally | LOCK_NB) to f; without
// LOCK_NB it blocks until the lock is granted.
func Apply(f *os.File, how int) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := conn.Control(func(fd uintptr) {
		for {
			if ferr = unix.Flock(int(fd), how); ferr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}
