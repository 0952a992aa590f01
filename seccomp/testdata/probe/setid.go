package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setidOps tries every way a process can give a file the setuid or setgid bit through a file
// system call, in dir, with raw syscalls (so no libc fallback hides which call was refused),
// next to the same calls with an ordinary mode. It records each outcome in out, and under
// "setid_left" the files that ended up with either bit ("none" if no file did).
func setidOps(out map[string]string, dir string) {
	p := func(name string) string { return filepath.Join(dir, name) }
	plainFile := func(name string) string {
		fd, err := unix.Openat(unix.AT_FDCWD, p(name), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o755)
		if err == nil {
			unix.Close(fd)
		}
		return p(name)
	}

	for _, c := range []struct {
		op   string
		mode uint32
	}{{"fchmodat_setuid", 0o4755}, {"fchmodat_setgid", 0o2755}, {"fchmodat_plain", 0o755}, {"fchmodat_sticky", 0o1755}} {
		out[c.op] = result(unix.Fchmodat(unix.AT_FDCWD, plainFile(c.op), c.mode, 0))
	}
	for _, c := range []struct {
		op   string
		mode uint32
	}{{"fchmod_setuid", 0o4755}, {"fchmod_setgid", 0o2755}, {"fchmod_plain", 0o700}} {
		fd, err := unix.Open(plainFile(c.op), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			out[c.op] = "open: " + result(err)
			continue
		}
		out[c.op] = result(unix.Fchmod(fd, c.mode))
		unix.Close(fd)
	}
	for _, c := range []struct {
		op   string
		mode uint32
	}{{"openat_create_setuid", 0o4755}, {"openat_create_setgid", 0o2755}, {"openat_create_plain", 0o644}} {
		fd, err := unix.Openat(unix.AT_FDCWD, p(c.op), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, c.mode)
		out[c.op] = result(err)
		if err == nil {
			unix.Close(fd)
		}
	}
	// O_TMPFILE takes its mode from openat too; linkat would then give the file a name.
	fd, err := unix.Openat(unix.AT_FDCWD, dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o4755)
	out["openat_tmpfile_setuid"] = result(err)
	if err == nil {
		unix.Close(fd)
	}
	for _, c := range []struct {
		op   string
		mode uint32
	}{{"mknodat_setuid", unix.S_IFREG | 0o4755}, {"mknodat_setgid", unix.S_IFREG | 0o2755}, {"mknodat_plain", unix.S_IFREG | 0o644}} {
		out[c.op] = result(unix.Mknodat(unix.AT_FDCWD, p(c.op), c.mode, 0))
	}

	// The newer calls return ENOSYS, whatever their mode.
	atFDCWD := unix.AT_FDCWD // a variable: the negative constant does not convert to uintptr
	how := unix.OpenHow{Flags: unix.O_CREAT | unix.O_WRONLY | unix.O_CLOEXEC, Mode: 0o4755}
	path, _ := unix.BytePtrFromString(p("openat2_create_setuid"))
	r, _, e := unix.Syscall6(unix.SYS_OPENAT2, uintptr(atFDCWD), uintptr(unsafe.Pointer(path)),
		uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
	out["openat2_create_setuid"] = result(e)
	if e == 0 {
		unix.Close(int(r))
	}
	path, _ = unix.BytePtrFromString(plainFile("fchmodat2_setuid"))
	_, _, e = unix.Syscall6(unix.SYS_FCHMODAT2, uintptr(atFDCWD), uintptr(unsafe.Pointer(path)), 0o4755, 0, 0, 0)
	out["fchmodat2_setuid"] = result(e)

	legacySetidOps(out, p, plainFile)

	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			left = append(left, e.Name())
		}
	}
	sort.Strings(left)
	out["setid_left"] = "none"
	if len(left) > 0 {
		out["setid_left"] = strings.Join(left, ",")
	}
}
