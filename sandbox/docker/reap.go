package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/owner"
	"github.com/airlock-mcp/airlock/sandbox/rundir"
)

// Reap removes what dead Airlock processes that used this state directory left behind: their
// containers (force-removed with their anonymous volumes), run directories and lock files.
//
// The liveness rule is the runc backend's (package owner): a container is a leftover only if it
// carries this state directory's label and its owner's lock file in StateDir/docker/owners can
// be locked (the owner died) or is gone (the owner closed or was reaped). Containers of this
// Backend, of every live owner, of other state directories and without Airlock's owner labels
// are never touched.
func (b *Backend) Reap(ctx context.Context) ([]sandbox.Reaped, error) {
	var reaped []sandbox.Reaped
	var errs []error
	if err := owner.Reap(b.owners, b.lock.Token(), func(token string) error {
		r, err := b.reapOwner(ctx, token)
		reaped = append(reaped, r...)
		return err
	}); err != nil {
		errs = append(errs, err)
	}
	// Leftovers whose owner has no lock file at all. A live owner's lock file exists before
	// its first container does and is removed only after its last one is gone, so checking
	// it after listing the container is race-free.
	list, err := b.list(ctx, "")
	if err != nil {
		errs = append(errs, err)
	}
	for _, c := range list {
		tok := c.Labels[LabelOwner]
		if tok == b.lock.Token() || !owner.IsToken(tok) || owner.Listed(b.owners, tok) {
			continue
		}
		r, err := b.reapContainer(ctx, c)
		if err != nil {
			errs = append(errs, err)
		}
		if r != nil {
			reaped = append(reaped, *r)
		}
	}
	// Run directories of owners that are gone.
	if entries, err := os.ReadDir(b.runs); err == nil {
		for _, e := range entries {
			tok, ok := runOwner(e.Name())
			if !ok || tok == b.lock.Token() || owner.Listed(b.owners, tok) {
				continue
			}
			if err := rundir.Remove(filepath.Join(b.runs, e.Name()), rundir.DetachIfBusy); err != nil {
				errs = append(errs, err)
			}
		}
	} else {
		errs = append(errs, err)
	}
	return reaped, errors.Join(errs...)
}

// list returns the containers of this state directory (of owner token, when not empty).
func (b *Backend) list(ctx context.Context, token string) ([]container.Summary, error) {
	f := client.Filters{}.Add("label", "airlock=1", LabelState+"="+b.dir)
	if token != "" {
		f = f.Add("label", LabelOwner+"="+token)
	}
	out, err := b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: listing Airlock's containers: %w", err)
	}
	return out.Items, nil
}

// reapOwner removes every container and run directory of the dead owner token.
func (b *Backend) reapOwner(ctx context.Context, token string) ([]sandbox.Reaped, error) {
	list, err := b.list(ctx, token)
	if err != nil {
		return nil, err
	}
	var reaped []sandbox.Reaped
	var errs []error
	for _, c := range list {
		r, err := b.reapContainer(ctx, c)
		if err != nil {
			errs = append(errs, err)
		}
		if r != nil {
			reaped = append(reaped, *r)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(b.runs, "airlock-"+token+"-*"))
	for _, m := range matches {
		if err := rundir.Remove(m, rundir.DetachIfBusy); err != nil {
			errs = append(errs, err)
		}
	}
	return reaped, errors.Join(errs...)
}

// reapContainer force-removes c and reports it with its labels (without the backend's own
// bookkeeping ones); nil when it was not removed.
func (b *Backend) reapContainer(ctx context.Context, c container.Summary) (*sandbox.Reaped, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	labels := maps.Clone(c.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	delete(labels, LabelOwner)
	delete(labels, LabelState)
	r := &sandbox.Reaped{ContainerID: c.ID, Labels: labels, Running: c.State == container.StateRunning || c.State == container.StatePaused || c.State == container.StateRestarting}
	b.log.Info().Str("event", "sandbox.reap").Str("container", c.ID).Bool("running", r.Running).
		Str("audit_id", labels[sandbox.LabelAuditID]).Msg("removing leftover of a dead airlock process")
	if err := b.removeContainer(c.ID); err != nil {
		return nil, err
	}
	return r, nil
}

// runOwner parses a run directory name "airlock-<token>-<seq>".
func runOwner(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "airlock-")
	if !ok {
		return "", false
	}
	tok, seq, ok := strings.Cut(rest, "-")
	if !ok || seq == "" || strings.Trim(seq, "0123456789") != "" || !owner.IsToken(tok) {
		return "", false
	}
	return tok, true
}
