package main

import (
	"context"
	"fmt"
	"io"
)

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "airlock doctor: not built yet")
	return 2
}
