package containerd

import (
	"fmt"
	"maps"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// OCISpec is the OCI spec the backend sends to containerd for running spec from img as
// the container at cgroupsPath of owner token, with seccomp filter sc: exactly oci.Build's hardened spec plus
// what is this backend's own, and nothing else (TestSpecIsOCIBuild pins that):
//
//   - linux.cgroupsPath "/<Config.CgroupParent>/<id>";
//   - the owner annotation (LabelOwner), so a leftover names the process that made it;
//   - the overlay upper/work dirs of copy mounts, which oci.Build leaves relative (see
//     oci.CopyDir), made absolute under runDir, the run's private dir.
//
// root.path stays the image store's read-only root directory (oci.WithRootfs): containerd
// hands a container without a snapshot to the shim with the spec's root untouched, as
// `ctr run --rootfs` does.
func OCISpec(spec sandbox.Spec, img sandbox.Image, cgroupsPath, owner, runDir string, sc *specs.LinuxSeccomp) (*specs.Spec, error) {
	return oci.Build(spec, img, sc,
		withCgroupsPath(cgroupsPath),
		withOwner(owner),
		withCopyDirsUnder(runDir),
	)
}

func withCgroupsPath(p string) oci.SpecOpt {
	return func(s *specs.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		s.Linux.CgroupsPath = p
		return nil
	}
}

func withOwner(owner string) oci.SpecOpt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[LabelOwner] = owner
		return nil
	}
}

// withCopyDirsUnder makes the relative overlay dirs of copy mounts absolute under dir. runc
// would resolve them against the shim's bundle directory, which is the daemon's, not Airlock's:
// the copy layers must live in Airlock's private run dir, on the size-capped tmpfs
// prepareCopyDirs mounts there.
func withCopyDirsUnder(dir string) oci.SpecOpt {
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

// containerLabels are the containerd labels of a run's container: the Spec's labels (the audit
// id, audit log and tool of the call), airlock=1, the owner token and the state dir holding the
// owner's lock. Reap lists containers by airlock=1 and decides by the state dir and the owner.
func containerLabels(spec sandbox.Spec, owner, stateDir string) map[string]string {
	l := make(map[string]string, len(spec.Labels)+3)
	maps.Copy(l, spec.Labels)
	l["airlock"] = "1"
	l[LabelOwner] = owner
	l[LabelStateDir] = stateDir
	return l
}
