package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/sandbox"
)

func TestImageRef(t *testing.T) {
	for _, tc := range []struct {
		img  sandbox.Image
		want string // "" means an error
	}{
		{sandbox.Image{Name: "busybox", ID: "sha256:6097c4ce800263d9c1d26851e72aab419c70d698f1d4c988a07d3da582c747fe"}, "airlock/busybox:6097c4ce800263d9"},
		{sandbox.Image{Name: "busybox", ID: "6097c4ce800263d9c1d2"}, ""},
		{sandbox.Image{Name: "busybox", ID: "sha256:6097"}, ""},
		{sandbox.Image{Name: "busybox", ID: "sha256:6097C4CE800263D9C1D2"}, ""},
		{sandbox.Image{Name: "Bad/Name", ID: "sha256:6097c4ce800263d9c1d2"}, ""},
	} {
		got, err := ImageRef(tc.img)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ImageRef(%+v) = %q, %v; want %q", tc.img, got, err, tc.want)
		}
	}
}

// TestImageImportedOnceAndVerified: an image is imported under its content-addressed tag with
// its ID as a label, found again without an import, and a foreign image under the same tag
// (one not made from this ID) is replaced rather than run.
func TestImageImportedOnceAndVerified(t *testing.T) {
	b := newTestBackend(t)
	ctx := context.Background()
	rootfs := t.TempDir()
	if err := os.WriteFile(filepath.Join(rootfs, "marker"), []byte("airlock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var id [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	img := sandbox.Image{Name: "importtest", ID: "sha256:" + hex.EncodeToString(id[:]), Rootfs: rootfs}
	ref, err := b.image(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	var made []string // every image this test put into the daemon, removed at the end
	t.Cleanup(func() {
		for _, id := range made {
			_, _ = b.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	})
	labelOf := func() string {
		ins, err := b.cli.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		return ins.Config.Labels[LabelImageID]
	}
	if got := labelOf(); got != img.ID {
		t.Fatalf("imported image label %q, want %q", got, img.ID)
	}
	before := imageCreated(t, b, ref)
	made = append(made, before)
	if _, err := b.image(ctx, img); err != nil {
		t.Fatal(err)
	}
	// A second backend (a new Airlock process) finds the tag without importing.
	b2 := newTestBackend(t)
	if _, err := b2.image(ctx, img); err != nil {
		t.Fatal(err)
	}
	if after := imageCreated(t, b, ref); after != before {
		t.Errorf("the image was imported again (%s, then %s)", before, after)
	}

	// Someone else's image under Airlock's tag.
	rc, err := b.cli.ImageImport(ctx, client.ImageImportSource{Source: strings.NewReader(emptyTar), SourceName: "-"}, ref, client.ImageImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	made = append(made, imageCreated(t, b, ref))
	if got := labelOf(); got == img.ID {
		t.Fatal("the foreign image carries the label")
	}
	b3 := newTestBackend(t)
	if _, err := b3.image(ctx, img); err != nil {
		t.Fatal(err)
	}
	made = append(made, imageCreated(t, b, ref))
	if got := labelOf(); got != img.ID {
		t.Errorf("a foreign image under %s was kept (label %q)", ref, got)
	}
}

// emptyTar is a tar archive with no entries (two zero blocks).
var emptyTar = strings.Repeat("\x00", 1024)

func imageCreated(t *testing.T, b *Backend, ref string) string {
	t.Helper()
	ins, err := b.cli.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return ins.ID
}

// TestRunReimportsRemovedImage: an operator's `docker image prune -a` (or rmi) removes the
// imported image under a running Airlock; the next run imports it again instead of failing
// until Airlock restarts.
func TestRunReimportsRemovedImage(t *testing.T) {
	bb, err := testImages(t).Resolve(context.Background(), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	var id [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	img := sandbox.Image{Name: "reimport", ID: "sha256:" + hex.EncodeToString(id[:]), Rootfs: bb.Rootfs}
	b := newTestBackend(t, func(c *Config) {
		c.Images = resolverFunc(func(context.Context, string) (sandbox.Image, error) { return img, nil })
	})
	ctx := context.Background()
	ref, err := ImageRef(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true}) })
	for i := range 2 {
		res, err := b.Run(ctx, spec(t, sandbox.WithArgv("echo", "ok")))
		if err != nil || string(res.Stdout) != "ok\n" {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
		if _, err := b.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
}
