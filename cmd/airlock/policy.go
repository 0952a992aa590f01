package main

import (
	"context"
	"fmt"
	"io"
)

func cmdPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "airlock policy: not built yet")
	return 2
}
