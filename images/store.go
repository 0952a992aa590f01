// Package images builds the root file systems Airlock's sandboxes run on, locally (no registry
// is reachable), and keeps them content-addressed under <stateDir>/images.
package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlock-mcp/airlock/sandbox"
)

// ToolboxPath is where the static airlock-toolbox binary lives inside every image.
const ToolboxPath = "/.airlock/bin/airlock-toolbox"

// Store is the on-disk image store at <stateDir>/images.
type Store struct {
	dir string
}

// Open opens (creating it with mode 0700 if missing) the image store under stateDir.
func Open(stateDir string) (*Store, error) {
	dir := filepath.Join(stateDir, "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("images: creating store %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// BuildOptions configure one build.
type BuildOptions struct {
	// Toolbox is the host path of the static airlock-toolbox binary baked into the image.
	Toolbox string
}

// Names lists the images Build knows how to make.
func Names() []string { return []string{"busybox", "host"} }

// Build builds the image called name and records it in the store.
func (s *Store) Build(ctx context.Context, name string, opts BuildOptions) (sandbox.Image, error) {
	return sandbox.Image{}, errors.New("images: build not implemented yet")
}

// List returns every built image, sorted by name.
func (s *Store) List() ([]sandbox.Image, error) { return nil, nil }

// Resolve returns the built image called name; it implements sandbox.ImageResolver.
func (s *Store) Resolve(ctx context.Context, name string) (sandbox.Image, error) {
	return sandbox.Image{}, fmt.Errorf("image %q is not built: run `airlock images build %s` (or make setup)", name, name)
}

var _ sandbox.ImageResolver = (*Store)(nil)
