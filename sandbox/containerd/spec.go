package containerd

import (
	"maps"

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
		oci.WithCgroupsPath(cgroupsPath),
		oci.WithAnnotation(LabelOwner, owner),
		oci.WithCopyDirsUnder(runDir),
	)
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
