package main

import (
	"context"
	"fmt"
	"io"
)

func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "airlock call: not built yet")
	return 2
}
