package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

func TestCheckMountPoints(t *testing.T) {
	rootfs, src := t.TempDir(), t.TempDir()
	for _, d := range []string{"proc", "dev", "sys", "tmp", "workspace", "etc-in-image"} {
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
		{"inside an overlay refused", specs.Mount{Destination: "/cache/x", Type: "bind", Source: "/x"}, true},
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
			err := checkMountPoints(cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("checkMountPoints = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, sandbox.ErrInvalidSpec) {
				t.Errorf("error does not wrap ErrInvalidSpec: %v", err)
			}
		})
	}
}

// TestRunMissingMountPointLeavesImageAlone: a mount target the image lacks is refused before
// runc could create it inside the image.
func TestRunMissingMountPointLeavesImageAlone(t *testing.T) {
	b := newTestBackend(t)
	img, err := b.images.Resolve(context.Background(), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Run(context.Background(), spec(t, sandbox.WithArgv("true"),
		sandbox.WithMount(sandbox.Mount{Source: t.TempDir(), Target: "/not-in-image", Access: sandbox.ReadOnly})))
	if !errors.Is(err, sandbox.ErrInvalidSpec) {
		t.Errorf("err = %v, want ErrInvalidSpec", err)
	}
	if _, err := os.Lstat(filepath.Join(img.Rootfs, "not-in-image")); !os.IsNotExist(err) {
		t.Errorf("the image gained /not-in-image: %v", err)
	}
	assertNoLeftovers(t, b)
}
