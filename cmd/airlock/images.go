package main

import (
	"context"
	"fmt"
	"io"
)

func cmdImages(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "airlock images: not built yet")
	return 2
}
