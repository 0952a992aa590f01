package integration

// The escape suite through sandbox.Start: a long-lived run (a stdio MCP server's container)
// must have exactly the sandbox of a one-shot run. TestEscape/<backend>/LongLived/<case> runs a
// representative set of the cases with every spec started as a Process, its stdin and stdout
// live pipes, instead of through Backend.Run.

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// runLongLivedCases runs the cases below on a copy of the suite whose runs are Processes. It
// is not part of runCases, which docs/security.md is checked against: the properties are the
// same, and so are the cases' names.
func (s *escapeSuite) runLongLivedCases(t *testing.T) {
	ll := &escapeSuite{
		name: s.name, backend: s.backend, host: s.host, runc: s.runc, cgroupParent: s.cgroupParent,
		marker: s.marker, canary: s.canary, images: s.images, busybox: s.busybox, probeDir: s.probeDir,
		longLived: true, binOnce: s.binOnce, bin: s.bin,
	}
	cases := []struct {
		name string
		f    func(*testing.T, *escapeSuite)
	}{
		{"NoNetwork", testNoNetwork},
		{"OnlyLoopback", testOnlyLoopback},
		{"ReadOnlyRoot", testReadOnlyRoot},
		{"ReadOnlyWorkspace", testReadOnlyWorkspace},
		{"NoHostEnvironment", testHostEnv},
		{"ForkBombStopsAtPidsLimit", testForkBomb},
		{"MemoryBombIsOOMKilled", testMemoryBomb},
		{"ForbiddenSyscallsFail", testSyscalls},
		{"KernelInterfacesMasked", testMasked},
		{"NoCapabilitiesNoNewPrivs", testCapabilities},
		{"NoInheritedFileDescriptors", testFDs},
		{"HostImageExposesNoSecrets", testHostImage},
		{"TimeoutKillsEveryProcess", testTimeout},
		{"BackgroundChildrenDieWithCommand", testBackgroundChildren},
	}
	t.Run("LongLived", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { t.Parallel(); c.f(t, ll) })
		}
	})
}

// runProcess runs spec as a long-lived Process and turns it into the Result a one-shot run
// gives: spec.Stdin is written to the live stdin, which is then closed; stdout is read to its
// end, the first StdoutCap bytes kept; stderr is captured up to StderrCap. ctx's end kills the
// process, as it cancels a one-shot run.
func (s *escapeSuite) runProcess(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	stderr := sandbox.NewCappedBuffer(spec.StderrCap)
	p, err := sandbox.Start(ctx, s.backend, spec, stderr)
	if err != nil {
		return sandbox.Result{}, err
	}
	go func() {
		// The command may never read its stdin: the write then ends when the run does.
		if len(spec.Stdin) > 0 {
			_, _ = p.Stdin.Write(spec.Stdin)
		}
		_ = p.Stdin.Close()
	}()
	stdout := sandbox.NewCappedBuffer(spec.StdoutCap)
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, p.Stdout)
		copied <- err
	}()
	select {
	case <-p.Done():
	case <-ctx.Done():
		_, _ = p.Kill()
		<-copied
		res, _ := p.Wait()
		return res, errors.Join(ctx.Err(), errors.New("the long-lived run was killed"))
	}
	res, err := p.Wait()
	// The container is gone, so stdout ends at once; never wait on it unbounded.
	select {
	case cerr := <-copied:
		if cerr != nil && err == nil {
			err = cerr
		}
	case <-time.After(10 * time.Second):
		_ = p.Stdout.Close()
		<-copied
		if err == nil {
			err = errors.New("stdout did not end with the process")
		}
	}
	res.Stdout, res.StdoutTruncated = stdout.Bytes(), stdout.Truncated()
	res.Stderr, res.StderrTruncated = stderr.Bytes(), stderr.Truncated()
	return res, err
}
