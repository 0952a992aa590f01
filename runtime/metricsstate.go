package runtime

import (
	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector reports, at each scrape, gauges read from the runtime's own state: the run
// gate's occupancy, the MCP sessions open, the upstreams' state and the pool. Reading at
// scrape time needs no hook where the state changes, and cannot drift from it.
type stateCollector struct {
	r *Runtime
	m *metrics
}

var (
	descSessions = prometheus.NewDesc("airlock_mcp_sessions", "MCP sessions open now, by transport (http; stdio, which includes the daemon socket).", []string{"transport"}, nil)

	descGatePids      = prometheus.NewDesc("airlock_run_gate_pids", "Pids limits of the sandboxes running or kept ready now (the run gate's reservations).", nil, nil)
	descGatePidsMax   = prometheus.NewDesc("airlock_run_gate_pids_budget", "The run gate's pids budget: a quarter of the host's pid_max and threads-max.", nil, nil)
	descGateMem       = prometheus.NewDesc("airlock_run_gate_memory_bytes", "Memory limits of the sandboxes running or kept ready now (the run gate's reservations).", nil, nil)
	descGateMemMax    = prometheus.NewDesc("airlock_run_gate_memory_budget_bytes", "The run gate's memory budget: half of the host's memory.", nil, nil)
	descGateRunning   = prometheus.NewDesc("airlock_run_gate_sandboxes", "Sandboxes holding a share of the run gate now (running, or kept ready by the pool).", nil, nil)
	descGateWaiting   = prometheus.NewDesc("airlock_run_gate_waiting", "Calls waiting for room in the run gate.", nil, nil)
	descUpstreamState = prometheus.NewDesc("airlock_upstream_state", "1 for the upstream's current state: up (tools listed and checked), down (the last attempt failed), pending (not connected yet, or to be listed again at the next need).", []string{"upstream", "state"}, nil)
	descUpstreamSess  = prometheus.NewDesc("airlock_upstream_sessions", "Upstream sessions open for Airlock's client sessions.", []string{"upstream"}, nil)
	descPoolReady     = prometheus.NewDesc("airlock_pool_ready", "Sandboxes the pool keeps started and waiting for a call.", nil, nil)
	descPoolPrestarts = prometheus.NewDesc("airlock_pool_prestarts_total", "Sandboxes the pool started ahead of calls.", nil, nil)
	descPoolFailures  = prometheus.NewDesc("airlock_pool_prestart_failures_total", "Sandboxes the pool failed to start ahead of calls.", nil, nil)
)

// Upstream states (airlock_upstream_state).
const (
	upstreamUp      = "up"
	upstreamDown    = "down"
	upstreamPending = "pending"
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descGatePids, descGatePidsMax, descGateMem, descGateMemMax,
		descGateRunning, descGateWaiting, descUpstreamState, descUpstreamSess, descPoolReady, descPoolPrestarts, descPoolFailures} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	c.m.mu.Lock()
	open := 0
	for t := range c.m.http {
		open += t.open()
	}
	c.m.mu.Unlock()
	gauge(descSessions, float64(open), "http")
	gauge(descSessions, float64(c.m.stdio.Load()), "stdio")
	if c.r == nil {
		return
	}

	if g := c.r.gate; g != nil {
		s := g.snapshot()
		gauge(descGatePids, float64(s.pids))
		gauge(descGatePidsMax, float64(s.maxPids))
		gauge(descGateMem, float64(s.mem))
		gauge(descGateMemMax, float64(s.maxMem))
		gauge(descGateRunning, float64(s.running))
		gauge(descGateWaiting, float64(s.waiting))
	}
	if c.r.gw != nil {
		for _, u := range c.r.gw.ups {
			state, sessions := u.status()
			for _, s := range []string{upstreamUp, upstreamDown, upstreamPending} {
				v := 0.0
				if s == state {
					v = 1
				}
				gauge(descUpstreamState, v, u.name, s)
			}
			gauge(descUpstreamSess, float64(sessions), u.name)
		}
	}
	if p := c.r.pool; p != nil {
		st := p.Stats()
		gauge(descPoolReady, float64(st.Ready))
		ch <- prometheus.MustNewConstMetric(descPoolPrestarts, prometheus.CounterValue, float64(st.Prestarts))
		ch <- prometheus.MustNewConstMetric(descPoolFailures, prometheus.CounterValue, float64(st.Failures))
	}
}

// gateSnapshot is the run gate's occupancy at one moment.
type gateSnapshot struct {
	pids, mem, maxPids, maxMem int64
	running, waiting           int
}

func (g *runGate) snapshot() gateSnapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	return gateSnapshot{pids: g.pids, mem: g.mem, maxPids: g.maxPids, maxMem: g.maxMem, running: g.running, waiting: g.waiting}
}

// status is the upstream's state for airlock_upstream_state and how many call sessions it
// has open.
func (u *upstreamState) status() (string, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	state := upstreamPending
	switch {
	case u.loaded:
		state = upstreamUp
	case !u.retryAt.IsZero():
		state = upstreamDown
	}
	open := 0
	for _, ls := range u.sessions {
		if ls.session() != nil {
			open++
		}
	}
	return state, open
}

// known reports whether name is an upstream tool the gateway serves or withholds now,
// without connecting to anything.
func (g *gateway) known(name string) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.tools[name]
	return ok
}

// open is how many sessions the table holds now.
func (t *sessionTable) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}
