package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/sandbox"
)

// importState serialises the import of one image; done once the daemon holds it.
type importState struct {
	mu   sync.Mutex
	done bool
}

// ImageRef is the daemon tag of an Airlock image: airlock/<name>:<first 16 hex digits of its
// ID>. It is content-addressed, so a rebuilt image gets a new tag and a run never picks up a
// stale import.
func ImageRef(img sandbox.Image) (string, error) {
	hex, ok := strings.CutPrefix(img.ID, "sha256:")
	if !ok || len(hex) < 16 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("image %q: id %q is not a sha256 digest; rebuild it with `airlock images build %s`", img.Name, img.ID, img.Name)
	}
	if img.Name == "" || strings.Trim(img.Name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
		return "", fmt.Errorf("image name %q cannot be a docker repository name", img.Name)
	}
	return "airlock/" + img.Name + ":" + hex[:16], nil
}

// image makes sure the daemon holds img and returns its reference. The first run of an image
// imports its root file system (images.WriteTar, streamed); later runs find the tag. A tag
// that exists but was not made from this image ID (someone else's image under Airlock's name)
// is replaced rather than run.
func (b *Backend) image(ctx context.Context, img sandbox.Image) (string, error) {
	ref, err := ImageRef(img)
	if err != nil {
		return "", err
	}
	b.imgMu.Lock()
	st, ok := b.imported[img.ID]
	if !ok {
		st = &importState{}
		b.imported[img.ID] = st
	}
	b.imgMu.Unlock()

	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return ref, nil
	}
	ins, err := b.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil && ins.Config != nil && ins.Config.Labels[LabelImageID] == img.ID:
		st.done = true
		return ref, nil
	case err != nil && !cerrdefs.IsNotFound(err):
		return "", fmt.Errorf("docker: inspecting image %s: %w", ref, err)
	}
	if err := b.importImage(ctx, img, ref); err != nil {
		return "", err
	}
	st.done = true
	return ref, nil
}

// importImage streams img's root file system into the daemon as ref.
func (b *Backend) importImage(ctx context.Context, img sandbox.Image, ref string) error {
	b.log.Info().Str("event", "sandbox.image_import").Str("image", img.Name).Str("ref", ref).Msg("importing image into the docker daemon")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { pw.CloseWithError(images.WriteTar(ctx, img, pw)) }()
	defer pr.Close() // unblocks the writer if the import fails early
	rc, err := b.cli.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: []string{"LABEL " + LabelImageID + "=" + img.ID}})
	if err != nil {
		return fmt.Errorf("docker: importing image %s as %s: %w", img.Name, ref, err)
	}
	defer rc.Close()
	// The daemon answers with a stream of JSON progress messages; an error is one of them.
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker: importing image %s as %s: reading the daemon's answer: %w", img.Name, ref, err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return fmt.Errorf("docker: importing image %s as %s: %s", img.Name, ref, msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return fmt.Errorf("docker: importing image %s as %s: %s", img.Name, ref, msg.Error)
		}
	}
}

// forgetImage makes the next run of image id check the daemon (and import it) again.
func (b *Backend) forgetImage(id string) {
	b.imgMu.Lock()
	defer b.imgMu.Unlock()
	delete(b.imported, id)
}
