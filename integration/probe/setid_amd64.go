package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// legacySetidProbes are the pre-*at calls, which exist on amd64 only.
func legacySetidProbes(p, plain func(string) string) []probe {
	str := func(s string) uintptr { b, _ := unix.BytePtrFromString(s); return uintptr(unsafe.Pointer(b)) }
	call := func(nr uintptr, a ...uintptr) error {
		var v [3]uintptr
		copy(v[:], a)
		r, _, e := unix.Syscall(nr, v[0], v[1], v[2])
		if e == 0 && (nr == unix.SYS_CREAT || nr == unix.SYS_OPEN) {
			unix.Close(int(r))
		}
		return rawErr(e)
	}
	return []probe{
		{"chmod_setuid", func() error { return call(unix.SYS_CHMOD, str(plain("chmod_setuid")), 0o4755) }},
		{"chmod_plain", func() error { return call(unix.SYS_CHMOD, str(plain("chmod_plain")), 0o750) }},
		{"creat_setuid", func() error { return call(unix.SYS_CREAT, str(p("creat_setuid")), 0o4755) }},
		{"open_create_setgid", func() error {
			return call(unix.SYS_OPEN, str(p("open_create_setgid")), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o2755)
		}},
		{"mknod_setuid", func() error { return call(unix.SYS_MKNOD, str(p("mknod_setuid")), unix.S_IFREG|0o4755, 0) }},
	}
}
