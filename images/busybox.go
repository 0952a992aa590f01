package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path"
	"strings"
)

// DefaultBusybox is Debian's busybox-static binary, installed by `make setup`.
const DefaultBusybox = "/bin/busybox"

// buildBusybox writes the busybox image: one static busybox at /bin/busybox with every applet
// it reports linked to it, plus the shared skeleton. It needs no host binds.
func buildBusybox(ctx context.Context, t *plan, opts BuildOptions) error {
	if err := skeleton(t, opts); err != nil {
		return err
	}
	src := opts.Busybox
	if src == "" {
		src = DefaultBusybox
	}
	for _, d := range []string{"/bin", "/sbin", "/usr", "/usr/bin", "/usr/sbin"} {
		if err := t.dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := t.copyFile("/bin/busybox", src, 0o755); err != nil {
		return fmt.Errorf("%w (install Debian's busybox-static: make setup)", err)
	}
	applets, err := busyboxApplets(ctx, src)
	if err != nil {
		return err
	}
	for _, a := range applets {
		if t.has(a) {
			continue
		}
		if err := t.symlink(a, "/bin/busybox"); err != nil {
			return err
		}
	}
	return nil
}

// busyboxApplets runs `busybox --list-full` and returns the applets' install paths relative to
// the root ("bin/sh", "usr/bin/awk", ...).
func busyboxApplets(ctx context.Context, bin string) ([]string, error) {
	cmd := exec.CommandContext(ctx, bin, "--list-full")
	cmd.Args[0] = "busybox" // busybox dispatches on argv[0]
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("images: %s --list-full: %w: %s (is it Debian's busybox-static? make setup)", bin, err, strings.TrimSpace(stderr.String()))
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		// Refuse anything that would land outside the root; the binary itself is listed too.
		clean := path.Clean("/" + line)
		if clean != "/"+line {
			return nil, fmt.Errorf("images: %s --list-full printed an unexpected path %q", bin, line)
		}
		if clean == "/bin/busybox" {
			continue
		}
		applets = append(applets, line)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("images: %s --list-full printed no applets", bin)
	}
	return applets, nil
}
