package oci

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestWithCopyDirsUnder: only the relative overlay layer dirs move under the run dir; a relative
// run dir is refused rather than resolved against whatever directory the runtime is in.
func TestWithCopyDirsUnder(t *testing.T) {
	mounts := func() []specs.Mount {
		return []specs.Mount{
			{Destination: "/ro", Type: "bind", Source: "/src", Options: []string{"bind", "ro"}},
			{Destination: "/copy", Type: "overlay", Source: "overlay",
				Options: []string{"lowerdir=/src", "upperdir=" + CopyDir(1) + "/upper", "workdir=" + CopyDir(1) + "/work", "nosuid"}},
		}
	}
	s := &specs.Spec{Mounts: mounts()}
	if err := WithCopyDirsUnder("/run/x")(s); err != nil {
		t.Fatal(err)
	}
	want := []string{"lowerdir=/src", "upperdir=/run/x/copy/1/upper", "workdir=/run/x/copy/1/work", "nosuid"}
	if !slices.Equal(s.Mounts[1].Options, want) || !slices.Equal(s.Mounts[0].Options, []string{"bind", "ro"}) {
		t.Errorf("mounts = %+v; want overlay options %v", s.Mounts, want)
	}
	if err := WithCopyDirsUnder("run/x")(&specs.Spec{Mounts: mounts()}); err == nil {
		t.Error("relative run dir accepted")
	}
}

func TestWithCgroupsPathAndAnnotation(t *testing.T) {
	s := &specs.Spec{}
	for _, opt := range []SpecOpt{WithCgroupsPath("/airlock/airlock-0a-1"), WithAnnotation("airlock.owner", "0a")} {
		if err := opt(s); err != nil {
			t.Fatal(err)
		}
	}
	if s.Linux.CgroupsPath != "/airlock/airlock-0a-1" || s.Annotations["airlock.owner"] != "0a" {
		t.Errorf("cgroupsPath %q, annotations %v", s.Linux.CgroupsPath, s.Annotations)
	}
}
