package runc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// runcCheckFile, in the run state dir, remembers the runc binary Open last found built with
// seccomp, so that `airlock exec` does not start a whole extra Go process (`runc --version`,
// several milliseconds) on every call.
const runcCheckFile = "runc-checked"

// checkRunc makes sure runc was built with seccomp (see Version), asking the binary only when
// it is not the one a previous Open already asked: the answer is remembered under a key of
// the binary's path and identity (device, inode, size, modification and change times), so a
// rebuilt, replaced, moved or touched runc is asked again. Only a success is remembered.
//
// This is an early, clear refusal rather than the only line of defence: a runc built without
// seccomp refuses every config that carries a filter ("seccomp: config provided but seccomp
// not supported"), so a stale answer could never run a sandbox without its filter. The file
// lives in the root-only state dir; whoever can write it can already replace runc.
func (b *Backend) checkRunc(ctx context.Context) error {
	key, keyErr := runcKey(b.runc)
	p := filepath.Join(b.stateDir, runcCheckFile)
	if keyErr == nil {
		if data, err := os.ReadFile(p); err == nil {
			if first, _, _ := strings.Cut(string(data), "\n"); first == key {
				return nil
			}
		}
	}
	v, err := b.Version(ctx)
	if err != nil || keyErr != nil {
		return err
	}
	// Written whole and renamed into place: a concurrent Open reads the old answer or the new
	// one, never half of one. Failing to remember costs only speed.
	tmp, err := os.CreateTemp(b.stateDir, "."+runcCheckFile+"-*")
	if err != nil {
		return nil
	}
	_, werr := tmp.WriteString(key + "\n" + v + "\n")
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), p) != nil {
		_ = os.Remove(tmp.Name())
	}
	return nil
}

// runcKey identifies the runc binary at path (after symlinks): any change to the file, or a
// different file at the path, changes the key.
func runcKey(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: no file identity", abs)
	}
	return fmt.Sprintf("v1 path=%q dev=%d ino=%d size=%d mtime=%d.%09d ctime=%d.%09d",
		abs, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}
