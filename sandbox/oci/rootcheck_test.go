package oci

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// The cases of sandbox/runc's bundle tests, for the exported copies of its checks.

func TestCheckMountPoints(t *testing.T) {
	rootfs, src := t.TempDir(), t.TempDir()
	for _, d := range []string{"proc", "dev", "sys", "tmp", "workspace", "etc-in-image", ".airlock"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	// /hostetc -> /etc: on the host /etc exists, inside the image it does not.
	if err := os.Symlink("/etc", filepath.Join(rootfs, "hostetc")); err != nil {
		t.Fatal(err)
	}
	// A link the sandboxed command may have planted in the workspace: runc would resolve it
	// against the container's root, not the workspace, so it is never followed.
	if err := os.Symlink("sub", filepath.Join(src, "subl")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, ".airlock", "egress.sock"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "egress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	notSock := filepath.Join(src, "plain")
	if err := os.WriteFile(notSock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	linkSock := filepath.Join(src, "link.sock")
	if err := os.Symlink(sock, linkSock); err != nil {
		t.Fatal(err)
	}
	base := []specs.Mount{
		{Destination: "/proc", Type: "proc"},
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/dev/shm", Type: "tmpfs"},
		{Destination: "/sys", Type: "sysfs"},
		{Destination: "/tmp", Type: "tmpfs"},
		{Destination: "/workspace", Type: "bind", Source: src},
	}
	tests := []struct {
		name    string
		extra   specs.Mount
		wantErr bool
	}{
		{"existing target", specs.Mount{Destination: "/etc-in-image", Type: "bind", Source: "/x"}, false},
		{"missing target would change the image", specs.Mount{Destination: "/data", Type: "bind", Source: "/x"}, true},
		{"under a tmpfs is created in the tmpfs", specs.Mount{Destination: "/tmp/cache", Type: "bind", Source: "/x"}, false},
		{"under a bind must exist in its source", specs.Mount{Destination: "/workspace/sub", Type: "bind", Source: "/x"}, false},
		{"missing under a bind would change the host dir", specs.Mount{Destination: "/workspace/new", Type: "bind", Source: "/x"}, true},
		{"symlink to a host path is resolved inside the image", specs.Mount{Destination: "/hostetc/ssl", Type: "bind", Source: "/x"}, true},
		{"symlink in a bind source is not followed", specs.Mount{Destination: "/workspace/subl", Type: "bind", Source: "/x"}, true},
		{"inside an overlay refused", specs.Mount{Destination: "/cache/x", Type: "bind", Source: "/x"}, true},
		{"egress socket", specs.Mount{Destination: sandbox.EgressSocketTarget, Type: "bind", Source: sock}, false},
		{"egress socket missing", specs.Mount{Destination: sandbox.EgressSocketTarget, Type: "bind", Source: sock + ".none"}, true},
		{"egress source a regular file", specs.Mount{Destination: sandbox.EgressSocketTarget, Type: "bind", Source: notSock}, true},
		{"egress source a symlink to a socket", specs.Mount{Destination: sandbox.EgressSocketTarget, Type: "bind", Source: linkSock}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mounts := append([]specs.Mount{}, base...)
			if strings.HasPrefix(tt.extra.Destination, "/cache/") {
				if err := os.MkdirAll(filepath.Join(rootfs, "cache"), 0o755); err != nil {
					t.Fatal(err)
				}
				mounts = append(mounts, specs.Mount{Destination: "/cache", Type: "overlay"})
			}
			cfg := &specs.Spec{Root: &specs.Root{Path: rootfs}, Mounts: append(mounts, tt.extra)}
			err := CheckMountPoints(cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CheckMountPoints = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, sandbox.ErrInvalidSpec) {
				t.Errorf("error does not wrap ErrInvalidSpec: %v", err)
			}
		})
	}
}

func TestCheckWorkdir(t *testing.T) {
	rootfs, src, lower := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{"proc", "dev", "sys", "tmp", "workspace", "cache", "etc-in-image", "abs/x"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Join(src, "sub"), filepath.Join(src, "abs", "x"), filepath.Join(lower, "pkg")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "file-in-image"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// /hostetc -> /etc: on the host /etc exists, inside the image it does not.
	if err := os.Symlink("/etc", filepath.Join(rootfs, "hostetc")); err != nil {
		t.Fatal(err)
	}
	// In the workspace, link -> /abs: the check would find <src>/abs/x, while runc resolves the
	// link against the container root and would create /abs/x... in the image.
	if err := os.Symlink("/abs", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc"},
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/sys", Type: "sysfs"},
		{Destination: "/tmp", Type: "tmpfs"},
		{Destination: "/workspace", Type: "bind", Source: src},
		{Destination: "/cache", Type: "overlay", Options: []string{"lowerdir=" + lower, "upperdir=copy/0/upper"}},
	}
	tests := []struct {
		name, cwd string
		wantErr   bool
	}{
		{"root", "/", false},
		{"exists in the image", "/etc-in-image", false},
		{"missing would change the image", "/missing", true},
		{"missing deep would change the image", "/etc-in-image/new/deep", true},
		{"a mount target", "/workspace", false},
		{"exists in the bind source", "/workspace/sub", false},
		{"missing under a bind would change the host dir", "/workspace/new", true},
		{"under a tmpfs is created in the tmpfs", "/tmp/new/deep", false},
		{"exists in the copy mount's lower dir", "/cache/pkg", false},
		{"missing in the copy mount's lower dir", "/cache/none", true},
		{"a file, not a directory", "/file-in-image", true},
		{"symlink in the image is not followed", "/hostetc", true},
		{"symlink in a bind source is not followed", "/workspace/link/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &specs.Spec{Root: &specs.Root{Path: rootfs}, Process: &specs.Process{Cwd: tt.cwd}, Mounts: mounts}
			err := CheckWorkdir(cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CheckWorkdir(%s) = %v, want error %v", tt.cwd, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, sandbox.ErrInvalidSpec) {
				t.Errorf("error does not wrap ErrInvalidSpec: %v", err)
			}
		})
	}
}
