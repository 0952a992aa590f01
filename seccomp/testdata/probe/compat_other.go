//go:build !amd64

package main

import "fmt"

func compat() { fmt.Println(`{"compat":"unsupported"}`) }

func compatChild() { compat() }
