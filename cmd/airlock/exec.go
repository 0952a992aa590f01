package main

import (
	"context"
	"fmt"
	"io"
)

func cmdExec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "airlock exec: not built yet")
	return 2
}
