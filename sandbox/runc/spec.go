package runc

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/cgroup"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// Annotation keys Airlock puts on every container besides the Spec's labels.
const (
	// AnnotationOwner holds the owner token of the Backend that started the container, so a
	// leftover can be traced to the (dead) process that made it.
	AnnotationOwner = "airlock.owner"
)

// DefaultCgroupParent is the cgroup under which every container gets "/<parent>/<id>".
const DefaultCgroupParent = "airlock"

// parseID splits a container id "airlock-<owner>-<seq>" into its owner token: the id must be
// exactly "airlock-", 1 to 32 lower-case hex digits, "-" and one or more decimal digits.
// (Hand-written rather than a package-level regexp: compiling one costs every airlock process
// at start-up, and `airlock exec` pays start-up on every call.)
func parseID(id string) (owner string, ok bool) {
	rest, ok := strings.CutPrefix(id, "airlock-")
	if !ok {
		return "", false
	}
	owner, seq, ok := strings.Cut(rest, "-")
	if !ok || len(owner) < 1 || len(owner) > 32 || len(seq) < 1 {
		return "", false
	}
	for _, c := range []byte(owner) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	for _, c := range []byte(seq) {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return owner, true
}

// OCIConfig is the OCI runtime configuration for running spec from img as container id, with
// seccomp filter sc (nil only when spec.Seccomp is unconfined): the backend-neutral hardened
// profile of package oci (oci.Hardened) plus what is runc's own, the cgroup path and the owner
// annotation. It is pure: the same inputs always give the same configuration, which
// testdata/*.json pins.
//
// Overlay upper/work dirs of copy mounts are relative to the bundle (see oci.CopyDir);
// everything else is absolute. linux.cgroupsPath uses DefaultCgroupParent; a Backend with
// another Config.CgroupParent replaces it.
func OCIConfig(spec sandbox.Spec, img sandbox.Image, id string, sc *specs.LinuxSeccomp) (*specs.Spec, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	owner, ok := parseID(id)
	if !ok {
		return nil, fmt.Errorf("container id %q: want airlock-<owner hex>-<number>", id)
	}
	return oci.Build(spec, img, sc,
		oci.WithCgroupsPath(cgroup.Path(DefaultCgroupParent, id)),
		// The owner token of the Backend that makes the container, so a leftover is
		// attributable to the process that made it.
		oci.WithAnnotation(AnnotationOwner, owner),
	)
}
