// Package pool keeps prestarted sandboxes ready so that a call finds its container started.
//
// A Pool wraps a Backend that is also a sandbox.Prestarter (the embedded runc backend). For
// each shape of sandbox in use (sandbox.Prestarter.WarmKey: the same image, mounts, limits,
// identity and filter), it keeps up to Config.Size sandboxes created and started, each with its
// init waiting for one command. A Run of that shape takes one, sends its command, and the
// sandbox is removed when the command ends, exactly as after a cold run: no sandbox ever runs a
// second command. Taking one wakes the filler, which starts a replacement in the background.
//
// A Run that finds none ready prestarts a sandbox for itself and runs in it at once, so every
// run of a warmable shape goes through the same path; specs that no prestarted sandbox can run
// (a live stream, an egress proxy, copy mounts) go to the backend's own Run.
//
// Ready sandboxes hold their share of the host's run budget (Config.Budget) while they wait,
// and are never allowed to keep a call waiting for it: the budget's owner asks the pool to Shed
// one first. A ready sandbox older than Config.MaxAge is replaced (the workspace it has mounted
// is live, but a rebuilt image is not), a shape unused that long is dropped, and Close removes
// everything ready before the backend closes.
package pool

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Defaults of Config.
const (
	DefaultSize      = 2
	DefaultMaxShapes = 8
	DefaultMaxAge    = 10 * time.Minute
	DefaultFillers   = 1
)

// refillDelay is how long after a call the filler waits before it starts a replacement.
const refillDelay = 30 * time.Millisecond

// Budget is the host's run budget (pids and memory of all sandboxes at once). The pool never
// waits for it: a ready sandbox is started only when its share fits now.
type Budget interface {
	TryReserve(pids, mem int64) bool
	Release(pids, mem int64)
	// Contended reports that a run waits for room: a sandbox that finishes starting then
	// gives its share up at once instead of being filed as ready.
	Contended() bool
}

// Config sizes a Pool.
type Config struct {
	// Size is how many sandboxes are kept ready per shape; 0 turns the pool off (every Run
	// is the backend's own).
	Size int
	// MaxShapes is how many shapes are kept ready at once; the least recently used one
	// makes room for a new one.
	MaxShapes int
	// MaxAge is how long a ready sandbox waits before it is replaced, and how long an
	// unused shape is kept.
	MaxAge time.Duration
	// Fillers is how many prestarts run at once in the background.
	Fillers int
	// Budget, when set, is reserved for every ready sandbox.
	Budget Budget
	Logger zerolog.Logger
}

// Stats counts what the pool did.
type Stats struct {
	Hits      int64 // runs that took a ready sandbox
	Misses    int64 // runs that found none ready and prestarted their own
	Cold      int64 // runs of specs no prestarted sandbox can run (the backend's own Run)
	Prestarts int64 // sandboxes the filler started
	Failures  int64 // prestarts that failed
	Ready     int   // sandboxes ready now
}

// Pool is a sandbox.Backend that runs warmable specs in prestarted sandboxes.
type Pool struct {
	backend sandbox.Backend
	pre     sandbox.Prestarter
	cfg     Config
	log     zerolog.Logger

	mu     sync.Mutex
	shapes map[string]*shape
	closed bool

	wake    chan struct{} // one pending wake-up of the fillers
	done    chan struct{} // closed by Close
	stop    context.CancelFunc
	ctx     context.Context
	workers sync.WaitGroup // fillers and removals under way

	hits, misses, cold, prestarts, failures atomic.Int64
}

// shape is the pool of one WarmKey.
type shape struct {
	key      string
	spec     sandbox.Spec // what prestarts are made from (no labels, no stdin)
	ready    []ready      // oldest first
	starting int
	lastUse  time.Time
}

type ready struct {
	w         sandbox.Warm
	at        time.Time
	pids, mem int64
}

var _ sandbox.Backend = (*Pool)(nil)

// New wraps backend. A backend that cannot prestart, or a Size of 0, gives a Pool that passes
// every Run through.
func New(backend sandbox.Backend, cfg Config) *Pool {
	if cfg.MaxShapes <= 0 {
		cfg.MaxShapes = DefaultMaxShapes
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Fillers <= 0 {
		cfg.Fillers = DefaultFillers
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Pool{backend: backend, cfg: cfg, log: cfg.Logger.With().Str("component", "pool").Logger(),
		shapes: map[string]*shape{}, wake: make(chan struct{}, 1), done: make(chan struct{}), ctx: ctx, stop: stop}
	if pre, ok := backend.(sandbox.Prestarter); ok && cfg.Size > 0 {
		p.pre = pre
		for range cfg.Fillers {
			p.workers.Add(1)
			go p.fill()
		}
	}
	return p
}

// Name is the backend's.
func (p *Pool) Name() string { return p.backend.Name() }

// Reap is the backend's.
func (p *Pool) Reap(ctx context.Context) ([]sandbox.Reaped, error) { return p.backend.Reap(ctx) }

// Run runs spec in a ready sandbox of its shape, or in one prestarted for it now, or, for a
// spec no prestarted sandbox can run, with the backend's own Run.
func (p *Pool) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	if p.pre == nil {
		return p.backend.Run(ctx, spec)
	}
	key, ok, err := p.pre.WarmKey(ctx, spec)
	if err != nil || !ok {
		// The backend's Run reports the spec's error the way it always does.
		p.cold.Add(1)
		return p.backend.Run(ctx, spec)
	}
	// The replacement starts once this call is done: started now, `runc run` would take
	// the CPU the call's own command needs (on a small host, all of it) for its whole run.
	defer p.signal()
	if w := p.take(key, spec); w != nil {
		p.hits.Add(1)
		res, err := w.Run(ctx, spec)
		if !errors.Is(err, sandbox.ErrStale) || res.Ran {
			res.Ready = true
			return res, err
		}
		// The sandbox was gone and nothing ran (its init had given up or been killed):
		// the call is not to fail for that, it runs in a fresh one.
		p.log.Warn().Err(err).Str("event", "pool.stale").Str("container", res.ContainerID).Msg("ready sandbox unusable; running the call in a fresh one")
	} else {
		p.misses.Add(1)
	}
	w, err := p.pre.Prestart(ctx, spec)
	if err != nil {
		if ctx.Err() != nil {
			return sandbox.Result{}, err
		}
		// Whatever keeps this backend from prestarting (an image whose init predates
		// prestarted sandboxes, a kernel without pidfds), the call runs as it always could:
		// cold.
		p.log.Warn().Err(err).Str("event", "pool.prestart_failed").Msg("running the call cold")
		p.cold.Add(1)
		return p.backend.Run(ctx, spec)
	}
	return w.Run(ctx, spec)
}

// take marks key's shape used and returns its oldest ready sandbox, if any, releasing its
// share of the budget (the call holds its own). The caller wakes the fillers once its command
// is done.
func (p *Pool) take(key string, spec sandbox.Spec) sandbox.Warm {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	s := p.shapes[key]
	if s == nil {
		p.evictForNewShape()
		tmpl := spec
		tmpl.Labels, tmpl.Stdin, tmpl.Streams = nil, nil, nil
		// Its own copies: the caller's spec is the caller's to change.
		tmpl.Argv, tmpl.Env, tmpl.Loosened = slices.Clone(spec.Argv), slices.Clone(spec.Env), slices.Clone(spec.Loosened)
		tmpl.Mounts, tmpl.Tmpfs = slices.Clone(spec.Mounts), slices.Clone(spec.Tmpfs)
		s = &shape{key: key, spec: tmpl}
		p.shapes[key] = s
	}
	s.lastUse = time.Now()
	if len(s.ready) == 0 {
		return nil
	}
	r := s.ready[0]
	s.ready = s.ready[1:]
	p.release(r)
	return r.w
}

// evictForNewShape drops the least recently used shape when MaxShapes are kept. p.mu held.
func (p *Pool) evictForNewShape() {
	if len(p.shapes) < p.cfg.MaxShapes {
		return
	}
	var lru *shape
	for _, s := range p.shapes {
		if lru == nil || s.lastUse.Before(lru.lastUse) {
			lru = s
		}
	}
	p.dropShape(lru)
}

// dropShape forgets s and removes its ready sandboxes in the background. p.mu held.
func (p *Pool) dropShape(s *shape) {
	delete(p.shapes, s.key)
	for _, r := range s.ready {
		p.discard(r)
	}
	s.ready = nil
}

// release gives r's share of the budget back. p.mu held.
func (p *Pool) release(r ready) {
	if p.cfg.Budget != nil {
		p.cfg.Budget.Release(r.pids, r.mem)
	}
}

// discard gives r's share back and removes its sandbox off the caller's path. p.mu held.
func (p *Pool) discard(r ready) {
	p.release(r)
	p.removeLater(r.w)
}

// removeLater removes an unused sandbox off the caller's path.
func (p *Pool) removeLater(w sandbox.Warm) {
	p.workers.Add(1)
	go func() {
		defer p.workers.Done()
		if err := w.Close(); err != nil {
			p.log.Error().Err(err).Str("event", "pool.remove_failed").Msg("could not remove a ready sandbox; it is reaped at the next start")
		}
	}()
}

// Shed removes the oldest ready sandbox of any shape and gives its budget back; false when
// none is ready. The budget's owner calls it before it would make a call wait.
func (p *Pool) Shed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	var oldest *shape
	for _, s := range p.shapes {
		if len(s.ready) > 0 && (oldest == nil || s.ready[0].at.Before(oldest.ready[0].at)) {
			oldest = s
		}
	}
	if oldest == nil {
		return false
	}
	p.discard(oldest.ready[0])
	oldest.ready = oldest.ready[1:]
	return true
}

// Stats reports the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	n := 0
	for _, s := range p.shapes {
		n += len(s.ready)
	}
	p.mu.Unlock()
	return Stats{Hits: p.hits.Load(), Misses: p.misses.Load(), Cold: p.cold.Load(),
		Prestarts: p.prestarts.Load(), Failures: p.failures.Load(), Ready: n}
}

// signal wakes a filler.
func (p *Pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill is a filler: it starts what the shapes lack until there is nothing to do, then waits
// for a take, a finished prestart or the age check.
func (p *Pool) fill() {
	defer p.workers.Done()
	tick := time.NewTicker(max(p.cfg.MaxAge/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-p.wake:
			// Let the call that took a sandbox answer first: `runc run` would take the
			// CPU its response needs (on a small host, all of it).
			select {
			case <-time.After(refillDelay):
			case <-p.done:
				return
			}
		case <-tick.C:
			p.expire()
		}
		for {
			s, spec, pids, mem := p.nextJob()
			if s == nil {
				break
			}
			w, err := p.pre.Prestart(p.ctx, spec)
			p.finish(s, w, err, pids, mem)
		}
	}
}

// nextJob picks a shape short of ready sandboxes whose share of the budget fits now, and
// counts the prestart as under way. p.mu taken.
func (p *Pool) nextJob() (*shape, sandbox.Spec, int64, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, sandbox.Spec{}, 0, 0
	}
	for _, s := range p.shapes {
		if len(s.ready)+s.starting >= p.cfg.Size {
			continue
		}
		pids, mem := s.spec.Limits.Pids, s.spec.Limits.MemoryBytes
		if p.cfg.Budget != nil && !p.cfg.Budget.TryReserve(pids, mem) {
			continue
		}
		s.starting++
		return s, s.spec, pids, mem
	}
	return nil, sandbox.Spec{}, 0, 0
}

// finish files a prestart's outcome.
func (p *Pool) finish(s *shape, w sandbox.Warm, err error, pids, mem int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.starting--
	r := ready{w: w, at: time.Now(), pids: pids, mem: mem}
	if err != nil {
		// Dropped rather than retried: what made it fail (a workspace that is gone, a
		// rebuilt image, a full disk) would make a retry fail too. The next call of the
		// shape brings it back, starting its own sandbox and meeting the error itself.
		p.release(r)
		p.failures.Add(1)
		if p.shapes[s.key] == s {
			p.dropShape(s)
		}
		if !errors.Is(err, context.Canceled) {
			p.log.Info().Err(err).Str("event", "pool.prestart_failed").Msg("could not prestart a sandbox; the shape is no longer kept warm until its next call")
		}
		return
	}
	p.prestarts.Add(1)
	contended := p.cfg.Budget != nil && p.cfg.Budget.Contended()
	if p.closed || p.shapes[s.key] != s || w.Key() != s.key || contended {
		// Closed, dropped meanwhile, started for another shape than the template's (an
		// image rebuilt in between), or a run waits for the room it holds.
		p.discard(r)
		return
	}
	s.ready = append(s.ready, r)
}

// expire replaces ready sandboxes older than MaxAge and drops shapes unused that long.
func (p *Pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for _, s := range p.shapes {
		if now.Sub(s.lastUse) > p.cfg.MaxAge && s.starting == 0 {
			p.dropShape(s)
			continue
		}
		for len(s.ready) > 0 && now.Sub(s.ready[0].at) > p.cfg.MaxAge {
			p.discard(s.ready[0])
			s.ready = s.ready[1:]
		}
	}
}

// Close stops the fillers (a prestart under way is cancelled), removes every ready sandbox and
// waits for the removals. The backend stays open; its owner closes it after.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.stop()
	for _, s := range p.shapes {
		p.dropShape(s)
	}
	p.mu.Unlock()
	p.workers.Wait()
	return nil
}
