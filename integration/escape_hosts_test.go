package integration

// The escape suite's host-side checks for the daemon backends: what the daemon still holds of
// a run, asked of the daemon by a client of the test's own (not through the backend).

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/sandbox/docker"
)

// dockerHost checks the Docker daemon for the containers, copy volumes and run directories of
// one backend (its state directory is on every container as docker.LabelState).
type dockerHost struct {
	cli *client.Client
	dir string // the backend's StateDir/docker
}

func newDockerHost(t *testing.T, stateDir string) dockerHost {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = docker.DefaultHost
	}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return dockerHost{cli: cli, dir: filepath.Join(stateDir, "docker")}
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
	return left
}
