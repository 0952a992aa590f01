package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// server is the test's own redis-server (testenv.Redis).
type server struct{ *testenv.Redis }

func startRedis(t *testing.T, extra ...string) server {
	return server{testenv.StartRedis(t, extra...)}
}

func (s server) url(query string) string { return s.URL(query) }
func (s server) start()                  { s.Start() }
func (s server) stop()                   { s.Stop() }

// open opens a Store on the server, failing the test if it cannot.
func (s server) open(t *testing.T, query string, opts ...Option) *Store {
	t.Helper()
	st, err := Open(t.Context(), s.url(query), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// raw is a plain client for looking at keys behind the store's back.
func (s server) raw(t *testing.T) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Network: "unix", Addr: s.Sock, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}
