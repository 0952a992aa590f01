//go:build !race

package pipeline

// raceFactor scales the redaction budget (redactBudget) for the race detector, which makes
// Go code about ten times slower.
const raceFactor = 1
