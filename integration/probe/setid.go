package main

import (
	"path/filepath"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setidProbes try every file system call that can give a file in dir the setuid or setgid bit,
// with raw syscalls so that no libc fallback hides which call was refused, plus the ordinary
// modes that must keep working (ops ending in "_plain"), a chown to another user and hard links
// of an image binary into dir. Run in a :rw workspace, anything that succeeds with a setuid or
// setgid mode leaves that file on the host.
func setidProbes(dir string) []probe {
	p := func(name string) string { return filepath.Join(dir, name) }
	// plain creates name with an ordinary mode, for the chmod attempts to act on.
	plain := func(name string) string {
		_ = closeFD(unix.Openat(unix.AT_FDCWD, p(name), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o755))
		return p(name)
	}
	fchmod := func(name string, flags int, mode uint32) error {
		fd, err := unix.Open(plain(name), flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Fchmod(fd, mode)
	}
	create := func(name string, flags int, mode uint32) error {
		return closeFD(unix.Openat(unix.AT_FDCWD, p(name), flags|unix.O_WRONLY|unix.O_CLOEXEC, mode))
	}
	atFDCWD := unix.AT_FDCWD // a variable: the negative constant does not convert to uintptr
	str := func(s string) uintptr { b, _ := unix.BytePtrFromString(s); return uintptr(unsafe.Pointer(b)) }
	probes := []probe{
		{"fchmodat_setuid", func() error { return unix.Fchmodat(unix.AT_FDCWD, plain("fchmodat_setuid"), 0o4755, 0) }},
		{"fchmodat_setgid", func() error { return unix.Fchmodat(unix.AT_FDCWD, plain("fchmodat_setgid"), 0o2755, 0) }},
		{"fchmodat_plain", func() error { return unix.Fchmodat(unix.AT_FDCWD, plain("fchmodat_plain"), 0o750, 0) }},
		{"fchmod_setuid", func() error { return fchmod("fchmod_setuid", unix.O_RDONLY, 0o4755) }},
		{"fchmod_setgid", func() error { return fchmod("fchmod_setgid", unix.O_RDONLY, 0o2755) }},
		// An O_PATH descriptor is not a file the kernel lets fchmod act on (EBADF).
		{"fchmod_opath_setuid", func() error { return fchmod("fchmod_opath_setuid", unix.O_PATH, 0o4755) }},
		// chmod through the descriptor's /proc magic link is a path chmod like any other.
		{"fchmodat_procfd_setuid", func() error {
			fd, err := unix.Open(plain("fchmodat_procfd_setuid"), unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), 0o4755, 0)
		}},
		{"openat_create_setuid", func() error { return create("openat_create_setuid", unix.O_CREAT|unix.O_EXCL, 0o4755) }},
		{"openat_create_setgid", func() error { return create("openat_create_setgid", unix.O_CREAT|unix.O_EXCL, 0o2755) }},
		{"openat_create_plain", func() error { return create("openat_create_plain", unix.O_CREAT|unix.O_EXCL, 0o755) }},
		// O_TMPFILE takes its mode from openat too; linkat then gives the file a name.
		{"openat_tmpfile_setuid", func() error {
			fd, err := unix.Openat(unix.AT_FDCWD, dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o4755)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, p("openat_tmpfile_setuid"), unix.AT_SYMLINK_FOLLOW)
		}},
		{"mknodat_setuid", func() error { return unix.Mknodat(unix.AT_FDCWD, p("mknodat_setuid"), unix.S_IFREG|0o4755, 0) }},
		{"mknodat_setgid", func() error { return unix.Mknodat(unix.AT_FDCWD, p("mknodat_setgid"), unix.S_IFREG|0o2755, 0) }},
		{"mknodat_plain", func() error { return unix.Mknodat(unix.AT_FDCWD, p("mknodat_plain"), unix.S_IFREG|0o644, 0) }},
		// openat2 carries its mode in memory, out of the filter's sight: it must not run at all.
		{"openat2_create_setuid", func() error {
			how := unix.OpenHow{Flags: unix.O_CREAT | unix.O_WRONLY | unix.O_CLOEXEC, Mode: 0o4755}
			fd, _, e := unix.Syscall6(unix.SYS_OPENAT2, uintptr(atFDCWD), str(p("openat2_create_setuid")),
				uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
			if e == 0 {
				unix.Close(int(fd))
			}
			return rawErr(e)
		}},
		{"fchmodat2_setuid", func() error {
			_, _, e := unix.Syscall6(unix.SYS_FCHMODAT2, uintptr(atFDCWD), str(plain("fchmodat2_setuid")), 0o4755, 0, 0, 0)
			return rawErr(e)
		}},
		// Giving a file to another user needs CAP_CHOWN, which no sandbox holds (uid 0 included).
		{"chown_other_user", func() error { return unix.Fchownat(unix.AT_FDCWD, plain("chown_other_user"), 1, 1, 0) }},
		// mkdir is not filtered: the kernel drops S_ISUID and S_ISGID from its mode, so this
		// succeeds and the directory has neither bit (the host checks).
		{"mkdirat_setid_mode", func() error { return unix.Mkdirat(unix.AT_FDCWD, p("mkdirat_setid_mode"), 0o6755) }},
		// File capabilities are the other way to make a privileged binary: writing
		// security.capability needs CAP_SETFCAP. (Revision 2, effective, CAP_SETUID permitted.)
		{"setxattr_file_capability", func() error {
			v := []byte{0x01, 0, 0, 0x02, 1 << 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			return unix.Setxattr(plain("setxattr_file_capability"), "security.capability", v, 0)
		}},
		// A hard link to a binary of the image (another mount) fails with EXDEV.
		{"link_image_binary", func() error {
			return unix.Linkat(unix.AT_FDCWD, "/bin/busybox", unix.AT_FDCWD, p("link_image_binary"), 0)
		}},
	}
	return append(probes, legacySetidProbes(p, plain)...)
}
