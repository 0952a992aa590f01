package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

func TestWriteTar(t *testing.T) {
	requireBusybox(t)
	img := build(t, openStore(t), "busybox", toolboxV1)
	var a, b bytes.Buffer
	if err := WriteTar(context.Background(), img, &a); err != nil {
		t.Fatal(err)
	}
	if err := WriteTar(context.Background(), img, &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two archives of the same image differ")
	}

	headers := map[string]*tar.Header{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Mode&0o6000 != 0 || !h.ModTime.Equal(tarEpoch()) {
			t.Errorf("%s: uid %d gid %d mode %o mtime %v", h.Name, h.Uid, h.Gid, h.Mode, h.ModTime)
		}
		headers[h.Name] = h
	}
	checks := []struct {
		name  string
		ok    func(h *tar.Header) bool
		claim string
	}{
		{"bin/sh", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "/bin/busybox" }, "a link to /bin/busybox"},
		{"tmp/", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode == 0o1777 }, "a 1777 directory"},
		{ToolboxPath[1:], func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Mode == 0o755 && h.Size > 0 }, "the 0755 toolbox"},
		{"workspace/", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir }, "a directory"},
	}
	for _, c := range checks {
		h, ok := headers[c.name]
		if !ok || !c.ok(h) {
			t.Errorf("%s is not %s: %+v", c.name, c.claim, h)
		}
	}
}
