package integration

// Two `airlock serve` replicas sharing one real redis-server (state: redis://...): a rate
// limit's max holds over both under concurrent load, a call denied by its second counter gives
// the first counter's unit back, a kill switch reaches both, and a Redis outage denies calls
// with an error that says so.

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

func TestReplicasShareRedis(t *testing.T) {
	rd := testenv.StartRedis(t)
	const policy = `{"version": "1", "default": "deny", "tools": {"run_command": {"limits": [
	  {"counter": "all", "max": 1000, "window": "day", "scope": "policy"},
	  {"counter": "cmds", "max": 7, "window": "day", "scope": "policy", "on_deny": "The shared budget is spent."}]}}}`
	e := faultEnv(t, policy, 30*time.Second)
	prefix := "it" + strings.ToLower(rand.Text()[:8])
	e.state = rd.URL("prefix=" + prefix)
	replicas := []*mcpServer{e.startHTTP(t), e.startHTTP(t)}

	const clients, calls = 10, 3
	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		cs := connectHTTP(t, replicas[i%2], "", nil)
		wg.Go(func() {
			for range calls {
				res, err := callCommand(t, cs, "true")
				switch {
				case err != nil:
					t.Error(err)
				case !res.IsError:
					allowed.Add(1)
				case strings.Contains(mcpText(res), "The shared budget is spent"):
					denied.Add(1)
				default:
					t.Errorf("unexpected result: %s", mcpText(res))
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 7 || denied.Load() != clients*calls-7 {
		t.Fatalf("%d allowed, %d denied over two replicas; want exactly 7 allowed (max) and %d denied", allowed.Load(), denied.Load(), clients*calls-7)
	}
	// The denied calls reserved a unit of "all" before "cmds" refused them: each was given back.
	raw := goredis.NewClient(&goredis.Options{Network: "unix", Addr: rd.Sock, DisableIdentity: true})
	defer raw.Close()
	key := prefix + ":c:" + strconv.Quote("all") + ":" + strconv.Quote("policy") + ":" + strconv.Quote("")
	if used, err := raw.HGet(context.Background(), key, "used").Result(); err != nil || used != "7" {
		t.Fatalf("counter all in Redis: %q %v; want 7 (denied calls' units rolled back)", used, err)
	}

	// A kill switch set through one config reaches both replicas.
	if out, errOut, code := e.airlockCLI(t, "kill", "--tool", "run_command", "--config", e.config); code != 0 {
		t.Fatalf("kill: %d %s %s", code, out, errOut)
	}
	for i, s := range replicas {
		cs := connectHTTP(t, s, "", nil)
		if _, ok := faultWait(2*time.Second, func() bool {
			res, err := callCommand(t, cs, "true")
			return err == nil && res.IsError && strings.Contains(mcpText(res), "/kill/tool/run_command")
		}); !ok {
			t.Fatalf("replica %d does not see the kill switch", i)
		}
	}
	e.airlockCLI(t, "resume", "--tool", "run_command", "--config", e.config)

	// An outage fails closed, saying what is down.
	rd.Stop()
	cs := connectHTTP(t, replicas[0], "", nil)
	res, err := callCommand(t, cs, "true")
	if err != nil || !res.IsError || !strings.Contains(mcpText(res), "state store redis 127.0.0.1:"+strconv.Itoa(rd.Port)+"/0") || !strings.Contains(mcpText(res), "unavailable") {
		t.Fatalf("call with Redis down: %v %s", err, mcpText(res))
	}
	rd.Start() // empty (no persistence): the budget starts over
	if res, err := callCommand(t, cs, "true"); err != nil || res.IsError {
		t.Fatalf("call with Redis back: %v %s", err, mcpText(res))
	}
	for _, s := range replicas {
		s.stop()
	}
	e.assertVerifies(t)
}
