// Command airlock-toolbox runs inside sandboxes and implements Airlock's file tools. It prints
// one JSON object on stdout and never starts a shell.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "airlock-toolbox: no tools built yet")
	os.Exit(2)
}
