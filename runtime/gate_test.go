package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// TestOneSessionCannotExhaustHostPids: the MCP SDK runs a session's calls concurrently, so
// without a gate 40 run_tests calls started 40 sandboxes at once (40 x 1,024 pids is more than
// this kind of host's pid_max of 32,768). The peak must stay within the host budget.
func TestOneSessionCannotExhaustHostPids(t *testing.T) {
	var cur, peak atomic.Int64
	var perRun sandbox.Limits
	var mu sync.Mutex
	fb := &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		mu.Lock()
		perRun = s.Limits
		mu.Unlock()
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		cur.Add(-1)
		return sandbox.Result{Stdout: []byte("ok\n")}, nil
	}}
	rt := newTestRuntime(t, "tests:\n  argv: [\"true\"]\n", `{"version":"1","default":"allow"}`, fb)
	cs := connect(t, rt, nil, "")
	const calls = 40
	var wg sync.WaitGroup
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := callTool(t, cs, "run_tests", map[string]any{}); r.IsError {
				t.Errorf("run_tests: %s", text(r))
			}
		}()
	}
	wg.Wait()
	maxPids, maxMem := hostRunBudget()
	allowed := min(maxPids/perRun.Pids, maxMem/perRun.MemoryBytes)
	t.Logf("per run %d pids %d bytes; budget %d pids %d bytes; peak %d of %d calls (allowed %d)",
		perRun.Pids, perRun.MemoryBytes, maxPids, maxMem, peak.Load(), calls, allowed)
	if peak.Load() > max(allowed, 1) {
		t.Fatalf("%d sandboxes ran at once; the host budget allows %d", peak.Load(), allowed)
	}
	if allowed >= calls {
		t.Logf("this host's budget admits all %d runs; the bound above could not fail here", calls)
	}
}

func TestRunGate(t *testing.T) {
	g := newRunGate(100, 1000)
	ctx := context.Background()
	must(t, g.acquire(ctx, 60, 100))
	// A second run over the pids budget waits until the first is released.
	got := make(chan error, 1)
	go func() { got <- g.acquire(ctx, 60, 100) }()
	select {
	case err := <-got:
		t.Fatalf("acquire over budget returned at once: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.release(60, 100)
	select {
	case err := <-got:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("waiting run not admitted after release")
	}
	// Cancelled while waiting: the error says so and nothing is held.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := g.acquire(cctx, 0, 950); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire under a cancelled context = %v", err)
	}
	g.release(60, 100)
	// A run larger than the whole budget runs when nothing else does.
	must(t, g.acquire(ctx, 500, 5000))
	g.release(500, 5000)
	if g.running != 0 || g.pids != 0 || g.mem != 0 {
		t.Fatalf("gate not empty: %d runs %d pids %d bytes", g.running, g.pids, g.mem)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// share is the pids and memory of one run or one reserved sandbox.
type share struct{ pids, mem int64 }

// gateState is what a runGate holds, read under its lock.
type gateState struct {
	running, waiting int
	pids, mem        int64
}

func gateNow(g *runGate) gateState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return gateState{running: g.running, waiting: g.waiting, pids: g.pids, mem: g.mem}
}

// held is the state of a gate that holds exactly these shares and has no run waiting.
func held(shares ...share) gateState {
	s := gateState{running: len(shares)}
	for _, sh := range shares {
		s.pids += sh.pids
		s.mem += sh.mem
	}
	return s
}

// reservations stands in for the pool: the shares it reserved, and a Shed that releases the
// oldest one per call and counts its calls.
type reservations struct {
	g        *runGate
	mu       sync.Mutex
	held     []share // ready: Shed may release them
	starting []share // reserved for sandboxes still starting: not yet sheddable
	calls    int
	freed    int // calls that released a reservation
}

func (r *reservations) reserve(s share) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.g.TryReserve(s.pids, s.mem) {
		return false
	}
	r.held = append(r.held, s)
	return true
}

func (r *reservations) shed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if len(r.held) == 0 {
		return false
	}
	s := r.held[0]
	r.held = r.held[1:]
	r.freed++
	r.g.Release(s.pids, s.mem)
	return true
}

// reserveStarting reserves s for a sandbox that is still starting, which Shed cannot remove.
func (r *reservations) reserveStarting(s share) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.g.TryReserve(s.pids, s.mem) {
		return false
	}
	r.starting = append(r.starting, s)
	return true
}

// started files the oldest starting sandbox as ready, without telling the gate.
func (r *reservations) started() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = append(r.held, r.starting[0])
	r.starting = r.starting[1:]
}

// drop releases the newest reservation, as the pool does when one expires or is taken.
func (r *reservations) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.held); n > 0 {
		s := r.held[n-1]
		r.held = r.held[:n-1]
		r.g.Release(s.pids, s.mem)
	}
}

func (r *reservations) state() (calls int, left []share) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]share(nil), r.held...)
}

// acquireAsync starts acquire in a goroutine; the channel gets its result.
func acquireAsync(ctx context.Context, g *runGate, s share) <-chan error {
	got := make(chan error, 1)
	go func() { got <- g.acquire(ctx, s.pids, s.mem) }()
	return got
}

func notAdmitted(t *testing.T, got <-chan error) {
	t.Helper()
	select {
	case err := <-got:
		t.Fatalf("acquire returned while it should wait: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
}

func admitted(t *testing.T, got <-chan error) error {
	t.Helper()
	select {
	case err := <-got:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("waiting acquire did not return within 5s")
		return nil
	}
}

// TestRunGateTryReserve: a sandbox is reserved only when its share fits beside everything held
// now; unlike a run, a share larger than the whole budget is never taken, even on an empty gate.
func TestRunGateTryReserve(t *testing.T) {
	for _, tc := range []struct {
		name           string
		runs, reserved []share
		share          share
		want           bool
	}{
		{name: "fits exactly into an empty gate", share: share{100, 1000}, want: true},
		{name: "pids over the budget on an empty gate", share: share{101, 1}},
		{name: "memory over the budget on an empty gate", share: share{1, 1001}},
		{name: "fits beside a run", runs: []share{{60, 100}}, share: share{40, 900}, want: true},
		{name: "pids over beside a run", runs: []share{{60, 100}}, share: share{41, 1}},
		{name: "memory over beside a run", runs: []share{{60, 100}}, share: share{1, 901}},
		{name: "fits beside reservations", reserved: []share{{50, 500}}, share: share{50, 500}, want: true},
		{name: "memory over beside reservations", reserved: []share{{50, 500}}, share: share{50, 501}},
		{name: "nothing beside a run larger than the budget", runs: []share{{500, 5000}}, share: share{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRunGate(100, 1000)
			for _, r := range tc.runs {
				must(t, g.acquire(context.Background(), r.pids, r.mem))
			}
			for _, r := range tc.reserved {
				if !g.TryReserve(r.pids, r.mem) {
					t.Fatalf("setup: TryReserve(%d, %d) refused", r.pids, r.mem)
				}
			}
			before := append(append([]share(nil), tc.runs...), tc.reserved...)
			if got := g.TryReserve(tc.share.pids, tc.share.mem); got != tc.want {
				t.Fatalf("TryReserve(%d, %d) = %v, want %v", tc.share.pids, tc.share.mem, got, tc.want)
			}
			want := held(before...)
			if tc.want {
				want = held(append(before, tc.share)...)
			}
			if got := gateNow(g); got != want {
				t.Fatalf("gate holds %+v, want %+v", got, want)
			}
		})
	}
}

// TestRunGateNoReserveWhileRunWaits: while a run waits for room, no sandbox is reserved ahead of
// calls, even one that fits (else the filler would keep taking what the waiting run needs).
func TestRunGateNoReserveWhileRunWaits(t *testing.T) {
	g := newRunGate(100, 1000)
	ctx := context.Background()
	must(t, g.acquire(ctx, 60, 100))
	got := acquireAsync(ctx, g, share{60, 100})
	waitFor(t, func() bool { return gateNow(g).waiting == 1 })
	for _, s := range []share{{0, 0}, {1, 1}, {40, 900}} {
		if g.TryReserve(s.pids, s.mem) {
			t.Fatalf("TryReserve(%d, %d) succeeded while a run waits", s.pids, s.mem)
		}
	}
	if st := gateNow(g); st != (gateState{running: 1, waiting: 1, pids: 60, mem: 100}) {
		t.Fatalf("refused reservations changed the gate: %+v", st)
	}
	g.release(60, 100)
	must(t, admitted(t, got))
	// Nobody waits any more: a share that fits is reserved again.
	if !g.TryReserve(40, 900) {
		t.Fatal("TryReserve(40, 900) refused once the waiting run was admitted")
	}
	g.Release(40, 900)
	g.release(60, 100)
	if st := gateNow(g); st != (gateState{}) {
		t.Fatalf("gate not empty: %+v", st)
	}
}

// TestRunGateReleaseAdmitsWaitingRun: Release gives a reserved share back and wakes a run that
// waits for it (here without a shed hook, so only the Release can make room).
func TestRunGateReleaseAdmitsWaitingRun(t *testing.T) {
	g := newRunGate(100, 1000)
	if !g.TryReserve(60, 100) {
		t.Fatal("TryReserve(60, 100) refused on an empty gate")
	}
	got := acquireAsync(context.Background(), g, share{60, 100})
	notAdmitted(t, got)
	g.Release(60, 100)
	must(t, admitted(t, got))
	if st := gateNow(g); st != held(share{60, 100}) {
		t.Fatalf("gate holds %+v, want the run only", st)
	}
}

// TestRunGateShedsReservations: a run that does not fit because of reserved sandboxes sheds
// them, oldest first and no more than it needs, and is admitted at once: no call waits for a
// sandbox that merely waits for a call. A run larger than the whole budget sheds every one and
// runs alone.
func TestRunGateShedsReservations(t *testing.T) {
	for _, tc := range []struct {
		name           string
		runs, reserved []share
		run            share
		sheds          int
	}{
		{name: "fits: nothing shed", reserved: []share{{30, 300}}, run: share{50, 100}},
		{name: "pids: two of three shed", reserved: []share{{30, 100}, {30, 100}, {30, 100}}, run: share{50, 100}, sheds: 2},
		{name: "memory: one of two shed", reserved: []share{{10, 400}, {10, 400}}, run: share{10, 500}, sheds: 1},
		{name: "beside a run", runs: []share{{40, 100}}, reserved: []share{{20, 100}, {20, 100}, {20, 100}}, run: share{30, 100}, sheds: 2},
		{name: "larger than the budget: all shed, runs alone", reserved: []share{{10, 100}, {10, 100}, {10, 100}}, run: share{500, 5000}, sheds: 3},
		{name: "memory larger than the budget: all shed, runs alone", reserved: []share{{1, 1}}, run: share{1, 5000}, sheds: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRunGate(100, 1000)
			res := &reservations{g: g}
			g.shed = res.shed
			for _, r := range tc.runs {
				must(t, g.acquire(context.Background(), r.pids, r.mem))
			}
			for _, r := range tc.reserved {
				if !res.reserve(r) {
					t.Fatalf("setup: TryReserve(%d, %d) refused", r.pids, r.mem)
				}
			}
			// Nothing else releases: acquire returns only if shedding made room.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := g.acquire(ctx, tc.run.pids, tc.run.mem); err != nil {
				t.Fatalf("acquire(%d, %d) with reservations to shed: %v", tc.run.pids, tc.run.mem, err)
			}
			calls, left := res.state()
			if calls != tc.sheds {
				t.Errorf("shed called %d times, want %d", calls, tc.sheds)
			}
			if want := tc.reserved[tc.sheds:]; len(left) != len(want) {
				t.Errorf("%d reservations left, want %d", len(left), len(want))
			}
			want := held(append(append(append([]share(nil), tc.runs...), tc.run), left...)...)
			if got := gateNow(g); got != want {
				t.Fatalf("gate holds %+v, want %+v", got, want)
			}
		})
	}
}

// TestRunGateNoReserveWhileShedding: the run that sheds counts as waiting, so the pool's filler
// cannot reserve again the share just shed before the run takes it.
func TestRunGateNoReserveWhileShedding(t *testing.T) {
	g := newRunGate(100, 1000)
	res := &reservations{g: g}
	var reservedDuringShed []bool
	g.shed = func() bool {
		// {0, 0} fits the gate (it holds exactly its budget): only the waiting run refuses it.
		reservedDuringShed = append(reservedDuringShed, g.TryReserve(0, 0))
		return res.shed()
	}
	must(t, g.acquire(context.Background(), 50, 500))
	if !res.reserve(share{50, 500}) {
		t.Fatal("setup: TryReserve(50, 500) refused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must(t, g.acquire(ctx, 50, 500))
	if len(reservedDuringShed) != 1 || reservedDuringShed[0] {
		t.Fatalf("TryReserve(0, 0) from inside shed = %v, want [false]", reservedDuringShed)
	}
	if st := gateNow(g); st != held(share{50, 500}, share{50, 500}) {
		t.Fatalf("gate holds %+v, want the two runs", st)
	}
}

// TestRunGateShedFalseWaits: with nothing to shed, a run waits (without calling the hook in a
// loop), gives up when its call is cancelled and leaves nothing held or counted as waiting, and
// is admitted by the next release.
func TestRunGateShedFalseWaits(t *testing.T) {
	g := newRunGate(100, 1000)
	res := &reservations{g: g}
	g.shed = res.shed
	must(t, g.acquire(context.Background(), 60, 100))

	ctx, cancel := context.WithCancel(context.Background())
	got := acquireAsync(ctx, g, share{60, 100})
	waitFor(t, func() bool { calls, _ := res.state(); return calls >= 1 && gateNow(g).waiting == 1 })
	before, _ := res.state()
	notAdmitted(t, got)
	// The gate may look again now and then for a sandbox that became ready, but a run that
	// calls the hook in a loop would burn a CPU per waiting call.
	if calls, _ := res.state(); calls-before > 3 {
		t.Fatalf("shed called %d times in 50ms while nothing was released: the waiting run spins", calls-before)
	}
	cancel()
	if err := admitted(t, got); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire cancelled while waiting = %v, want context.Canceled", err)
	}
	if st := gateNow(g); st != held(share{60, 100}) {
		t.Fatalf("after a cancelled wait the gate holds %+v, want the first run only", st)
	}
	if !g.TryReserve(40, 900) {
		t.Fatal("TryReserve(40, 900) refused after the waiting run gave up")
	}
	g.Release(40, 900)

	got = acquireAsync(context.Background(), g, share{60, 100})
	waitFor(t, func() bool { return gateNow(g).waiting == 1 })
	notAdmitted(t, got)
	g.release(60, 100)
	must(t, admitted(t, got))
	if st := gateNow(g); st != held(share{60, 100}) {
		t.Fatalf("gate holds %+v, want the second run only", st)
	}
}

// TestRunGateBigRunWaitsForRuns: a run larger than the whole budget sheds every reservation,
// then waits for the runs under way (they cannot be shed) and runs alone once they are done.
func TestRunGateBigRunWaitsForRuns(t *testing.T) {
	g := newRunGate(100, 1000)
	res := &reservations{g: g}
	g.shed = res.shed
	must(t, g.acquire(context.Background(), 40, 100))
	for range 2 {
		if !res.reserve(share{10, 100}) {
			t.Fatal("setup: TryReserve(10, 100) refused")
		}
	}
	got := acquireAsync(context.Background(), g, share{500, 5000})
	// Two sheds that release a reservation, a third that finds none.
	waitFor(t, func() bool { calls, _ := res.state(); return calls >= 3 && gateNow(g).waiting == 1 })
	notAdmitted(t, got)
	if st := gateNow(g); st != (gateState{running: 1, waiting: 1, pids: 40, mem: 100}) {
		t.Fatalf("while the big run waits the gate holds %+v, want the first run only", st)
	}
	g.release(40, 100)
	must(t, admitted(t, got))
	res.mu.Lock()
	freed, left := res.freed, len(res.held)
	res.mu.Unlock()
	if freed != 2 || left != 0 {
		t.Fatalf("shed released %d reservations and left %d, want 2 and 0", freed, left)
	}
	if st := gateNow(g); st != held(share{500, 5000}) {
		t.Fatalf("gate holds %+v, want the big run alone", st)
	}
}

// TestRunGateContended: the pool asks Contended before it files a sandbox that finished
// starting as ready; it is true exactly while a run waits for room.
func TestRunGateContended(t *testing.T) {
	g := newRunGate(100, 1000)
	res := &reservations{g: g}
	g.shed = res.shed
	if g.Contended() {
		t.Fatal("Contended on an empty gate")
	}
	must(t, g.acquire(context.Background(), 60, 100))
	if g.Contended() {
		t.Fatal("Contended with one run that fitted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := acquireAsync(ctx, g, share{60, 100})
	waitFor(t, g.Contended)
	cancel()
	if err := admitted(t, got); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire cancelled while waiting = %v, want context.Canceled", err)
	}
	if g.Contended() {
		t.Fatal("Contended after the waiting run gave up")
	}
	got = acquireAsync(context.Background(), g, share{60, 100})
	waitFor(t, g.Contended)
	g.release(60, 100)
	must(t, admitted(t, got))
	if g.Contended() {
		t.Fatal("Contended after the waiting run was admitted")
	}
}

// TestRunGateShedsSandboxReadyLater: a run that waits because the room is held by a sandbox
// still starting (nothing to shed yet) is admitted once that sandbox is ready, by shedding it,
// though nothing calls into the gate meanwhile.
func TestRunGateShedsSandboxReadyLater(t *testing.T) {
	g := newRunGate(100, 1000)
	res := &reservations{g: g}
	g.shed = res.shed
	if !res.reserveStarting(share{60, 100}) {
		t.Fatal("setup: TryReserve(60, 100) refused")
	}
	got := acquireAsync(context.Background(), g, share{60, 100})
	waitFor(t, func() bool { calls, _ := res.state(); return calls >= 1 && gateNow(g).waiting == 1 })
	notAdmitted(t, got)
	res.started()
	must(t, admitted(t, got))
	res.mu.Lock()
	freed := res.freed
	res.mu.Unlock()
	if freed != 1 {
		t.Fatalf("shed released %d reservations, want 1", freed)
	}
	if st := gateNow(g); st != held(share{60, 100}) {
		t.Fatalf("gate holds %+v, want the run only", st)
	}
}

// TestRunGateConcurrentRunsAndReservations: runs of all sizes (some larger than the budget),
// a filler that reserves and drops sandboxes, and the shed hook, all at once. No counter goes
// negative, nothing is held beyond the budget except by a lone holder, and at the end the gate
// is empty. Run it with -race.
func TestRunGateConcurrentRunsAndReservations(t *testing.T) {
	const maxPids, maxMem = 100, 1000
	g := newRunGate(maxPids, maxMem)
	res := &reservations{g: g}
	g.shed = res.shed
	check := func(who string) {
		st := gateNow(g)
		if st.running < 0 || st.waiting < 0 || st.pids < 0 || st.mem < 0 {
			t.Errorf("%s: negative counter: %+v", who, st)
		}
		if st.running > 1 && (st.pids > maxPids || st.mem > maxMem) {
			t.Errorf("%s: %d holders over the budget: %+v", who, st.running, st)
		}
	}

	done := make(chan struct{})
	var filler sync.WaitGroup
	var reserved atomic.Int64
	filler.Add(1)
	go func() {
		defer filler.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if res.reserve(share{10, 100}) {
				reserved.Add(1)
				check("filler")
			}
			if i%3 == 0 {
				res.drop()
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()

	sizes := []share{{10, 100}, {30, 50}, {50, 500}, {5, 900}, {120, 10}, {1, 2000}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range 100 {
				s := sizes[(w+i)%len(sizes)]
				if err := g.acquire(ctx, s.pids, s.mem); err != nil {
					t.Errorf("acquire(%d, %d): %v", s.pids, s.mem, err)
					return
				}
				check("run")
				// Hold the share a while, and leave gaps in which nobody waits, so that the
				// filler reserves and later runs shed.
				time.Sleep(time.Duration(i%4) * 100 * time.Microsecond)
				g.release(s.pids, s.mem)
				time.Sleep(time.Duration(w%3) * 200 * time.Microsecond)
			}
		}()
	}
	workers.Wait()
	close(done)
	filler.Wait()
	for {
		if _, left := res.state(); len(left) == 0 {
			break
		}
		res.drop()
	}
	res.mu.Lock()
	calls, freed := res.calls, res.freed
	res.mu.Unlock()
	t.Logf("%d reservations, %d shed calls, %d of them released one", reserved.Load(), calls, freed)
	if reserved.Load() == 0 || freed == 0 {
		t.Logf("no reservation was made or shed on this run; only the runs were exercised")
	}
	if st := gateNow(g); st != (gateState{}) {
		t.Fatalf("gate not empty at the end: %+v", st)
	}
}
