package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/airlock-mcp/airlock/sandbox"
)

// hostDirs are the host directories the host image binds read-only, where they exist.
func hostDirs() []string {
	return []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}
}

// etcAllowlist names the only /etc entries of the host the host image sees, each bound read-only
// on its own. The host's /etc as a whole is never bound: it holds shadow, gshadow, sudoers, ssh
// host keys, ssl/private, credentials of package managers and more, none of which a tool needs.
// passwd, group, hosts and nsswitch.conf come from the image itself (see skeleton), so the
// host's accounts are not listed inside the sandbox either.
func etcAllowlist() []string {
	return []string{
		"alternatives",         // update-alternatives links: java, cc, editor, ...
		"ca-certificates.conf", // which CAs are enabled
		"gitconfig",            // system git configuration
		"ld.so.cache",          // the dynamic loader's library cache
		"ld.so.conf",           //
		"ld.so.conf.d",         //
		"localtime",            // time zone
		"mime.types",           // used by Python's mimetypes and others
		"os-release",           // toolchains read the distribution's name
		"protocols",            // getprotobyname, Go's net package
		"services",             // getservbyname
		"ssl/certs",            // the CA bundle (public certificates only; never ssl/private)
		"ssl/openssl.cnf",      // OpenSSL's default configuration
		"timezone",             // time zone name
	}
}

// buildHost writes the host image's skeleton into t and returns its binds. hostRoot is "/" except
// in tests, which build from a fake host tree.
//
// The image ID covers the skeleton and the bind list only: changes to the host's /usr or the
// allowlisted /etc files (package upgrades) are NOT captured by the ID.
func buildHost(ctx context.Context, t *plan, hostRoot string, opts BuildOptions) ([]sandbox.Mount, error) {
	if err := skeleton(t, opts); err != nil {
		return nil, err
	}
	if hostRoot == "" {
		hostRoot = "/"
	}
	realRoot, err := filepath.EvalSymlinks(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("images: host root %s: %w", hostRoot, err)
	}
	host := func(p string) string { return filepath.Join(realRoot, filepath.FromSlash(p)) }
	var binds []sandbox.Mount
	var bound []string // image paths of the bound directories
	bind := func(src, target string) {
		binds = append(binds, sandbox.Mount{Source: src, Target: target, Access: sandbox.ReadOnly})
	}

	for _, p := range hostDirs() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fi, err := os.Lstat(host(p))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		switch {
		case fi.IsDir():
			if err := t.dir(p, 0o755); err != nil {
				return nil, err
			}
			bind(host(p), p)
			bound = append(bound, p)
		case fi.Mode()&fs.ModeSymlink != 0:
			inImage, err := resolveInRoot(realRoot, p)
			if err != nil {
				continue // dangling on the host: nothing to offer
			}
			if within(inImage, bound) {
				// Merged /usr: /bin -> usr/bin. The same link in the skeleton resolves inside
				// the container to the bound /usr, so no second bind is needed.
				target, err := os.Readlink(host(p))
				if err != nil {
					return nil, fmt.Errorf("images: %w", err)
				}
				lexical := target
				if !path.IsAbs(lexical) {
					lexical = path.Join(path.Dir(p), target)
				}
				if path.Clean(lexical) != inImage {
					target = inImage // a chain of links: point straight at the end of it
				}
				if err := t.symlink(p, target); err != nil {
					return nil, err
				}
				continue
			}
			// A link elsewhere: bind what it points at, if that is a directory.
			if st, err := os.Stat(host(inImage)); err != nil || !st.IsDir() {
				continue
			}
			if err := t.dir(p, 0o755); err != nil {
				return nil, err
			}
			bind(host(inImage), p)
			bound = append(bound, p)
		}
	}

	for _, e := range etcAllowlist() {
		p := "/etc/" + e
		h := host(p)
		if _, err := os.Lstat(h); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		inImage, err := resolveInRoot(realRoot, p)
		if err != nil {
			continue // dangling link on the host
		}
		if inImage != p {
			// The entry (or a directory above it) is a symlink. Follow it only into a bound
			// directory, recreated as a link to the resolved path. Binding the resolved file
			// instead would let a link such as /etc/localtime -> /etc/shadow publish a file that
			// is not on the allowlist.
			if !within(inImage, bound) {
				continue
			}
			if err := t.symlink(p, inImage); err != nil {
				return nil, err
			}
			continue
		}
		real := h
		st, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		// Mount points are created now: the root is read-only at run time, and a backend that
		// created them itself would write into the content-addressed rootfs.
		switch {
		case st.IsDir():
			if err := t.dir(p, 0o755); err != nil {
				return nil, err
			}
		case st.Mode().IsRegular():
			if err := t.file(p, nil, 0o644); err != nil {
				return nil, err
			}
		default:
			continue
		}
		bind(real, p)
	}
	return binds, nil
}

// resolveInRoot resolves every symlink in image path p as the container would see it if root
// were its root file system: absolute link targets and ".." stop at root. It returns the
// resolved image path.
func resolveInRoot(root, p string) (string, error) {
	const maxLinks = 40
	parts := strings.Split(p, "/")
	cur := "/"
	links := 0
	for len(parts) > 0 {
		c := parts[0]
		parts = parts[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(next)))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("images: too many levels of symbolic links at %s", next)
		}
		target, err := os.Readlink(filepath.Join(root, filepath.FromSlash(next)))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return cur, nil
}

// within reports whether image path p is one of dirs or below one of them.
func within(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}
