package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/policies"
)

// liveServer is an MCP server the runtime built, with the tools it lists: a policy reload
// lists and unlists tools on each.
type liveServer struct {
	srv   *mcp.Server
	grant policies.Grant
	h     *mcpHandler

	mu     sync.Mutex
	listed map[string]bool
}

func (ls *liveServer) isListed(name string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.listed[name]
}

// liveServers is the set of servers a reload must update.
type liveServers struct {
	mu  sync.Mutex
	all map[*mcp.Server]*liveServer
}

func (l *liveServers) add(ls *liveServer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.all == nil {
		l.all = map[*mcp.Server]*liveServer{}
	}
	l.all[ls.srv] = ls
}

func (l *liveServers) remove(srv *mcp.Server) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.all, srv)
}

func (l *liveServers) list() []*liveServer {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*liveServer, 0, len(l.all))
	for _, ls := range l.all {
		out = append(out, ls)
	}
	return out
}

// resync lists on ls exactly the tools the current policy can allow its grant. The SDK tells
// the server's sessions (notifications/tools/list_changed) when the list changes.
func (r *Runtime) resync(ls *liveServer) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	want := map[string]bool{}
	for _, t := range r.VisibleTools(ls.grant) {
		want[t.Name()] = true
		if !ls.listed[t.Name()] {
			// A raw ToolHandler: the SDK hands over the arguments untouched, so the
			// pipeline's strict decoder (duplicate keys, case-folded keys, NUL, depth) sees
			// the bytes the client sent, not a re-encoding that already lost the evidence.
			ls.srv.AddTool(mcpTool(t), ls.h.handle)
			ls.listed[t.Name()] = true
		}
	}
	var gone []string
	for name := range ls.listed {
		if !want[name] {
			gone = append(gone, name)
			delete(ls.listed, name)
		}
	}
	if len(gone) > 0 {
		ls.srv.RemoveTools(gone...)
	}
}

// PolicyReload is what a reload did.
type PolicyReload struct {
	Policy  string `json:"policy"`
	SHA256  string `json:"policy_sha256"`
	Changed bool   `json:"changed"`
}

// ReloadPolicy reads the config's policy again and, when it is valid and differs, decides every
// later call by it and updates the tools each client is shown. An invalid policy changes
// nothing: the current one stays, and the error says why.
func (r *Runtime) ReloadPolicy() (PolicyReload, error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	name := r.cfg.Policy
	if name == "" {
		name = "default policy (embedded)"
	}
	cur := r.pipe.Policy()
	out := PolicyReload{Policy: name, SHA256: cur.Policy().SHA256()}
	pol, err := r.cfg.LoadPolicy()
	if err != nil {
		r.log.Error().Err(err).Str("event", "policy.reload_failed").Str("policy", name).Str("policy_sha256", out.SHA256).
			Msg("policy not reloaded; the current one stays in force")
		return out, fmt.Errorf("policy not reloaded, %s stays in force: %w", out.SHA256[:12], err)
	}
	if pol.SHA256() == out.SHA256 {
		return out, nil
	}
	engine := newEngine(pol, r.store)
	if err := r.pipe.SetPolicy(engine); err != nil {
		return out, err
	}
	r.log.Info().Str("event", "policy.reloaded").Str("policy", name).Str("from", out.SHA256).Str("policy_sha256", pol.SHA256()).Msg("policy reloaded")
	out.SHA256, out.Changed = pol.SHA256(), true
	for _, ls := range r.servers.list() {
		r.resync(ls)
	}
	return out, nil
}

// policyStamp identifies one version of the policy file, to notice when it changes.
type policyStamp struct {
	ino, size uint64
	mtime     int64
}

func statPolicy(path string) (policyStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return policyStamp{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return policyStamp{}, errors.New("no inode")
	}
	return policyStamp{ino: st.Ino, size: uint64(st.Size), mtime: fi.ModTime().UnixNano()}, nil
}

// policyPoll is how often the policy file is looked at for changes.
const policyPoll = time.Second

// watchPolicy reloads the policy when its file changes, until ctx ends. The file is compared
// by inode, size and modification time: editors that write in place and those that rename a
// new file over the old one are both seen.
func (r *Runtime) watchPolicy(ctx context.Context) {
	if r.cfg.Policy == "" {
		return // the embedded policy never changes
	}
	last, _ := statPolicy(r.cfg.Policy)
	t := time.NewTicker(policyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := statPolicy(r.cfg.Policy)
		if err != nil || st == last {
			// A missing file (mid-rename, or removed) keeps the policy in force; the next
			// version to appear is loaded.
			continue
		}
		last = st
		_, _ = r.ReloadPolicy() // logged either way
	}
}
