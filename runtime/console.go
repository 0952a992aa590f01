package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/airlock-mcp/airlock/console"
	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/state"
	"github.com/airlock-mcp/airlock/upstream/pins"
)

// ConsoleConfig turns the web console on (docs/console.md).
type ConsoleConfig struct {
	// Enabled serves the console under /console on `airlock serve --http`.
	Enabled bool `yaml:"enabled"`
	// AdminLabel is the grant label (key=value) that may use it; default console=admin. The
	// config's own grant may too, on loopback without tokens.
	AdminLabel string `yaml:"admin_label"`
	// ApprovalTimeout bounds how long a call waits for an answer in the console; default 10m.
	ApprovalTimeout Duration `yaml:"approval_timeout"`
	// LocalLogin lets Airlock's own uid open the console on loopback without a token. Off by
	// default: any process of that uid (an agent's own, outside its sandboxes) could then
	// approve its own calls and lift kill switches.
	LocalLogin bool `yaml:"local_login"`
}

const defaultAdminLabel = "console=admin"

func (c ConsoleConfig) adminLabel() (string, string) {
	l := c.AdminLabel
	if l == "" {
		l = defaultAdminLabel
	}
	k, v, _ := strings.Cut(l, "=")
	return k, v
}

func (c *Config) validateConsole() error {
	if l := c.Console.AdminLabel; l != "" {
		if k, _, ok := strings.Cut(l, "="); !ok || k == "" {
			return c.errAt(fmt.Sprintf("%q: want KEY=VALUE, e.g. console=admin", l), "console", "admin_label")
		}
	}
	if d := time.Duration(c.Console.ApprovalTimeout); d < 0 || d > 24*time.Hour {
		return c.errAt(fmt.Sprintf("%s: want up to 24h", d), "console", "approval_timeout")
	}
	return nil
}

// callCounts counts calls by decision since the runtime opened, for the console's summary.
type callCounts struct {
	allow, deny, approve, errs atomic.Int64
}

func (c *callCounts) add(res pipeline.Result) {
	switch {
	case res.Denied:
		c.deny.Add(1)
	case res.IsError:
		c.errs.Add(1)
	default:
		c.allow.Add(1)
	}
}

// consoleBackend is the runtime as the console sees it.
type consoleBackend struct {
	rt    *Runtime
	front *httpFront
}

func (b consoleBackend) Login(r *http.Request, token string) (console.Admin, error) {
	if token == "" {
		// Token-less: the operator's own uid on loopback, as for MCP requests.
		if b.front.local == nil || !b.rt.cfg.Console.LocalLogin {
			return console.Admin{}, errors.New("log in with an admin token (a grant labelled for the console)")
		}
		if err := b.front.checkPeer(r); err != nil {
			return console.Admin{}, err
		}
		return console.Admin{Grant: b.front.local.ID}, nil
	}
	g, err := b.front.authenticate(r.Context(), "Bearer "+token)
	if err != nil {
		return console.Admin{}, err
	}
	k, v := b.rt.cfg.Console.adminLabel()
	if g.Labels[k] != v {
		return console.Admin{}, fmt.Errorf("grant %s may not use the console (it needs the label %s=%s)", g.ID, k, v)
	}
	return console.Admin{Grant: g.ID}, nil
}

// Check refuses a console session whose grant was revoked or expired since it logged in, or
// re-created under its name without the admin label.
func (b consoleBackend) Check(ctx context.Context, a console.Admin) error {
	g, err := b.rt.control.named(ctx, a.Grant)
	if err != nil {
		return err
	}
	if k, v := b.rt.cfg.Console.adminLabel(); g != nil && g.Labels[k] != v {
		return fmt.Errorf("grant %s no longer has the label %s=%s", g.Name, k, v)
	}
	return nil
}

func (b consoleBackend) Pending() []console.Pending {
	return b.rt.pending.List()
}

func (b consoleBackend) PendingChanged() <-chan struct{} { return b.rt.pending.Changed() }

func (b consoleBackend) Decide(id string, approve bool, by string) error {
	if err := b.rt.pending.Decide(id, approve, by); err != nil {
		return err
	}
	b.rt.log.Info().Str("event", "console.answer").Str("pending", id).Bool("approve", approve).Str("by", by).Msg("approval answered in the console")
	return nil
}

func (b consoleBackend) Kills(ctx context.Context) ([]state.Kill, error) {
	cur, err := b.rt.control.get(ctx)
	return cur.Kills, err
}

func (b consoleBackend) SetKill(ctx context.Context, k state.Kill) (int, error) {
	if err := b.rt.store.SetKill(ctx, k); err != nil {
		return 0, err
	}
	return b.rt.control.apply(ctx, b.rt.calls, true)
}

func (b consoleBackend) ClearKill(ctx context.Context, t state.Target) (bool, error) {
	return b.rt.store.ClearKill(ctx, t)
}

func (b consoleBackend) Pins(ctx context.Context) ([]pins.Status, error) {
	if b.rt.gw == nil {
		return []pins.Status{}, nil
	}
	ups, err := b.rt.gw.store.Upstreams(ctx)
	if err != nil {
		return nil, err
	}
	out := []pins.Status{}
	for _, u := range ups {
		st, err := b.rt.gw.store.List(ctx, u)
		if err != nil {
			return nil, err
		}
		out = append(out, st...)
	}
	return out, nil
}

func (b consoleBackend) PinDiff(ctx context.Context, upstream, tool string) (string, error) {
	if b.rt.gw == nil {
		return "", errors.New("no upstreams")
	}
	return b.rt.gw.store.Diff(ctx, upstream, tool)
}

func (b consoleBackend) ApprovePin(ctx context.Context, upstream, tool, hash string) error {
	if b.rt.gw == nil {
		return errors.New("no upstreams")
	}
	_, err := b.rt.gw.store.Approve(ctx, upstream, tool, hash)
	return err
}

func (b consoleBackend) AuditPath() string { return b.rt.cfg.Audit.Path }

func (b consoleBackend) Summary(context.Context) console.Summary {
	c := &b.rt.counts
	return console.Summary{
		Calls:    map[string]int64{"allow": c.allow.Load(), "deny": c.deny.Load(), "error": c.errs.Load()},
		InFlight: b.rt.calls.count(), Pending: len(b.rt.pending.List()),
		Policy: b.rt.pipe.Policy().Policy().SHA256(), Store: b.rt.store.Describe(), Started: b.rt.started,
	}
}
