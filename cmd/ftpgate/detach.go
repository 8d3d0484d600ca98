package main

import (
	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

func detachCommand() *cli.Command {
	return pinCommand("detach", "remove links, programs, pins and state: leaves nothing behind (and loses all state)", nil,
		func(c *cli.Context) error {
			log, err := newLogger(c.App.ErrWriter, "info")
			if err != nil {
				return err
			}
			return loader.Detach(pinDir(c), stateDir(c), netNS(c), log)
		})
}
