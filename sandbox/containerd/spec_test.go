package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/seccomp"
)

// TestSpecIsOCIBuild: the OCI spec containerd stores for a run, and the config.json its shim
// hands to runc, are oci.Build's hardened spec except for the documented backend fields
// (linux.cgroupsPath, the owner annotation, absolute copy-layer dirs; see OCISpec). Hardening
// lives in one place; nothing here or in containerd may drift from it.
func TestSpecIsOCIBuild(t *testing.T) {
	b := newTestBackend(t)
	ws := t.TempDir()
	s := spec(t, sandbox.WithArgv("true"), sandbox.WithWorkspace(ws, sandbox.CopyOnWrite),
		sandbox.WithLabel(sandbox.LabelAuditID, "a1"), sandbox.WithLabel(sandbox.LabelTool, "run_command"))
	img, err := b.images.Resolve(context.Background(), s.Image)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := seccomp.OCI(s.Seccomp, s.Network)
	if err != nil {
		t.Fatal(err)
	}
	built, err := oci.Build(s, img, sc)
	if err != nil {
		t.Fatal(err)
	}
	want := normalize(t, built, "") // the same JSON round trip, nothing to undo

	var stored, bundle *specs.Spec
	var labels map[string]string
	b.afterStart = func(id string) {
		ctx := context.Background()
		c, err := b.client.LoadContainer(ctx, id)
		if err != nil {
			t.Error(err)
			return
		}
		if stored, err = c.Spec(ctx); err != nil {
			t.Error(err)
		}
		if labels, err = c.Labels(ctx); err != nil {
			t.Error(err)
		}
		// The bundle the daemon wrote for the shim: what runc actually ran.
		p := filepath.Join(filepath.Dir(b.address), "io.containerd.runtime.v2.task", b.namespace, id, "config.json")
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			t.Logf("no bundle at %s (a daemon not started by `make containerd`); comparing the stored spec only", p)
			return
		}
		if err != nil {
			t.Error(err)
			return
		}
		bundle = &specs.Spec{}
		if err := json.Unmarshal(data, bundle); err != nil {
			t.Error(err)
		}
	}
	res, err := b.Run(context.Background(), s)
	b.afterStart = nil
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %+v %v", res, err)
	}
	if stored == nil {
		t.Fatal("no spec captured")
	}
	runDir := filepath.Join(b.runsDir, res.ContainerID)
	for what, got := range map[string]*specs.Spec{"stored spec": stored, "bundle config.json": bundle} {
		if got == nil {
			continue
		}
		if got.Linux.CgroupsPath != "/airlock-containerd/"+res.ContainerID {
			t.Errorf("%s: cgroupsPath %q", what, got.Linux.CgroupsPath)
		}
		if got.Annotations[LabelOwner] != b.token {
			t.Errorf("%s: owner annotation %q, want %q", what, got.Annotations[LabelOwner], b.token)
		}
		norm := normalize(t, got, runDir)
		if !reflect.DeepEqual(norm, want) {
			gj, _ := json.MarshalIndent(norm, "", "  ")
			wj, _ := json.MarshalIndent(want, "", "  ")
			t.Errorf("%s differs from oci.Build beyond the backend's own fields:\n got %s\nwant %s", what, gj, wj)
		}
	}
	for k, v := range map[string]string{"airlock": "1", LabelOwner: b.token, sandbox.LabelAuditID: "a1", sandbox.LabelTool: "run_command"} {
		if labels[k] != v {
			t.Errorf("container label %s = %q, want %q (labels %v)", k, labels[k], v, labels)
		}
	}
}

// normalize undoes the backend's documented additions to a spec, through a JSON round trip
// (as containerd stores it), so what remains must equal oci.Build's output.
func normalize(t *testing.T, s *specs.Spec, runDir string) *specs.Spec {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	out := &specs.Spec{}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	if runDir == "" {
		return out
	}
	out.Linux.CgroupsPath = ""
	delete(out.Annotations, LabelOwner)
	for i, m := range out.Mounts {
		if m.Type != "overlay" {
			continue
		}
		for j, o := range m.Options {
			for _, key := range []string{"upperdir=", "workdir="} {
				if v, ok := strings.CutPrefix(o, key+runDir+"/"); ok {
					out.Mounts[i].Options[j] = key + v
				}
			}
		}
	}
	return out
}

func TestOCISpecRefuses(t *testing.T) {
	s := spec(t, sandbox.WithArgv("true"), sandbox.WithWorkspace("/tmp", sandbox.CopyOnWrite))
	img := sandbox.Image{Name: "busybox", Rootfs: "/rootfs"}
	sc, err := seccomp.OCI(s.Seccomp, s.Network)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OCISpec(s, img, "/airlock-containerd/airlock-0123456789ab-1", "0123456789ab", "relative/dir", sc); err == nil {
		t.Error("relative run dir accepted for copy layers")
	}
	if _, err := OCISpec(s, img, "/airlock-containerd/airlock-0123456789ab-1", "0123456789ab", "/abs", nil); err == nil {
		t.Error("no seccomp filter accepted for the default profile")
	}
}
