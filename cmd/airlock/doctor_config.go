package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/backends"
)

// configCheck is what `airlock doctor --config F` adds to the machine checks: what that config
// needs. Either cfg (resolved) or err is set.
type configCheck struct {
	file string
	cfg  *runtime.Config
	err  error
}

// loadDoctorConfig loads and resolves a config the way serve does (without --workspace or
// --policy: the config's own).
func loadDoctorConfig(file string) *configCheck {
	cc := &configCheck{file: file}
	cfg, err := runtime.LoadConfig(file)
	if err == nil {
		err = cfg.Resolve(runtime.Overrides{StateDir: stateDir()})
	}
	if err != nil {
		cc.err = err
		return cc
	}
	cc.cfg = cfg
	return cc
}

// profileUse is one profile the config's tools run under.
type profileUse struct {
	name  string
	image string
	tools []string
	opts  []sandbox.Option
	err   error // the profile cannot become a sandbox spec
}

// configRows checks the config's backend, policy, audit directory and tools, and returns the
// profiles its tools use (for the image rows and the profile smoke runs).
func configRows(cc *configCheck, writable func(string) bool) ([]checkRow, []*profileUse) {
	if cc.err != nil {
		return []checkRow{{"config", statusFail, cc.err.Error()}}, nil
	}
	cfg := cc.cfg
	var rows []checkRow
	tools, err := runtime.BuildTools(cfg)
	if err != nil {
		return append(rows, checkRow{"config", statusFail, fmt.Sprintf("%s: %v", cc.file, err)}), nil
	}
	var names []string
	for _, t := range tools {
		names = append(names, t.Name())
	}
	rows = append(rows, checkRow{"config", statusOK, fmt.Sprintf("%s: workspace %s; tools %s", cc.file, cfg.Workspace, strings.Join(names, ", "))})

	if reg := backends.Default(); reg[cfg.Backend] != nil {
		rows = append(rows, checkRow{"config backend", statusOK, cfg.Backend + " (checked above)"})
	} else {
		rows = append(rows, checkRow{"config backend", statusFail, fmt.Sprintf("backend %q is not one this airlock has (%s): serve would refuse to start", cfg.Backend, strings.Join(reg.Names(), ", "))})
	}

	rows = append(rows, policyRow(cfg))
	rows = append(rows, auditRow(cfg.Audit.Path, writable))

	var uses []*profileUse
	for _, t := range tools {
		i := slices.IndexFunc(uses, func(u *profileUse) bool { return u.name == t.ProfileName() })
		if i >= 0 {
			uses[i].tools = append(uses[i].tools, t.Name())
			continue
		}
		u := &profileUse{name: t.ProfileName(), tools: []string{t.Name()}}
		u.opts, u.err = cfg.ProfileOptions(u.name)
		if u.err == nil {
			// Only to read the image: a spec needs a command.
			spec, err := sandbox.New(append(slices.Clone(u.opts), sandbox.WithArgv("true"))...)
			u.image, u.err = spec.Image, err
		}
		uses = append(uses, u)
	}
	return rows, uses
}

func policyRow(cfg *runtime.Config) checkRow {
	p, err := cfg.LoadPolicy()
	if err != nil {
		return checkRow{"config policy", statusFail, fmt.Sprintf("%v: serve would refuse to start", err)}
	}
	var unknown []string
	for _, is := range cfg.CheckPolicyTools(p) {
		if is.Unknown {
			unknown = append(unknown, is.Pointer+": "+is.Message)
		}
	}
	if len(unknown) > 0 {
		return checkRow{"config policy", statusWarn, fmt.Sprintf("%s: %s", p.Name(), strings.Join(unknown, "; "))}
	}
	return checkRow{"config policy", statusOK, fmt.Sprintf("%s: %d tool entries, sha256 %s", p.Name(), len(p.Tools()), shortID(p.SHA256()))}
}

// auditRow checks that serve can append to the audit log: its directory exists and is
// writable, or the nearest existing directory above it is (serve creates the rest).
func auditRow(path string, writable func(string) bool) checkRow {
	dir := filepath.Dir(path)
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			switch {
			case !fi.IsDir():
				return checkRow{"config audit", statusFail, fmt.Sprintf("%s: %s is not a directory", path, d)}
			case !writable(d):
				return checkRow{"config audit", statusFail, fmt.Sprintf("%s: %s is not writable: serve could not record calls, so it would run none", path, d)}
			case d != dir:
				return checkRow{"config audit", statusOK, fmt.Sprintf("%s (serve creates %s)", path, dir)}
			}
			return checkRow{"config audit", statusOK, path}
		}
		if filepath.Dir(d) == d {
			return checkRow{"config audit", statusFail, fmt.Sprintf("%s: no existing directory above it", path)}
		}
	}
}

// requireImages turns a missing image the config's tools need from a warning into a failure:
// those tools cannot run.
func requireImages(rows []checkRow, uses []*profileUse) []checkRow {
	for i, r := range rows {
		name, ok := strings.CutPrefix(r.Check, "image ")
		if !ok || r.Status == statusOK {
			continue
		}
		var tools []string
		for _, u := range uses {
			if u.image == name {
				tools = append(tools, u.tools...)
			}
		}
		if len(tools) > 0 {
			rows[i].Status = statusFail
			rows[i].Detail += fmt.Sprintf(" (needed by %s)", strings.Join(tools, ", "))
		}
	}
	return rows
}

// profileRows runs `true` with each profile the config's tools use: the image, mounts,
// workspace access, user and limits exactly as a call would get them. backend is nil when the
// runs are skipped (why says so).
func profileRows(ctx context.Context, uses []*profileUse, backend sandbox.Backend, timeout time.Duration, why string) []checkRow {
	var rows []checkRow
	for _, u := range uses {
		check := "profile " + u.name
		tools := "tools: " + strings.Join(u.tools, ", ")
		switch {
		case u.err != nil:
			rows = append(rows, checkRow{check, statusFail, fmt.Sprintf("%v (%s)", u.err, tools)})
		case backend == nil:
			rows = append(rows, checkRow{check, statusWarn, fmt.Sprintf("not run: %s (%s)", why, tools)})
		default:
			rows = append(rows, runProfile(ctx, check, tools, u, backend, timeout))
		}
	}
	return rows
}

func runProfile(ctx context.Context, check, tools string, u *profileUse, backend sandbox.Backend, timeout time.Duration) checkRow {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	spec, err := sandbox.New(append(slices.Clone(u.opts), sandbox.WithArgv("true"), sandbox.WithTimeout(timeout))...)
	if err != nil {
		return checkRow{check, statusFail, fmt.Sprintf("%v (%s)", err, tools)}
	}
	start := time.Now()
	res, err := backend.Run(ctx, spec)
	switch {
	case err != nil:
		return checkRow{check, statusFail, fmt.Sprintf("running `true` on image %s: %v (%s)", u.image, err, tools)}
	case res.ExitCode != 0:
		return checkRow{check, statusFail, fmt.Sprintf("`true` on image %s exited %d: %s (%s)", u.image, res.ExitCode, strings.TrimSpace(string(res.Stderr)), tools)}
	}
	return checkRow{check, statusOK, fmt.Sprintf("`true` ran on image %s with the profile's mounts and limits in %d ms (%s)", u.image, time.Since(start).Milliseconds(), tools)}
}
