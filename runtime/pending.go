package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/console"

	"github.com/airlock-mcp/airlock/pipeline"
)

// pendingApprovals holds the calls waiting for the console. Elicitation stays the first
// choice: only calls whose client cannot elicit wait here.
type pendingApprovals struct {
	timeout time.Duration
	mu      sync.Mutex
	items   map[string]*pendingItem
	// changed is closed and replaced whenever the set changes, for the console's stream.
	changed chan struct{}
}

type pendingItem struct {
	console.Pending
	answer chan consoleAnswer // buffered 1: the first answer wins
}

type consoleAnswer struct {
	approve bool
	by      string
}

func newPendingApprovals(timeout time.Duration) *pendingApprovals {
	return &pendingApprovals{timeout: timeout, items: map[string]*pendingItem{}, changed: make(chan struct{})}
}

func (p *pendingApprovals) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of the set.
func (p *pendingApprovals) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// List returns the waiting calls, oldest first.
func (p *pendingApprovals) List() []console.Pending {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]console.Pending, 0, len(p.items))
	for _, it := range p.items {
		out = append(out, it.Pending)
	}
	slices.SortFunc(out, func(a, b console.Pending) int { return a.Since.Compare(b.Since) })
	return out
}

// errNoSuchPending is the answer to a decision on a call that is no longer waiting (answered,
// timed out, cancelled by its client).
var errNoSuchPending = errors.New("no call is waiting under that id (answered, timed out or cancelled)")

// Decide answers a waiting call; by names who did (the console user's grant).
func (p *pendingApprovals) Decide(id string, approve bool, by string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	it, ok := p.items[id]
	if !ok {
		return errNoSuchPending
	}
	select {
	case it.answer <- consoleAnswer{approve, by}:
	default:
		return errNoSuchPending // answered a moment ago
	}
	return nil
}

// wait shows req in the console and waits for an answer, the timeout or ctx.
func (p *pendingApprovals) wait(ctx context.Context, grant, session string, req pipeline.ApprovalRequest) (consoleAnswer, error) {
	now := time.Now()
	it := &pendingItem{Pending: console.Pending{ID: rand.Text(), Tool: req.Tool, Grant: grant, Session: session,
		Args: req.Args, Rule: req.Decision.Rule, Message: req.Decision.Message, Since: now, Deadline: now.Add(p.timeout)},
		answer: make(chan consoleAnswer, 1)}
	p.mu.Lock()
	p.items[it.ID] = it
	p.notifyLocked()
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.items, it.ID)
		p.notifyLocked()
		p.mu.Unlock()
	}()
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case a := <-it.answer:
		return a, nil
	case <-t.C:
		return consoleAnswer{}, fmt.Errorf("nobody answered in the console within %s", p.timeout)
	case <-ctx.Done():
		return consoleAnswer{}, context.Cause(ctx)
	}
}

// consoleApprover asks the console's humans. The answer's author is kept for the record.
type consoleApprover struct {
	p              *pendingApprovals
	grant, session string
}

func (c consoleApprover) Approve(ctx context.Context, req pipeline.ApprovalRequest) (bool, error) {
	// The same rule as elicitation: a request the prompt cannot show in full is refused, not
	// shown in part.
	if _, err := showArgs(req.Args); err != nil {
		return false, err
	}
	a, err := c.p.wait(ctx, c.grant, c.session, req)
	if err != nil {
		return false, err
	}
	if !a.approve {
		return false, fmt.Errorf("denied in the console by %s", a.by)
	}
	return true, nil
}
