package main

import (
	"context"
	"fmt"
	"io"
)

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "airlock audit: not built yet")
	return 2
}
