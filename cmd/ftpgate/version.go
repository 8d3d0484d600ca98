package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

func versionCommand() *cli.Command {
	return &cli.Command{Name: "version", Usage: "print the version", Action: printVersion}
}

func printVersion(c *cli.Context) error {
	_, err := fmt.Fprintf(c.App.Writer, "ftpgate %s (%s, %s/%s)\n", loader.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
