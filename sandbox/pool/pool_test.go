package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// The fakes stand in for the container boundary: a backend that can prestart (its WarmKey is
// the spec's memory and pids limits; an egress proxy spec is not warmable) and warm sandboxes
// that record what was done to them. What the pool must never do to a real sandbox (run a
// second command in it, remove one a call has taken, leave one behind) is checked on every
// test's fakes when the test ends (newPool).

var errBoom = errors.New("prestart failed: runc exploded")

type fakeBackend struct {
	mu         sync.Mutex
	warms      []*fakeWarm               // every sandbox Prestart made, in order
	cold       []sandbox.Spec            // specs the backend's own Run ran
	attempts   int                       // Prestart calls, failed ones included
	failWith   error                     // when set, Prestart fails with it
	keyErr     error                     // when set, WarmKey fails with it
	fillerHook func(ctx context.Context) // when set, runs in every prestart of the filler (a spec without labels)
}

func (b *fakeBackend) Name() string { return "fake" }

func (b *fakeBackend) Reap(context.Context) ([]sandbox.Reaped, error) {
	return []sandbox.Reaped{{ContainerID: "leftover"}}, nil
}

func (b *fakeBackend) Run(_ context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cold = append(b.cold, spec)
	return sandbox.Result{ContainerID: fmt.Sprintf("cold-%d", len(b.cold)), Ran: true}, nil
}

func (b *fakeBackend) WarmKey(_ context.Context, spec sandbox.Spec) (string, bool, error) {
	b.mu.Lock()
	err := b.keyErr
	b.mu.Unlock()
	if err != nil {
		return "", false, err
	}
	if spec.Network == sandbox.NetworkProxy {
		return "", false, nil
	}
	return keyOf(spec), true, nil
}

func keyOf(spec sandbox.Spec) string {
	return fmt.Sprintf("mem=%d/pids=%d", spec.Limits.MemoryBytes, spec.Limits.Pids)
}

func (b *fakeBackend) Prestart(ctx context.Context, spec sandbox.Spec) (sandbox.Warm, error) {
	b.mu.Lock()
	b.attempts++
	fail, hook := b.failWith, b.fillerHook
	b.mu.Unlock()
	// The filler prestarts from the shape's template, which has no labels; a call's own
	// prestart carries the call's labels.
	if hook != nil && spec.Labels == nil {
		hook(ctx)
	}
	if fail != nil {
		return nil, fail
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	w := &fakeWarm{id: fmt.Sprintf("warm-%d", len(b.warms)+1), key: keyOf(spec), made: spec}
	b.warms = append(b.warms, w)
	return w, nil
}

func (b *fakeBackend) set(f func(b *fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *fakeBackend) prestarts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts
}

func (b *fakeBackend) allWarms() []*fakeWarm {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.warms)
}

func (b *fakeBackend) colds() []sandbox.Spec {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.cold)
}

// runCount is how many commands all warm sandboxes were asked to run.
func (b *fakeBackend) runCount() int {
	n := 0
	for _, w := range b.allWarms() {
		runs, _ := w.state()
		n += runs
	}
	return n
}

// plainBackend is a Backend that cannot prestart.
type plainBackend struct{ b *fakeBackend }

func (p plainBackend) Name() string { return p.b.Name() }
func (p plainBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	return p.b.Run(ctx, spec)
}
func (p plainBackend) Reap(ctx context.Context) ([]sandbox.Reaped, error) { return p.b.Reap(ctx) }

type fakeWarm struct {
	id, key string
	made    sandbox.Spec // the spec it was prestarted from

	mu     sync.Mutex
	runs   int
	closes int
	ran    sandbox.Spec   // the spec of its first Run
	res    sandbox.Result // with err: what Run answers instead of running
	err    error
}

func (w *fakeWarm) Key() string { return w.key }

func (w *fakeWarm) Run(_ context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runs++
	switch {
	case w.runs > 1:
		return sandbox.Result{}, fmt.Errorf("%w: %s was used already", sandbox.ErrInvalidSpec, w.id)
	case w.closes > 0:
		return sandbox.Result{}, fmt.Errorf("%w: %s was removed", sandbox.ErrStale, w.id)
	case keyOf(spec) != w.key:
		return sandbox.Result{}, fmt.Errorf("%w: %s has another shape", sandbox.ErrInvalidSpec, w.id)
	}
	w.ran = spec
	if w.err != nil {
		res := w.res
		res.ContainerID = w.id
		return res, w.err
	}
	return sandbox.Result{ContainerID: w.id, Ran: true, Warm: true}, nil
}

func (w *fakeWarm) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closes++
	return nil
}

func (w *fakeWarm) state() (runs, closes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.runs, w.closes
}

func (w *fakeWarm) closed() bool { _, c := w.state(); return c > 0 }

func (w *fakeWarm) failRun(res sandbox.Result, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.res, w.err = res, err
}

// fakeBudget counts what the pool holds of the run budget.
type fakeBudget struct {
	mu        sync.Mutex
	refuse    bool
	contended bool
	tries     int
	asked     [][2]int64 // pids, mem of every TryReserve
	pids, mem int64      // held now
	reserves  int
	releases  int
}

func (g *fakeBudget) Contended() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.contended
}

func (g *fakeBudget) TryReserve(pids, mem int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tries++
	g.asked = append(g.asked, [2]int64{pids, mem})
	if g.refuse {
		return false
	}
	g.reserves++
	g.pids += pids
	g.mem += mem
	return true
}

func (g *fakeBudget) Release(pids, mem int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releases++
	g.pids -= pids
	g.mem -= mem
}

func (g *fakeBudget) setRefuse(v bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse = v
}

func (g *fakeBudget) held() (pids, mem int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pids, g.mem
}

func (g *fakeBudget) tried() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tries
}

// checkHeld fails unless the budget holds exactly n shares of spec's limits.
func (g *fakeBudget) checkHeld(t *testing.T, spec sandbox.Spec, n int) {
	t.Helper()
	pids, mem := g.held()
	if want := int64(n) * spec.Limits.Pids; pids != want {
		t.Errorf("budget holds %d pids, want %d (%d ready sandboxes)", pids, want, n)
	}
	if want := int64(n) * spec.Limits.MemoryBytes; mem != want {
		t.Errorf("budget holds %d bytes, want %d (%d ready sandboxes)", mem, want, n)
	}
}

// newPool starts a Pool on b and, when the test ends, closes it and checks what it did to
// every sandbox b made: run at most once, never both run and removed, and none left waiting
// (each was run or removed).
func newPool(t *testing.T, b sandbox.Backend, cfg Config) *Pool {
	t.Helper()
	p := New(b, cfg)
	t.Cleanup(func() {
		closeWithin(t, p)
		fb, ok := b.(*fakeBackend)
		if !ok {
			return
		}
		for _, w := range fb.allWarms() {
			switch runs, closes := w.state(); {
			case runs > 1:
				t.Errorf("%s ran %d commands; a sandbox runs one", w.id, runs)
			case runs > 0 && closes > 0:
				t.Errorf("%s was taken by a call and also removed by the pool", w.id)
			case runs == 0 && closes == 0:
				t.Errorf("%s was neither run nor removed after Close: a sandbox left behind", w.id)
			}
		}
		if g, ok := cfg.Budget.(*fakeBudget); ok {
			if pids, mem := g.held(); pids != 0 || mem != 0 {
				t.Errorf("after Close the budget still holds %d pids, %d bytes", pids, mem)
			}
		}
	})
	return p
}

// closeWithin closes p, failing if Close does not return: a filler or a removal that never
// ends.
func closeWithin(t *testing.T, p *Pool) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return: a filler or removal is stuck")
	}
}

// eventually polls cond until it holds or two seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func readyIs(p *Pool, n int) func() bool { return func() bool { return p.Stats().Ready == n } }

// readyOf is key's ready sandboxes, oldest first.
func readyOf(p *Pool, key string) []*fakeWarm {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.shapes[key]
	if s == nil {
		return nil
	}
	var out []*fakeWarm
	for _, r := range s.ready {
		out = append(out, r.w.(*fakeWarm))
	}
	return out
}

func newSpec(t *testing.T, opts ...sandbox.Option) sandbox.Spec {
	t.Helper()
	s, err := sandbox.New(append([]sandbox.Option{sandbox.WithArgv("true")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, p *Pool, spec sandbox.Spec) sandbox.Result {
	t.Helper()
	res, err := p.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	return res
}

// TestPassThrough: with Size 0, or a backend that cannot prestart, every Run is the backend's
// own and the pool keeps nothing.
func TestPassThrough(t *testing.T) {
	tests := []struct {
		name    string
		backend func(*fakeBackend) sandbox.Backend
		size    int
	}{
		{"size 0", func(b *fakeBackend) sandbox.Backend { return b }, 0},
		{"not a prestarter", func(b *fakeBackend) sandbox.Backend { return plainBackend{b} }, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{}
			p := newPool(t, tt.backend(b), Config{Size: tt.size})
			spec := newSpec(t)
			for range 3 {
				if res := run(t, p, spec); res.Warm {
					t.Errorf("Run = %+v, want the backend's own run", res)
				}
			}
			if n := len(b.colds()); n != 3 {
				t.Errorf("backend ran %d, want 3", n)
			}
			if n := b.prestarts(); n != 0 {
				t.Errorf("%d prestarts, want none", n)
			}
			if st := p.Stats(); st != (Stats{}) {
				t.Errorf("Stats = %+v, want zero", st)
			}
			if p.Shed() {
				t.Error("Shed = true with nothing ready")
			}
			if p.Name() != "fake" {
				t.Errorf("Name = %q", p.Name())
			}
			if r, err := p.Reap(context.Background()); err != nil || len(r) != 1 {
				t.Errorf("Reap = %v, %v; want the backend's", r, err)
			}
		})
	}
}

// TestColdSpecs: a spec no prestarted sandbox can run, or whose key cannot be computed, goes to
// the backend's own Run, is counted as cold and makes no shape.
func TestColdSpecs(t *testing.T) {
	tests := []struct {
		name   string
		opts   []sandbox.Option
		keyErr error
	}{
		{"egress proxy", []sandbox.Option{sandbox.WithEgress("/run/airlock/egress.sock")}, nil},
		{"key error", nil, errors.New("image not built")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{keyErr: tt.keyErr}
			p := newPool(t, b, Config{Size: 2})
			spec := newSpec(t, tt.opts...)
			run(t, p, spec)
			if cold := b.colds(); len(cold) != 1 || cold[0].Network != spec.Network {
				t.Errorf("backend ran %v, want the spec once", cold)
			}
			if st := p.Stats(); st.Cold != 1 || st.Hits != 0 || st.Misses != 0 {
				t.Errorf("Stats = %+v, want one cold run", st)
			}
			if n := b.prestarts(); n != 0 {
				t.Errorf("%d prestarts for an unwarmable spec", n)
			}
			p.mu.Lock()
			n := len(p.shapes)
			p.mu.Unlock()
			if n != 0 {
				t.Errorf("%d shapes kept for an unwarmable spec", n)
			}
		})
	}
}

// TestMissFillHit: the first Run of a shape prestarts its own; the filler then keeps exactly
// Size ready from the shape's template (no labels, no stdin); the next Run takes the oldest
// with its own spec, and the filler replaces it.
func TestMissFillHit(t *testing.T) {
	for _, fillers := range []int{1, 4} {
		t.Run(fmt.Sprintf("fillers %d", fillers), func(t *testing.T) {
			b := &fakeBackend{}
			p := newPool(t, b, Config{Size: 2, Fillers: fillers})
			spec := newSpec(t, sandbox.WithLabel("airlock.tool", "first"), sandbox.WithStdin([]byte("in")))
			key := keyOf(spec)

			res := run(t, p, spec)
			if st := p.Stats(); st.Misses != 1 || st.Hits != 0 {
				t.Errorf("after the first Run, Stats = %+v, want one miss", st)
			}
			if !res.Warm || res.ContainerID == "" {
				t.Errorf("first Run = %+v, want a run in its own prestarted sandbox", res)
			}

			eventually(t, "the filler fills the shape", readyIs(p, 2))
			if st := p.Stats(); st.Prestarts != 2 {
				t.Errorf("Prestarts = %d after filling, want Size (2)", st.Prestarts)
			}
			if n := b.prestarts(); n != 3 {
				t.Errorf("%d Prestart calls, want 3 (the call's own and Size)", n)
			}
			ready := readyOf(p, key)
			for _, w := range ready {
				if w.made.Labels != nil || w.made.Stdin != nil {
					t.Errorf("%s prestarted with a call's labels %v or stdin %q", w.id, w.made.Labels, w.made.Stdin)
				}
			}
			oldest := ready[0]

			second := newSpec(t, sandbox.WithArgv("echo", "hi"), sandbox.WithLabel("airlock.tool", "second"))
			res = run(t, p, second)
			if res.ContainerID != oldest.id {
				t.Errorf("second Run ran in %s, want the oldest ready %s", res.ContainerID, oldest.id)
			}
			if runs, _ := oldest.state(); runs != 1 {
				t.Errorf("%s ran %d, want 1", oldest.id, runs)
			}
			oldest.mu.Lock()
			got := oldest.ran
			oldest.mu.Unlock()
			if !slices.Equal(got.Argv, second.Argv) || got.Labels["airlock.tool"] != "second" {
				t.Errorf("the warm sandbox ran %v %v, want the call's own spec", got.Argv, got.Labels)
			}
			if st := p.Stats(); st.Hits != 1 || st.Misses != 1 {
				t.Errorf("after the second Run, Stats = %+v, want one hit and one miss", st)
			}

			eventually(t, "the filler replaces the taken sandbox", func() bool {
				st := p.Stats()
				return st.Ready == 2 && st.Prestarts == 3
			})
			if slices.Contains(readyOf(p, key), oldest) {
				t.Errorf("%s is still ready after a call took it", oldest.id)
			}
		})
	}
}

// TestConcurrentRuns: many calls of several shapes at once, with evictions and sheds, never
// share a sandbox (each Result names a different container) and all succeed. The fakes'
// checks at the end catch a sandbox run twice, removed after a call took it, or left behind.
func TestConcurrentRuns(t *testing.T) {
	b := &fakeBackend{}
	budget := &fakeBudget{}
	p := newPool(t, b, Config{Size: 2, Fillers: 3, MaxShapes: 2, Budget: budget})
	specs := []sandbox.Spec{newSpec(t), newSpec(t, sandbox.WithMemory(128<<20)), newSpec(t, sandbox.WithPids(32))}

	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	shedder := make(chan struct{})
	go func() {
		defer close(shedder)
		for {
			select {
			case <-stop:
				return
			default:
				p.Shed()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range 16 {
		wg.Go(func() {
			for j := range 15 {
				res, err := p.Run(context.Background(), specs[(i+j)%len(specs)])
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("Run = %v", err)
				case seen[res.ContainerID]:
					t.Errorf("two calls ran in %s", res.ContainerID)
				}
				seen[res.ContainerID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	<-shedder
	if st := p.Stats(); st.Hits+st.Misses != 16*15 {
		t.Errorf("Stats = %+v, want %d hits and misses", st, 16*15)
	}
}

// TestBudget: a ready sandbox is started only when the budget takes its share (its spec's pids
// and memory) now, and the share is given back when a call takes it, when it is shed and on
// Close.
func TestBudget(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		b := &fakeBackend{}
		budget := &fakeBudget{refuse: true}
		p := newPool(t, b, Config{Size: 2, Budget: budget})
		run(t, p, newSpec(t))
		eventually(t, "the filler asks the budget", func() bool { return budget.tried() >= 1 })
		if st := p.Stats(); st.Ready != 0 || st.Prestarts != 0 {
			t.Errorf("Stats = %+v, want nothing prestarted without budget", st)
		}
		if n := b.prestarts(); n != 1 {
			t.Errorf("%d Prestart calls, want only the call's own", n)
		}
		if p.Shed() {
			t.Error("Shed = true with nothing ready")
		}
	})

	t.Run("held per ready sandbox", func(t *testing.T) {
		b := &fakeBackend{}
		budget := &fakeBudget{}
		p := newPool(t, b, Config{Size: 2, Budget: budget})
		spec := newSpec(t, sandbox.WithMemory(64<<20), sandbox.WithPids(20))

		run(t, p, spec)
		eventually(t, "the shape is filled", readyIs(p, 2))
		budget.checkHeld(t, spec, 2)
		budget.mu.Lock()
		for _, a := range budget.asked {
			if a != [2]int64{spec.Limits.Pids, spec.Limits.MemoryBytes} {
				t.Errorf("TryReserve(%d, %d), want the spec's limits (%d, %d)", a[0], a[1], spec.Limits.Pids, spec.Limits.MemoryBytes)
			}
		}
		budget.mu.Unlock()

		// Taken: the share goes back before Run returns (the call holds its own); the
		// refill is refused, so what is held is the one still ready.
		budget.setRefuse(true)
		run(t, p, spec)
		budget.checkHeld(t, spec, 1)
		if n := p.Stats().Ready; n != 1 {
			t.Errorf("Ready = %d, want 1", n)
		}

		budget.setRefuse(false)
		run(t, p, spec)
		eventually(t, "the shape is refilled", readyIs(p, 2))
		budget.checkHeld(t, spec, 2)

		// Shed: the share goes back at once.
		if !p.Shed() {
			t.Fatal("Shed = false with two ready")
		}
		budget.checkHeld(t, spec, 1)

		// Close: everything goes back (checked by newPool's cleanup too).
		closeWithin(t, p)
		budget.checkHeld(t, spec, 0)
		budget.mu.Lock()
		defer budget.mu.Unlock()
		if budget.reserves != budget.releases {
			t.Errorf("%d reservations, %d releases", budget.reserves, budget.releases)
		}
	})
}

// TestShed removes the oldest ready sandbox of any shape, and reports false when none is
// ready.
func TestShed(t *testing.T) {
	b := &fakeBackend{}
	p := newPool(t, b, Config{Size: 1})
	if p.Shed() {
		t.Fatal("Shed = true on an empty pool")
	}
	specA, specB := newSpec(t), newSpec(t, sandbox.WithMemory(128<<20))
	run(t, p, specA)
	eventually(t, "shape A is filled", readyIs(p, 1))
	run(t, p, specB)
	eventually(t, "shape B is filled", readyIs(p, 2))
	a, bw := readyOf(p, keyOf(specA))[0], readyOf(p, keyOf(specB))[0]

	if !p.Shed() {
		t.Fatal("Shed = false with two ready")
	}
	eventually(t, "the oldest ready sandbox is removed", a.closed)
	if bw.closed() {
		t.Errorf("Shed removed %s too", bw.id)
	}
	if n := p.Stats().Ready; n != 1 {
		t.Errorf("Ready = %d after Shed, want 1", n)
	}
	if !p.Shed() {
		t.Fatal("Shed = false with one ready")
	}
	eventually(t, "the last ready sandbox is removed", bw.closed)
	if p.Shed() {
		t.Error("Shed = true with none ready")
	}
}

// TestMaxShapes: a new shape beyond MaxShapes drops the least recently used shape and removes
// its ready sandboxes.
func TestMaxShapes(t *testing.T) {
	b := &fakeBackend{}
	p := newPool(t, b, Config{Size: 1, MaxShapes: 2})
	specA, specB, specC := newSpec(t), newSpec(t, sandbox.WithMemory(128<<20)), newSpec(t, sandbox.WithPids(32))
	run(t, p, specA)
	eventually(t, "shape A is filled", readyIs(p, 1))
	run(t, p, specB)
	eventually(t, "shape B is filled", readyIs(p, 2))
	run(t, p, specA) // A is now used more recently than B
	eventually(t, "shape A is refilled", readyIs(p, 2))
	a, bw := readyOf(p, keyOf(specA))[0], readyOf(p, keyOf(specB))[0]

	run(t, p, specC)
	eventually(t, "B's ready sandbox is removed", bw.closed)
	if a.closed() {
		t.Errorf("the recently used shape A lost %s", a.id)
	}
	p.mu.Lock()
	var keys []string
	for k := range p.shapes {
		keys = append(keys, k)
	}
	p.mu.Unlock()
	slices.Sort(keys)
	want := []string{keyOf(specA), keyOf(specC)}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("shapes %v, want %v", keys, want)
	}
	eventually(t, "shape C is filled", readyIs(p, 2))
}

// TestTakenWarmFails: a ready sandbox found gone before its command started (ErrStale, Ran
// false) is replaced by a fresh one and the call succeeds; any other failure, and above all
// one after which the command may have run, is the call's answer and nothing runs again.
func TestTakenWarmFails(t *testing.T) {
	stale := fmt.Errorf("%w: init exited", sandbox.ErrStale)
	tests := []struct {
		name    string
		res     sandbox.Result
		err     error
		retried bool
	}{
		{"stale, nothing ran", sandbox.Result{}, stale, true},
		{"stale but ran", sandbox.Result{Ran: true}, stale, false},
		{"other error, nothing ran", sandbox.Result{}, errors.New("writing labels: disk full"), false},
		{"command ran and failed", sandbox.Result{Ran: true, ExitCode: 1}, errors.New("cleanup failed"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{}
			p := newPool(t, b, Config{Size: 1})
			spec := newSpec(t)
			run(t, p, spec)
			eventually(t, "the shape is filled", readyIs(p, 1))
			w := readyOf(p, keyOf(spec))[0]
			w.failRun(tt.res, tt.err)

			res, err := p.Run(context.Background(), spec)
			if runs, _ := w.state(); runs != 1 {
				t.Errorf("the ready sandbox ran %d, want 1", runs)
			}
			if st := p.Stats(); st.Hits != 1 {
				t.Errorf("Hits = %d, want 1", st.Hits)
			}
			// One run for the first call's own sandbox, one for the taken one, and one
			// more only when the call was run again in a fresh sandbox.
			want := 2
			if tt.retried {
				want = 3
			}
			if n := b.runCount(); n != want {
				t.Errorf("%d warm runs, want %d", n, want)
			}
			if tt.retried {
				if err != nil || !res.Ran || res.ContainerID == w.id {
					t.Errorf("Run = %+v, %v; want success in a fresh sandbox", res, err)
				}
				return
			}
			if !errors.Is(err, tt.err) || res.ContainerID != w.id {
				t.Errorf("Run = %+v, %v; want %s's own answer %v", res, err, w.id, tt.err)
			}
		})
	}
}

// TestPrestartFailure: a failed prestart is counted and drops its shape, ready sandboxes and
// budget share included, rather than retrying: with no calls nothing is tried again (a broken
// runtime is not hammered), each call of the shape meets the error itself and makes the filler
// try at most once more, and a call after the cause is gone brings the shape back.
func TestPrestartFailure(t *testing.T) {
	b := &fakeBackend{}
	budget := &fakeBudget{}
	p := newPool(t, b, Config{Size: 2, Budget: budget})
	spec := newSpec(t)
	shapes := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.shapes)
	}
	run(t, p, spec)
	eventually(t, "the shape is filled", readyIs(p, 2))
	ready := readyOf(p, keyOf(spec))

	b.set(func(b *fakeBackend) { b.failWith = errBoom })
	run(t, p, spec) // takes ready[0]; its replacement fails
	eventually(t, "the refill fails", func() bool { return p.Stats().Failures == 1 })
	eventually(t, "the failed shape's other ready sandbox is removed", ready[1].closed)
	if n := shapes(); n != 0 {
		t.Errorf("%d shapes kept after a failed prestart, want the shape dropped", n)
	}
	if st := p.Stats(); st.Ready != 0 {
		t.Errorf("Ready = %d after the shape was dropped", st.Ready)
	}
	budget.checkHeld(t, spec, 0)

	// No call: no retry.
	before := b.prestarts()
	time.Sleep(200 * time.Millisecond)
	if n := b.prestarts() - before; n != 0 {
		t.Errorf("%d prestarts in 200ms with no call, want none", n)
	}

	// Calls while it is broken: each runs cold, as it could without a pool; the filler
	// tries at most once per call.
	calls := 0
	coldBefore := p.Stats().Cold
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); calls++ {
		if _, err := p.Run(context.Background(), spec); err != nil {
			t.Fatalf("Run = %v, want the call run cold", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if n := p.Stats().Cold - coldBefore; n != int64(calls) {
		t.Errorf("%d of %d calls ran cold while prestarts failed, want all", n, calls)
	}
	filler := func() int { return b.prestarts() - before - calls }
	eventually(t, "the filler's attempts end, each dropping the shape", func() bool {
		return shapes() == 0 && p.Stats().Failures == int64(1+filler())
	})
	if n := filler(); n < 1 || n > calls {
		t.Errorf("the filler tried %d prestarts for %d calls, want 1 to %d", n, calls, calls)
	}
	if st := p.Stats(); st.Misses != int64(1+calls) {
		t.Errorf("Misses = %d, want %d", st.Misses, 1+calls)
	}

	b.set(func(b *fakeBackend) { b.failWith = nil })
	run(t, p, spec)
	eventually(t, "the shape is back once prestarts work", readyIs(p, 2))
	budget.checkHeld(t, spec, 2)
}

// TestClose removes every ready sandbox before it returns, stops the fillers and leaves the
// pool running calls in sandboxes prestarted for them.
func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	b := &fakeBackend{}
	budget := &fakeBudget{}
	p := newPool(t, b, Config{Size: 2, Fillers: 2, Budget: budget})
	specA, specB := newSpec(t), newSpec(t, sandbox.WithMemory(128<<20))
	run(t, p, specA)
	run(t, p, specB)
	eventually(t, "both shapes are filled", readyIs(p, 4))
	ready := append(readyOf(p, keyOf(specA)), readyOf(p, keyOf(specB))...)

	closeWithin(t, p)
	for _, w := range ready {
		if !w.closed() {
			t.Errorf("%s not removed when Close returned", w.id)
		}
	}
	if n := p.Stats().Ready; n != 0 {
		t.Errorf("Ready = %d after Close", n)
	}
	budget.checkHeld(t, specA, 0)
	closeWithin(t, p) // a second Close is a no-op

	// After Close a call still runs, in a sandbox prestarted for it, and nothing refills.
	prestarts := p.Stats().Prestarts
	res := run(t, p, specA)
	if !res.Warm {
		t.Errorf("Run after Close = %+v, want a prestarted sandbox", res)
	}
	if st := p.Stats(); st.Misses != 3 || st.Ready != 0 || st.Prestarts != prestarts {
		t.Errorf("Stats after Close = %+v, want one more miss and no refill", st)
	}
	p.mu.Lock()
	n := len(p.shapes)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("%d shapes kept after Close", n)
	}

	eventually(t, "the fillers exit", func() bool { return runtime.NumGoroutine() <= before })
}

// TestCloseDuringPrestart: Close cancels a prestart under way and waits for it; a sandbox it
// still delivers is removed, not kept.
func TestCloseDuringPrestart(t *testing.T) {
	held := make(chan context.Context, 1)
	release := make(chan struct{})
	b := &fakeBackend{fillerHook: func(ctx context.Context) {
		held <- ctx
		<-release // a slow runtime that does not watch ctx
	}}
	budget := &fakeBudget{}
	p := newPool(t, b, Config{Size: 1, Budget: budget})
	spec := newSpec(t)
	run(t, p, spec)
	var ctx context.Context
	select {
	case ctx = <-held:
	case <-time.After(2 * time.Second):
		close(release)
		t.Fatal("the filler never prestarted from the shape's template (no labels)")
	}

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = p.Close()
	}()
	eventually(t, "Close cancels the prestart", func() bool { return ctx.Err() != nil })
	select {
	case <-closed:
		t.Fatal("Close returned while a prestart was under way")
	default:
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return after the prestart ended")
	}

	warms := b.allWarms()
	if len(warms) != 2 {
		t.Fatalf("%d sandboxes made, want the call's own and the filler's", len(warms))
	}
	if late := warms[1]; !late.closed() {
		t.Errorf("%s, delivered after Close, was not removed", late.id)
	}
	if st := p.Stats(); st.Ready != 0 {
		t.Errorf("Ready = %d after Close", st.Ready)
	}
	budget.checkHeld(t, spec, 0)
}

// TestExpire replaces ready sandboxes older than MaxAge and drops shapes unused that long.
func TestExpire(t *testing.T) {
	b := &fakeBackend{}
	budget := &fakeBudget{}
	p := newPool(t, b, Config{Size: 1, MaxAge: time.Minute, Budget: budget})
	specA, specB := newSpec(t), newSpec(t, sandbox.WithMemory(128<<20))
	run(t, p, specA)
	eventually(t, "shape A is filled", readyIs(p, 1))
	run(t, p, specB)
	eventually(t, "shape B is filled", readyIs(p, 2))
	old, unused := readyOf(p, keyOf(specA))[0], readyOf(p, keyOf(specB))[0]

	p.mu.Lock()
	p.shapes[keyOf(specA)].ready[0].at = time.Now().Add(-2 * time.Minute)
	p.shapes[keyOf(specB)].lastUse = time.Now().Add(-2 * time.Minute)
	p.mu.Unlock()
	p.expire()
	p.signal() // as the age check's tick does: the filler then refills

	eventually(t, "the old sandbox is removed", old.closed)
	eventually(t, "the unused shape's sandbox is removed", unused.closed)
	eventually(t, "shape A is refilled", func() bool {
		r := readyOf(p, keyOf(specA))
		return len(r) == 1 && r[0] != old
	})
	if r := readyOf(p, keyOf(specB)); r != nil {
		t.Errorf("the unused shape still has %d ready", len(r))
	}
	if n := p.Stats().Ready; n != 1 {
		t.Errorf("Ready = %d, want 1", n)
	}
	budget.checkHeld(t, specA, 1)
}

// TestContendedBudget: a sandbox that finishes starting while a run waits for room is not
// filed as ready; its share goes back at once, so the waiting run gets in.
func TestContendedBudget(t *testing.T) {
	b := &fakeBackend{}
	budget := &fakeBudget{}
	p := newPool(t, b, Config{Size: 2, Budget: budget})
	spec := newSpec(t)
	budget.mu.Lock()
	budget.contended = true
	budget.mu.Unlock()
	run(t, p, spec)
	eventually(t, "the filler tried", func() bool { return budget.tried() >= 1 && b.prestarts() >= 2 })
	eventually(t, "every share given back", func() bool { pids, mem := budget.held(); return pids == 0 && mem == 0 })
	if st := p.Stats(); st.Ready != 0 {
		t.Errorf("Ready = %d while a run waits for room, want 0", st.Ready)
	}
}
