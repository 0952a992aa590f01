package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// legacySetidOps tries the pre-*at calls that exist on amd64 only (arm64 has just the *at forms).
func legacySetidOps(out map[string]string, p func(string) string, plainFile func(string) string) {
	str := func(s string) uintptr { b, _ := unix.BytePtrFromString(s); return uintptr(unsafe.Pointer(b)) }
	call := func(nr uintptr, a ...uintptr) (uintptr, unix.Errno) {
		var v [3]uintptr
		copy(v[:], a)
		r, _, e := unix.Syscall(nr, v[0], v[1], v[2])
		return r, e
	}
	closeOK := func(r uintptr, e unix.Errno) string {
		if e == 0 {
			unix.Close(int(r))
		}
		return result(e)
	}
	out["chmod_setuid"] = result(pick(call(unix.SYS_CHMOD, str(plainFile("chmod_setuid")), 0o4755)))
	out["chmod_plain"] = result(pick(call(unix.SYS_CHMOD, str(plainFile("chmod_plain")), 0o750)))
	out["creat_setuid"] = closeOK(call(unix.SYS_CREAT, str(p("creat_setuid")), 0o4755))
	out["creat_plain"] = closeOK(call(unix.SYS_CREAT, str(p("creat_plain")), 0o644))
	out["open_create_setgid"] = closeOK(call(unix.SYS_OPEN, str(p("open_create_setgid")), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o2755))
	out["open_create_plain"] = closeOK(call(unix.SYS_OPEN, str(p("open_create_plain")), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644))
	out["mknod_setuid"] = result(pick(call(unix.SYS_MKNOD, str(p("mknod_setuid")), unix.S_IFREG|0o4755, 0)))
}

func pick(_ uintptr, e unix.Errno) error { return e }
