package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/sandbox"
)

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

func TestRunMissingWorkdirLeavesImageAlone(t *testing.T) {
	b := newTestBackend(t)
	img, err := b.images.Resolve(context.Background(), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "pwd"), sandbox.WithWorkdir("/not-in-image/sub")))
	if !errors.Is(err, sandbox.ErrInvalidSpec) || !strings.Contains(err.Error(), "workdir /not-in-image/sub") {
		t.Errorf("err = %v, want ErrInvalidSpec naming the workdir", err)
	}
	if _, err := os.Lstat(filepath.Join(img.Rootfs, "not-in-image")); !os.IsNotExist(err) {
		t.Errorf("the image gained /not-in-image: %v", err)
	}
	res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "pwd"), sandbox.WithWorkdir("/tmp/new/dir")))
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(string(res.Stdout)) != "/tmp/new/dir" {
		t.Errorf("workdir under /tmp: %v exit %d stdout %q stderr %q", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	assertNoLeftovers(t, b)
}
