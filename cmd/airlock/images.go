package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/sandbox"
)

const imagesUsage = `usage: airlock images build [--toolbox PATH] [--json] NAME...
       airlock images list [--json]

Builds sandbox images locally and lists them. Images are content-addressed under
$AIRLOCK_STATE_DIR/images (default /var/lib/airlock/images); rebuilding unchanged
content is a no-op that keeps the same ID.

images: %s

build flags:
  --toolbox PATH  the static airlock-toolbox to bake in (default: airlock-toolbox next to
                  the airlock binary; build it with make build)
  --json          print the built images as a JSON array
list flags:
  --json          print the images as a JSON array
`

// cmdImages implements `airlock images build|list`. Exit codes: 0 ok, 1 failure, 2 usage.
func cmdImages(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() { fmt.Fprintf(stderr, imagesUsage, strings.Join(images.Names(), ", ")) }
	if len(args) == 0 {
		usage()
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage()
		return 0
	case "build":
		return imagesBuild(ctx, args[1:], stdout, stderr, usage)
	case "list":
		return imagesList(args[1:], stdout, stderr, usage)
	default:
		fmt.Fprintf(stderr, "airlock images: unknown subcommand %q (want build or list)\n", args[0])
		return 2
	}
}

func imagesBuild(ctx context.Context, args []string, stdout, stderr io.Writer, usage func()) int {
	fset := flag.NewFlagSet("airlock images build", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	toolbox := fset.String("toolbox", "", "")
	asJSON := fset.Bool("json", false, "")
	names, err := parseInterspersed(fset, args)
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "airlock images build: %v\n", err)
		return 2
	}
	if len(names) == 0 {
		fmt.Fprintf(stderr, "airlock images build: name an image to build: %s\n", strings.Join(images.Names(), ", "))
		return 2
	}
	for _, n := range names {
		if !isImageName(n) {
			fmt.Fprintf(stderr, "airlock images build: unknown image %q; choose one of %s\n", n, strings.Join(images.Names(), ", "))
			return 2
		}
	}
	if *toolbox == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "airlock images build: locating the airlock binary: %v (pass --toolbox PATH)\n", err)
			return 1
		}
		*toolbox = filepath.Join(filepath.Dir(exe), "airlock-toolbox")
	}
	if _, err := os.Stat(*toolbox); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "airlock images build: toolbox %s is missing: build it with make build (or pass --toolbox PATH)\n", *toolbox)
		return 1
	}

	store, err := images.Open(stateDir())
	if err != nil {
		fmt.Fprintf(stderr, "airlock images build: %v\n", err)
		return 1
	}
	var built []sandbox.Image
	for _, n := range names {
		img, err := store.Build(ctx, n, images.BuildOptions{Toolbox: *toolbox})
		if err != nil {
			fmt.Fprintf(stderr, "airlock images build: %v\n", err)
			return 1
		}
		built = append(built, img)
		if !*asJSON {
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", img.Name, img.ID, img.Rootfs)
		}
	}
	if *asJSON {
		return printImagesJSON(stdout, stderr, built)
	}
	return 0
}

func imagesList(args []string, stdout, stderr io.Writer, usage func()) int {
	fset := flag.NewFlagSet("airlock images list", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	asJSON := fset.Bool("json", false, "")
	rest, err := parseInterspersed(fset, args)
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "airlock images list: %v\n", err)
		return 2
	}
	if len(rest) != 0 {
		fmt.Fprintf(stderr, "airlock images list: unexpected argument %q\n", rest[0])
		return 2
	}
	store, err := images.Open(stateDir())
	if err != nil {
		fmt.Fprintf(stderr, "airlock images list: %v\n", err)
		return 1
	}
	imgs, err := store.List()
	if err != nil {
		fmt.Fprintf(stderr, "airlock images list: %v\n", err)
		return 1
	}
	if *asJSON {
		return printImagesJSON(stdout, stderr, imgs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tBINDS\tROOTFS")
	for _, img := range imgs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", img.Name, shortID(img.ID), len(img.Binds), img.Rootfs)
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

func printImagesJSON(stdout, stderr io.Writer, imgs []sandbox.Image) int {
	if imgs == nil {
		imgs = []sandbox.Image{}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(imgs); err != nil {
		fmt.Fprintf(stderr, "airlock images: %v\n", err)
		return 1
	}
	return 0
}

// shortID is "sha256:" and the first 12 hex digits, like docker's short IDs.
func shortID(id string) string {
	if hex, ok := strings.CutPrefix(id, "sha256:"); ok && len(hex) > 12 {
		return "sha256:" + hex[:12]
	}
	return id
}

func isImageName(n string) bool {
	for _, k := range images.Names() {
		if n == k {
			return true
		}
	}
	return false
}

// parseInterspersed parses flags that may come before, between or after the positional
// arguments ("build busybox --toolbox X"); everything after "--" is positional.
func parseInterspersed(fset *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fset.Parse(args); err != nil {
			return nil, err
		}
		rest := fset.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
