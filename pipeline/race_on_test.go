//go:build race

package pipeline

// raceEnabled: the race detector slows regexp-heavy tests about tenfold.
const raceEnabled = true
