//go:build race

package pipeline

// raceFactor: see race_factor.go.
const raceFactor = 10
