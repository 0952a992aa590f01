package images

import (
	"io/fs"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Identity files shared by every image. uid/gid 65534 is the sandbox's default user; its home is
// /tmp because that is the only writable place in a sandbox with a read-only root.
const (
	passwdFile = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/tmp:/bin/sh\n"
	groupFile = "root:x:0:\n" +
		"nogroup:x:65534:\n"
	hostsFile = "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n"
	// Files only: the host's nsswitch.conf may name sss, ldap or systemd, which would send
	// identity lookups from inside the sandbox to host services.
	nsswitchFile = "passwd: files\n" +
		"group: files\n" +
		"shadow: files\n" +
		"hosts: files\n" +
		"networks: files\n" +
		"protocols: files\n" +
		"services: files\n"
)

// skeleton writes what every image has: the identity files, /tmp (1777), the mount points the
// runtime fills (/proc, /sys, /dev, /workspace, /opt/mcp, where an upstream MCP server's code is
// mounted, and the empty file at sandbox.EgressSocketTarget, where a run with network proxy gets
// the egress proxy's socket) and the toolbox at ToolboxPath. Mount points must exist in the
// image: the runtime would otherwise create them in the shared root (oci.CheckMountPoints).
func skeleton(t *plan, opts BuildOptions) error {
	dirs := []struct {
		path string
		mode fs.FileMode
	}{
		{"/etc", 0o755},
		{"/root", 0o700},
		{"/tmp", 0o777 | fs.ModeSticky},
		{"/proc", 0o555},
		{"/sys", 0o555},
		{"/dev", 0o755},
		{"/workspace", 0o755},
		{"/opt", 0o755},
		{"/opt/mcp", 0o755},
		{"/.airlock", 0o755},
		{"/.airlock/bin", 0o755},
	}
	for _, d := range dirs {
		if err := t.dir(d.path, d.mode); err != nil {
			return err
		}
	}
	files := []struct {
		path, data string
	}{
		{"/etc/passwd", passwdFile},
		{"/etc/group", groupFile},
		{"/etc/hosts", hostsFile},
		{"/etc/nsswitch.conf", nsswitchFile},
	}
	for _, f := range files {
		if err := t.file(f.path, []byte(f.data), 0o644); err != nil {
			return err
		}
	}
	// Read-only to everyone: it is only ever a mount point; what is mounted on it decides.
	if err := t.file(sandbox.EgressSocketTarget, nil, 0o444); err != nil {
		return err
	}
	return t.copyFile(ToolboxPath, opts.Toolbox, 0o755)
}
