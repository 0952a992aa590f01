package runc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// prepareCopyDirs creates the overlay upper and work dirs of every copy mount inside the run's
// bundle. The upper dir takes the owner and mode of the host directory, so the copy is exactly
// as writable for the sandbox user as an rw bind would be, while every write lands in the
// bundle and is discarded with it.
func prepareCopyDirs(bundle string, mounts []sandbox.Mount) error {
	for i, m := range mounts {
		if m.Access != sandbox.CopyOnWrite {
			continue
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("%w: copy mount %s: %v", sandbox.ErrInvalidSpec, m.Target, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: copy mount %s: source %s is not a directory; use access ro or rw for a file", sandbox.ErrInvalidSpec, m.Target, m.Source)
		}
		dir := filepath.Join(bundle, CopyDir(i))
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("copy mount %s: %w", m.Target, err)
			}
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if err := os.Lchown(upper, int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("copy mount %s: %w", m.Target, err)
			}
		}
		if err := os.Chmod(upper, fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid)); err != nil {
			return fmt.Errorf("copy mount %s: %w", m.Target, err)
		}
	}
	return nil
}

// resolveBundlePaths makes the bundle-relative overlay dirs OCIConfig emits (see CopyDir)
// absolute under bundle. cfg is modified and returned.
func resolveBundlePaths(cfg *specs.Spec, bundle string) *specs.Spec {
	for i, m := range cfg.Mounts {
		if m.Type != "overlay" {
			continue
		}
		opts := make([]string, len(m.Options))
		for j, o := range m.Options {
			for _, key := range []string{"upperdir=", "workdir="} {
				if v, ok := strings.CutPrefix(o, key); ok && !filepath.IsAbs(v) {
					o = key + filepath.Join(bundle, v)
				}
			}
			opts[j] = o
		}
		cfg.Mounts[i].Options = opts
	}
	return cfg
}
