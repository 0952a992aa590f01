//go:build !amd64

package main

// legacySetidProbes: other architectures have only the *at forms of chmod, creat, open, mknod.
func legacySetidProbes(p, plain func(string) string) []probe { return nil }
