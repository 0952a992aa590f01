package integration

// The escape suite's host-side checks for the daemon backends: what the daemon still holds of
// a run, asked of the daemon by a client of the test's own (not through the backend).

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ctrd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/sandbox/containerd"
	"github.com/airlock-mcp/airlock/sandbox/docker"
)

// dockerHost checks the Docker daemon for the containers, copy volumes and run directories of
// one backend (its state directory is on every container as docker.LabelState).
type dockerHost struct {
	cli          *client.Client
	dir          string // the backend's StateDir/docker
	cgroupParent string // "" when the daemon's default
}

func newDockerHost(t *testing.T, stateDir, cgroupParent string) dockerHost {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = docker.DefaultHost
	}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return dockerHost{cli: cli, dir: filepath.Join(stateDir, "docker"), cgroupParent: cgroupParent}
}

func (h dockerHost) assertGone(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		t.Error("the result carries no container id")
		return
	}
	_, err := h.cli.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if !cerrdefs.IsNotFound(err) {
		t.Errorf("the daemon still knows container %s (%v)", id, err)
	}
}

func (h dockerHost) leftovers(t *testing.T) []string {
	ctx := context.Background()
	var left []string
	list, err := h.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", "airlock=1", docker.LabelState+"="+h.dir)})
	if err != nil {
		return []string{"docker container list failed: " + err.Error()}
	}
	for _, c := range list.Items {
		left = append(left, "container "+c.ID+" "+strings.Join(c.Names, ",")+" "+string(c.State))
	}
	runs := filepath.Join(h.dir, "runs")
	if ents, err := os.ReadDir(runs); err == nil {
		for _, e := range ents {
			left = append(left, "run directory "+filepath.Join(runs, e.Name()))
		}
	}
	vols, err := h.cli.VolumeList(ctx, client.VolumeListOptions{})
	if err != nil {
		return append(left, "docker volume list failed: "+err.Error())
	}
	for _, v := range vols.Items {
		if strings.Contains(v.Options["o"], runs) {
			left = append(left, "copy volume "+v.Name)
		}
	}
	if h.cgroupParent != "" {
		left = append(left, escCgroupLeftovers(h.cgroupParent)...)
	}
	return left
}

// containerdHost checks the containerd daemon (its containers and tasks in Airlock's namespace
// that belong to one backend's state dir), the run directories and the cgroups under the
// backend's parent.
type containerdHost struct {
	cli          *ctrd.Client
	dir          string // the backend's StateDir/containerd
	cgroupParent string
}

func newContainerdHost(t *testing.T, stateDir, cgroupParent string) containerdHost {
	addr := os.Getenv(containerd.AddressEnv)
	if addr == "" {
		addr = containerd.DefaultAddress
	}
	cli, err := ctrd.New(addr)
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	if cgroupParent == "" {
		cgroupParent = containerd.DefaultCgroupParent
	}
	return containerdHost{cli: cli, dir: filepath.Join(stateDir, "containerd"), cgroupParent: cgroupParent}
}

func (h containerdHost) ctx() context.Context {
	return namespaces.WithNamespace(context.Background(), containerd.DefaultNamespace)
}

func (h containerdHost) assertGone(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		t.Error("the result carries no container id")
		return
	}
	if _, err := h.cli.LoadContainer(h.ctx(), id); !cerrdefs.IsNotFound(err) {
		t.Errorf("containerd still knows container %s (%v)", id, err)
	}
	if d := escCgroupDirs(filepath.Join(h.cgroupParent, id)); len(d) > 0 {
		t.Errorf("cgroups of %s remain: %v", id, d)
	}
}

func (h containerdHost) leftovers(t *testing.T) []string {
	var left []string
	cs, err := h.cli.Containers(h.ctx(), `labels."`+containerd.LabelStateDir+`"=="`+h.dir+`"`)
	if err != nil {
		return []string{"containerd container list failed: " + err.Error()}
	}
	for _, c := range cs {
		left = append(left, "container "+c.ID())
	}
	runs := filepath.Join(h.dir, "runs")
	if ents, err := os.ReadDir(runs); err == nil {
		for _, e := range ents {
			left = append(left, "run directory "+filepath.Join(runs, e.Name()))
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), h.dir) {
		left = append(left, "a mount under "+h.dir)
	}
	return append(left, escCgroupLeftovers(h.cgroupParent)...)
}
