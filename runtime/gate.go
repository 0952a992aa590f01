package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// gatedBackend bounds what all of one Airlock process's sandboxes may hold at once.
//
// Each sandbox has its own pids and memory cgroup limits, but the MCP SDK runs a session's
// calls concurrently and nothing bounded how many sandboxes run side by side: one agent that
// sends 30 run_tests calls at once, each a fork bomb up to its 1,024-pid limit, takes 30,720
// host pids, all of this host's pid_max (32,768), and the host can no longer fork; 40
// run_command calls ask for 20 GiB. The gate admits a run only while the sum of the pids and
// memory limits of running sandboxes stays within a budget (a quarter of the host's pid_max
// and threads-max, half of its memory); other runs wait their turn (their timeout starts when
// they start) or give up when the call is cancelled. A run larger than the whole budget still
// runs alone, so nothing waits forever.
type gatedBackend struct {
	sandbox.Backend
	gate *runGate
}

func (g gatedBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	pids, mem := spec.Limits.Pids, spec.Limits.MemoryBytes
	if err := g.gate.acquire(ctx, pids, mem); err != nil {
		return sandbox.Result{}, fmt.Errorf("waiting for a sandbox slot (all of this Airlock's pids or memory budget is in use): %w", err)
	}
	defer g.gate.release(pids, mem)
	return g.Backend.Run(ctx, spec)
}

// runGate is a two-resource counting semaphore. Besides runs, it holds the shares of the
// sandboxes the pool keeps started (TryReserve), which never make a run wait: a run that does
// not fit asks the pool to shed one first, and no sandbox is reserved while a run waits.
type runGate struct {
	maxPids, maxMem int64
	// shed, when set, removes one sandbox the pool keeps started and releases its share;
	// false when there is none.
	shed func() bool

	mu        sync.Mutex
	running   int // runs and reserved sandboxes
	waiting   int // runs waiting for room
	pids, mem int64
	wake      chan struct{} // closed and replaced on every release
}

func newRunGate(maxPids, maxMem int64) *runGate {
	return &runGate{maxPids: maxPids, maxMem: maxMem, wake: make(chan struct{})}
}

func (g *runGate) acquire(ctx context.Context, pids, mem int64) error {
	counted := false
	defer func() {
		if counted {
			g.mu.Lock()
			g.waiting--
			g.mu.Unlock()
		}
	}()
	for {
		g.mu.Lock()
		if g.running == 0 || g.fits(pids, mem) {
			g.take(pids, mem)
			g.mu.Unlock()
			return nil
		}
		if !counted {
			counted = true
			g.waiting++
		}
		wake := g.wake
		g.mu.Unlock()
		if g.shed != nil && g.shed() {
			continue
		}
		select {
		case <-wake:
		case <-g.tick():
			// A sandbox that finished starting meanwhile is shed on the next turn.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TryReserve takes a share for a sandbox started ahead of its call when it fits now and no run
// is waiting.
func (g *runGate) TryReserve(pids, mem int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiting > 0 || !g.fits(pids, mem) {
		return false
	}
	g.take(pids, mem)
	return true
}

// Contended reports whether a run waits for room.
func (g *runGate) Contended() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting > 0
}

// shedRetry is how often a waiting run looks again for ready sandboxes to shed.
const shedRetry = 100 * time.Millisecond

// tick is a waiting run's reminder to shed again; nil (never) without a pool.
func (g *runGate) tick() <-chan time.Time {
	if g.shed == nil {
		return nil
	}
	return time.After(shedRetry)
}

// Release gives back a share TryReserve took.
func (g *runGate) Release(pids, mem int64) { g.release(pids, mem) }

// fits reports whether pids and mem fit beside what is held. g.mu held.
func (g *runGate) fits(pids, mem int64) bool {
	return g.pids+pids <= g.maxPids && g.mem+mem <= g.maxMem
}

// take counts a run or a reservation. g.mu held.
func (g *runGate) take(pids, mem int64) {
	g.running++
	g.pids += pids
	g.mem += mem
}

func (g *runGate) release(pids, mem int64) {
	g.mu.Lock()
	g.running--
	g.pids -= pids
	g.mem -= mem
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

// Fallbacks when /proc cannot be read: Linux's smallest default pid_max, and 4 GiB.
const (
	fallbackPidMax   = 32768
	fallbackMemBytes = 4 << 30
)

// hostRunBudget derives the gate's budget from the host: a quarter of min(pid_max,
// threads-max) and half of MemTotal.
func hostRunBudget() (pids, mem int64) {
	pids = fallbackPidMax
	if n, err := readInt("/proc/sys/kernel/pid_max"); err == nil && n > 0 {
		pids = n
	}
	if n, err := readInt("/proc/sys/kernel/threads-max"); err == nil && n > 0 && n < pids {
		pids = n
	}
	mem = 2 * fallbackMemBytes
	if n, err := memTotal(); err == nil && n > 0 {
		mem = n
	}
	return pids / 4, mem / 2
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemTotal")
}
