package oci

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Inputs is the common start of every backend's run: spec's seccomp filter, compiled by
// compile (package seccomp's OCI outside of tests), and spec's image, resolved by images. A
// filter that cannot be compiled refuses the run: never without the filter the profile asked
// for.
func Inputs(ctx context.Context, spec sandbox.Spec, compile func(string, sandbox.Network) (*specs.LinuxSeccomp, error), images sandbox.ImageResolver) (*specs.LinuxSeccomp, sandbox.Image, error) {
	sc, err := compile(spec.Seccomp, spec.Network)
	if err != nil {
		return nil, sandbox.Image{}, fmt.Errorf("seccomp profile %q: %w; refusing to run the sandbox without it", spec.Seccomp, err)
	}
	img, err := images.Resolve(ctx, spec.Image)
	return sc, img, err
}

// Options a backend adds to Build's spec for one run: where its cgroup is, whose it is, and
// where its copy layers are.

// WithCgroupsPath puts the container in cgroup p (a backend's "/<parent>/<id>"), where the
// backend finds it again to count OOM kills and to remove it.
func WithCgroupsPath(p string) SpecOpt {
	return func(s *specs.Spec) error { linuxOf(s).CgroupsPath = p; return nil }
}

// WithAnnotation sets one annotation, such as the owner token of the Backend that makes the
// container, so a leftover is attributable to the process that made it.
func WithAnnotation(key, value string) SpecOpt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[key] = value
		return nil
	}
}

// WithCopyDirsUnder makes the relative overlay dirs of copy mounts (see CopyDir) absolute under
// dir, the run's private directory: the copy layers must live there, on the size-capped tmpfs
// package rundir mounts, and a runtime would otherwise resolve them against a directory of its
// own choosing (containerd's shim: the daemon's bundle dir). Only after Build: WithSpecMounts
// emits the relative dirs.
func WithCopyDirsUnder(dir string) SpecOpt {
	return func(s *specs.Spec) error {
		for i, m := range s.Mounts {
			if m.Type != "overlay" {
				continue
			}
			opts := make([]string, len(m.Options))
			for j, o := range m.Options {
				for _, key := range []string{"upperdir=", "workdir="} {
					if v, ok := strings.CutPrefix(o, key); ok && !filepath.IsAbs(v) {
						if !filepath.IsAbs(dir) {
							return fmt.Errorf("copy mount %s: run dir %q is not absolute", m.Destination, dir)
						}
						o = key + filepath.Join(dir, v)
					}
				}
				opts[j] = o
			}
			s.Mounts[i].Options = opts
		}
		return nil
	}
}
