package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// AdminRequest is one request on the admin socket: a JSON line.
type AdminRequest struct {
	// Op is "apply" (read the state store now and stop the calls its kill switches and
	// revocations no longer allow), "reload" (the policy) or "status".
	Op string `json:"op"`
}

// AdminReply is the answer: a JSON line.
type AdminReply struct {
	PID     int           `json:"pid"`
	Stopped int           `json:"stopped,omitempty"`
	Reload  *PolicyReload `json:"reload,omitempty"`
	Status  *AdminStatus  `json:"status,omitempty"`
	Error   string        `json:"error,omitempty"`
}

// AdminStatus is a server's state as `status` reports it.
type AdminStatus struct {
	Policy       string `json:"policy"`
	PolicySHA256 string `json:"policy_sha256"`
	Store        string `json:"store"`
	InFlight     int    `json:"in_flight"`
}

// AdminDir is where servers sharing a state directory put their admin sockets, one per process
// (<pid>.sock), so `airlock kill` and `airlock policy reload` reach every one.
func AdminDir(stateDir string) string { return filepath.Join(stateDir, "admin") }

// ListenAdmin creates this process's admin socket in dir. Only Airlock's own user (and root)
// can reach it: the directory is 0700 and every connection's uid is checked again.
func ListenAdmin(dir string) (net.Listener, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	path := filepath.Join(dir, strconv.Itoa(os.Getpid())+".sock")
	_ = os.Remove(path) // a dead process's of the same pid
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

// peerCred is the uid of the process at the other end of a Unix connection (SO_PEERCRED:
// the kernel's record of who connected, which the peer cannot forge).
func peerCred(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// ServeAdmin answers admin requests on ln until ctx ends.
func (r *Runtime) ServeAdmin(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	self := uint32(os.Getuid())
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer c.Close()
			// The admin socket stops calls and swaps the policy: only Airlock's own user and
			// root may use it, whatever the file's mode says.
			if uid, err := peerCred(c); err != nil || (uid != self && uid != 0) {
				_ = json.NewEncoder(c).Encode(AdminReply{PID: os.Getpid(), Error: "permission denied: only the user running airlock may use its admin socket"})
				return
			}
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReader(c).ReadBytes('\n')
			if err != nil {
				return
			}
			var req AdminRequest
			reply := AdminReply{PID: os.Getpid()}
			if err := json.Unmarshal(line, &req); err != nil {
				reply.Error = "bad request: " + err.Error()
			} else {
				r.admin(ctx, req, &reply)
			}
			_ = json.NewEncoder(c).Encode(reply)
		})
	}
}

func (r *Runtime) admin(ctx context.Context, req AdminRequest, reply *AdminReply) {
	switch req.Op {
	case "apply":
		n, err := r.control.apply(ctx, r.calls, true)
		reply.Stopped = n
		if err != nil {
			reply.Error = err.Error()
		}
	case "reload":
		rl, err := r.ReloadPolicy()
		reply.Reload = &rl
		if err != nil {
			reply.Error = err.Error()
		}
	case "status":
		e := r.pipe.Policy()
		reply.Status = &AdminStatus{Policy: e.Policy().Name(), PolicySHA256: e.Policy().SHA256(), Store: r.store.Describe(), InFlight: r.calls.count()}
	default:
		reply.Error = fmt.Sprintf("unknown op %q (apply, reload, status)", req.Op)
	}
}

// AskServers sends req to every server's admin socket in dir and returns their replies. A
// socket nobody answers on (its server is gone) is removed.
func AskServers(ctx context.Context, dir string, req AdminRequest) ([]AdminReply, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []AdminReply
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sock") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		rep, err := askServer(ctx, path, req)
		if errors.Is(err, unix.ECONNREFUSED) {
			_ = os.Remove(path)
			continue
		}
		if err != nil {
			pid, _ := strconv.Atoi(strings.TrimSuffix(e.Name(), ".sock"))
			rep = AdminReply{PID: pid, Error: err.Error()}
		}
		out = append(out, rep)
	}
	return out, nil
}

func askServer(ctx context.Context, path string, req AdminRequest) (AdminReply, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return AdminReply{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return AdminReply{}, err
	}
	var rep AdminReply
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&rep); err != nil {
		return AdminReply{}, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return rep, nil
}
