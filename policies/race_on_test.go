//go:build race

package policies

// raceEnabled: the race detector makes sync.Pool drop a share of its items on purpose, so
// regexp's pooled matchers allocate now and then under -race.
const raceEnabled = true
