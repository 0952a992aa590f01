package runc

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// builtToolbox is the static airlock-toolbox built from this checkout, once per test process.
var builtToolbox = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "airlock-runc-toolbox-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "airlock-toolbox")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "../../cmd/airlock-toolbox") // from sandbox/runc
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &toolboxBuildError{out: string(out), err: err}
	}
	return bin, nil
})

type toolboxBuildError struct {
	out string
	err error
}

func (e *toolboxBuildError) Error() string {
	return "go build ./cmd/airlock-toolbox: " + e.err.Error() + "\n" + e.out
}

// installToolbox puts the toolbox where every image has it (oci.InitPath): every container's pid 1
// is its init mode.
func installToolbox(t testing.TB, rootfs string) {
	t.Helper()
	bin, err := builtToolbox()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(rootfs, oci.InitPath)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestInitPathIsTheToolbox: the init runc starts is the toolbox every image holds.
func TestInitPathIsTheToolbox(t *testing.T) {
	if oci.InitPath != images.ToolboxPath {
		t.Fatalf("oci.InitPath %q is not images.ToolboxPath %q", oci.InitPath, images.ToolboxPath)
	}
}
